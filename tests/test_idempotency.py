"""Idempotent launches: a key is scoped by project and launch endpoint, bound to its request, kept for
a while, and every retry of the first launch, simultaneous ones included, says it is a replay."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select
from werkzeug.serving import make_server

from app.extensions import db
from app.models import IdempotencyKey
from tests.conftest import ADMIN_TOKEN, add_local_host

REPLAYED = "Idempotent-Replayed"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def host(service, project) -> dict:
    return add_local_host(service, project)


def script_body(host: dict, content: str = "true") -> dict:
    return {"script": {"content": content}, "targets": {"hosts": [host["id"]]}, "timeout": 60}


def launch(service, path: str, body: dict, key: str, expect: int = 202):
    return service.post(path, body, expect, headers={"Idempotency-Key": key})


def launch_routes(service, project, host) -> dict[str, dict]:
    """Each launch endpoint of a project, with a body it accepts."""
    pid = project["id"]
    steps = [{"key": "gate", "name": "gate", "type": "manual"}]
    template = service.post(
        f"/projects/{pid}/job-templates", {"name": unique("t"), "steps": steps}, expect=201
    ).get_json()
    plan = service.post(
        f"/projects/{pid}/job-plans", {"name": unique("p"), "template_id": template["id"]}, expect=201
    ).get_json()
    transfer = {
        "sources": [{"name": "idem.conf", "content": "x\n"}],
        "target_path": f"/tmp/opsflow-idem-{pid}",
        "targets": {"hosts": [host["id"]]},
        "mode": "force",
    }
    return {
        f"/projects/{pid}/script-executions": script_body(host),
        f"/projects/{pid}/file-transfers": transfer,
        f"/projects/{pid}/job-templates/{template['id']}/launch": {"variables": {}},
        f"/projects/{pid}/job-plans/{plan['id']}/launch": {"variables": {}},
    }


def test_a_retry_answers_with_the_first_job_on_every_launch_endpoint(service, project, host):
    for path, body in launch_routes(service, project, host).items():
        key = unique("retry")
        first = launch(service, path, body, key)
        assert REPLAYED not in first.headers, path
        again = launch(service, path, body, key)
        assert again.get_json()["id"] == first.get_json()["id"], path
        assert again.headers[REPLAYED] == "true", path
        # The key in the body is the same key as in the header.
        in_body = service.post(path, {**body, "idempotency_key": key}, 202)
        assert in_body.get_json()["id"] == first.get_json()["id"] and in_body.headers[REPLAYED] == "true"


def test_one_key_on_other_endpoints_or_projects_launches_again(service, project, host):
    key = unique("shared")
    routes = launch_routes(service, project, host)
    ids = [launch(service, path, body, key).get_json()["id"] for path, body in routes.items()]
    # Another template's launch is another endpoint too.
    other_template = launch_routes(service, project, host)
    template_path = next(path for path in other_template if "/job-templates/" in path)
    ids.append(launch(service, template_path, {"variables": {}}, key).get_json()["id"])
    other = service.post("/projects", {"name": unique("other")}, expect=201).get_json()
    other_host = add_local_host(service, other)
    elsewhere = launch(service, f"/projects/{other['id']}/script-executions", script_body(other_host), key)
    ids.append(elsewhere.get_json()["id"])
    assert len(set(ids)) == len(ids)


def test_the_same_key_with_another_request_is_refused(service, project, host):
    path = f"/projects/{project['id']}/script-executions"
    key = unique("bound")
    first = launch(service, path, script_body(host, "echo one"), key).get_json()
    error = launch(service, path, script_body(host, "echo two"), key, expect=422).get_json()["error"]
    assert error["field"] == "idempotency_key" and key in error["message"]
    # Key order and defaults spelled out are the same request.
    spelled = {
        "timeout": 60,
        "targets": {"hosts": [host["id"]]},
        "params": [],
        "script": {"content": "echo one"},
    }
    assert launch(service, path, spelled, key).get_json()["id"] == first["id"]
    jobs = service.get(f"/projects/{project['id']}/jobs")
    assert [job["id"] for job in jobs].count(first["id"]) == 1 and len(jobs) == 1


def test_bad_keys_are_refused(service, project, host):
    path = f"/projects/{project['id']}/script-executions"
    error = launch(service, path, script_body(host), "x" * 256, expect=422).get_json()["error"]
    assert error["field"] == "Idempotency-Key"
    body = {**script_body(host), "idempotency_key": "in-body"}
    error = launch(service, path, body, "in-header", expect=422).get_json()["error"]
    assert error["field"] == "idempotency_key"
    error = service.post(path, {**script_body(host), "idempotency_key": ""}, 422).get_json()["error"]
    assert error["field"] == "idempotency_key"
    assert service.get(f"/projects/{project['id']}/jobs") == []


@pytest.fixture
def short_lived_keys(service) -> Iterator[None]:
    settings = service.app.config["OPSFLOW"]
    service.app.config["OPSFLOW"] = dataclasses.replace(settings, idempotency_key_ttl=1)
    try:
        yield
    finally:
        service.app.config["OPSFLOW"] = settings


def kept_keys(key: str) -> list[IdempotencyKey]:
    db.session.rollback()
    return db.session.scalars(select(IdempotencyKey).where(IdempotencyKey.key == key)).all()


def test_an_expired_key_launches_again_and_is_forgotten(service, project, host, short_lived_keys):
    path = f"/projects/{project['id']}/script-executions"
    key = unique("expiring")
    first = launch(service, path, script_body(host, "echo one"), key).get_json()
    time.sleep(1.2)
    second = launch(service, path, script_body(host, "echo two"), key)
    assert second.get_json()["id"] != first["id"] and REPLAYED not in second.headers
    forgotten = unique("forgotten")
    launch(service, path, script_body(host), forgotten)
    assert len(kept_keys(forgotten)) == 1
    # The ingester's periodic housekeeping deletes it once it has expired.
    deadline = time.monotonic() + 60
    while kept_keys(forgotten):
        assert time.monotonic() < deadline, "the expired key was never deleted"
        time.sleep(0.5)


@pytest.fixture
def served(service) -> Iterator[str]:
    """The API served over HTTP on a free port, a thread per request, as a production server does."""
    server = make_server("127.0.0.1", 0, service.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/api/v1"
    finally:
        server.shutdown()
        thread.join()


def test_every_simultaneous_retry_is_a_replay(service, project, host, served):
    attempts = 20
    url = f"{served}/projects/{project['id']}/script-executions"
    payload = json.dumps(script_body(host)).encode()
    headers = {
        "Authorization": f"Bearer {ADMIN_TOKEN}",
        "Content-Type": "application/json",
        "Idempotency-Key": unique("race"),
    }
    start = threading.Barrier(attempts)

    def attempt(_) -> tuple[int, int, str | None]:
        start.wait()
        request = urllib.request.Request(url, data=payload, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, json.load(response)["id"], response.headers.get(REPLAYED)
        except urllib.error.HTTPError as error:
            return error.code, 0, error.read().decode()

    with ThreadPoolExecutor(max_workers=attempts) as pool:
        answers = list(pool.map(attempt, range(attempts)))
    assert {status for status, _, _ in answers} == {202}, answers
    assert len({job_id for _, job_id, _ in answers}) == 1
    assert sorted(str(replayed) for _, _, replayed in answers) == ["None"] + ["true"] * (attempts - 1)
    assert len(service.get(f"/projects/{project['id']}/jobs")) == 1
