"""A bad launch gets a clear error naming the field, and creates nothing."""

from __future__ import annotations

import pytest

from tests.conftest import add_local_host


@pytest.fixture
def host(service, project):
    return add_local_host(service, project)


def launch(service, project, body, expect):
    return service.post(f"/projects/{project['id']}/script-executions", body, expect=expect).get_json()[
        "error"
    ]


def valid(host, **changes):
    body = {"script": {"content": "echo hi", "language": "shell"}, "targets": {"hosts": [host["id"]]}}
    body.update(changes)
    return body


def assert_nothing_created(service, project):
    assert service.get(f"/projects/{project['id']}/jobs") == []


def test_unknown_ids_are_named(service, project, host):
    error = launch(service, project, valid(host, targets={"hosts": [host["id"], 987654]}), 422)
    assert error["field"] == "targets.hosts" and error["details"] == {"missing": [987654]}
    assert "987654" in error["message"]
    error = launch(service, project, valid(host, targets={"groups": [876543]}), 422)
    assert error["field"] == "targets.groups" and "876543" in error["message"]
    error = launch(service, project, valid(host, account_id=765432), 422)
    assert error["field"] == "account_id" and "765432" in error["message"]
    assert_nothing_created(service, project)


def test_empty_targets(service, project, host):
    error = launch(service, project, valid(host, targets={"hosts": [], "groups": []}), 422)
    assert error["field"].startswith("targets")
    empty_group = service.post(f"/projects/{project['id']}/groups", {"name": "empty"}, expect=201).get_json()
    error = launch(service, project, valid(host, targets={"groups": [empty_group["id"]]}), 422)
    assert error["field"] == "targets"
    assert_nothing_created(service, project)


def test_unknown_language_and_timeout_out_of_range(service, project, host):
    error = launch(service, project, valid(host, script={"content": "x", "language": "cobol"}), 422)
    assert error["field"] == "script.language"
    for timeout in (0, 86401, "ten"):
        error = launch(service, project, valid(host, timeout=timeout), 422)
        assert error["field"] == "timeout", timeout
    error = launch(service, project, valid(host, forks=0), 422)
    assert error["field"] == "forks"
    assert_nothing_created(service, project)


def test_ssh_hosts_need_an_account(service, project):
    remote = service.post(
        f"/projects/{project['id']}/hosts", {"name": "r", "address": "10.9.9.9"}, expect=201
    )
    error = launch(service, project, valid(remote.get_json()), 422)
    assert error["field"] == "account_id"
    assert_nothing_created(service, project)


def test_script_over_the_size_limit(service, project, host):
    limit = service.app.config["OPSFLOW"].script_max_bytes
    error = launch(service, project, valid(host, script={"content": "#" * (limit + 1)}), 413)
    assert error["code"] == "too_large" and error["field"] == "script.content"
    assert_nothing_created(service, project)


def test_malformed_json(service, project):
    response = service.api(
        "POST",
        f"/projects/{project['id']}/script-executions",
        400,
        data='{"script": {"content": "echo"',
        content_type="application/json",
    )
    error = response.get_json()["error"]
    assert error["code"] == "bad_request" and "malformed" in error["message"]
    response = service.api(
        "POST", f"/projects/{project['id']}/script-executions", 422, json=["not", "an object"]
    )
    assert response.get_json()["error"]["code"] == "invalid"
    assert_nothing_created(service, project)
