"""Every integer the API reads is bounded: a path id out of range is 404, a query or body value 422 naming the
field, a call without a token 401; none of them a server error, whatever the route."""

from __future__ import annotations

import re

import pytest
from sqlalchemy.exc import OperationalError

from app.config import INTEGER_MAX
from app.services import audit
from tests.conftest import add_local_host, make_member

OUT_OF_RANGE = (INTEGER_MAX + 1, 2**63, 2**64, -1, 0)
PATH_ID = re.compile(r"<int:(\w+)>")


def id_routes(service) -> list[tuple[str, str]]:
    """(method, path with {name} for each id) of every API route that takes an id in its path."""
    routes = []
    for rule in service.app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1") and "<int:" in rule.rule:
            path = PATH_ID.sub(r"{\1}", rule.rule.removeprefix("/api/v1"))
            routes += [(method, path) for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]
    return routes


def integer_query_parameters(service) -> list[tuple[str, str]]:
    """(path, name) of every integer in a query string of a GET, from the API's own description."""
    document = service.get("/openapi.json", token=None)
    found = []
    for path, operations in document["paths"].items():
        for parameter in operations.get("get", {}).get("parameters", []):
            if parameter["in"] == "query" and parameter["schema"].get("type") == "integer":
                found.append((path.removeprefix("/api/v1"), parameter["name"]))
    return found


def test_a_path_id_out_of_range_is_not_found_on_every_route(service):
    routes = id_routes(service)
    assert len(routes) > 40
    for method, path in routes:
        names = PATH_ID.findall(path) or re.findall(r"{(\w+)}", path)
        for bad in OUT_OF_RANGE:
            for name in names:
                url = path.format(**{n: bad if n == name else 1 for n in names})
                answer = service.api(method, url, json={})
                assert answer.status_code == 404, (method, url, answer.get_data(as_text=True))
                assert answer.get_json()["error"]["code"] == "not_found"
                assert service.api(method, url, token=None, json={}).status_code == 401, (method, url)


def test_the_largest_id_is_an_ordinary_missing_resource(service, project):
    pid = project["id"]
    error = service.get(f"/projects/{INTEGER_MAX}", expect=404)["error"]
    assert str(INTEGER_MAX) in error["message"]
    service.get(f"/projects/{pid}/hosts/{INTEGER_MAX}", expect=404)
    service.api("DELETE", f"/projects/{pid}/jobs/{INTEGER_MAX}/cancel", 405)
    service.api("POST", f"/projects/{INTEGER_MAX}/hosts", 401, token=None, json={"name": "x"})


def test_every_integer_in_a_query_is_bounded(service, project):
    parameters = integer_query_parameters(service)
    assert ("/projects/{pid}/hosts", "page") in parameters and ("/audit-events", "project_id") in parameters
    for path, name in parameters:
        url = re.sub(r"{\w+}", str(project["id"]), path)
        for bad in (INTEGER_MAX + 1, 2**63, 2**64, -(2**63) - 1):
            error = service.get(url, expect=422, query_string={name: bad})["error"]
            assert name in error["details"], (url, name, error)
            service.api("GET", url, 401, token=None, query_string={name: bad})
    assert service.get(f"/projects/{project['id']}/hosts", query_string={"page": INTEGER_MAX}) == []


def test_ids_and_counts_in_a_body_are_bounded(service, project):
    pid = project["id"]
    host = add_local_host(service, project)
    launch = {"script": {"content": "true"}, "targets": {"hosts": [host["id"]]}}
    run = f"/projects/{pid}/script-executions"
    cases = [
        (run, {**launch, "targets": {"hosts": [2**63]}}, "targets.hosts.0"),
        (
            f"/projects/{pid}/script-executions",
            {**launch, "targets": {"groups": [2**64]}},
            "targets.groups.0",
        ),
        (run, {**launch, "account_id": INTEGER_MAX + 1}, "account_id"),
        (run, {**launch, "forks": 2**63}, "forks"),
        (
            f"/projects/{pid}/script-executions",
            {**launch, "script": {"script_id": 2**63}},
            "script.script_id",
        ),
        (f"/projects/{pid}/reachability-checks", {"targets": {"hosts": [-1]}}, "targets.hosts.0"),
        (f"/projects/{pid}/groups", {"name": "g", "hosts": [2**63]}, "hosts.0"),
        (f"/projects/{pid}/hosts", {"name": "h", "address": "127.0.0.1", "port": 2**64}, "port"),
        (f"/projects/{pid}/members", {"user_id": 2**63, "role": "viewer"}, "user_id"),
        (f"/projects/{pid}/job-plans", {"template_id": 2**63, "name": "p"}, "template_id"),
    ]
    for url, body, field in cases:
        error = service.post(url, body, expect=422).get_json()["error"]
        assert error["field"] == field, (url, error)
        service.post(url, body, expect=401, token=None)
    assert service.get(f"/projects/{pid}/jobs") == []


@pytest.fixture
def failing_audit(monkeypatch):
    def refuse(*args, **kwargs) -> None:
        raise OperationalError("INSERT INTO audit_event", {}, Exception("database is locked"))

    monkeypatch.setattr(audit, "write", refuse)


def test_a_failing_audit_write_leaves_the_answer_as_it_is(
    service, project, failing_audit, caplog, monkeypatch
):
    # Alembic's logging setup, run in this process by the fixture's upgrade, disables loggers that exist.
    monkeypatch.setattr(service.app.logger, "disabled", False)
    pid = project["id"]
    viewer = make_member(service, pid, "viewer")
    service.post(f"/projects/{pid}/hosts", {"name": "h", "address": "127.0.0.1"}, expect=401, token=None)
    service.post(f"/projects/{pid}/hosts", {"name": "h", "address": "127.0.0.1"}, expect=403, token=viewer)
    service.api("DELETE", f"/projects/{pid}/hosts/{INTEGER_MAX}", 404)
    assert "audit entry not written" in caplog.text
