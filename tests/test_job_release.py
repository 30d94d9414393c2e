"""A four-step release over loopback SSH: script, file transfer, manual confirmation, script.

Step two fails on a host that cannot be reached; the host is mended and the step retried on its
failed host only; the manual step is confirmed; the last step reads what the first one set per host.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from tests.conftest import add_hosts, make_member

TOKEN = "s3cret-token-value"
INJECTION = "{{ lookup('pipe', 'id') }}"


class Callbacks:
    """A local HTTP server that records the JSON bodies POSTed to it."""

    def __init__(self, refusals: int = 0) -> None:
        received = self.received = []
        self.attempts = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                body = json.loads(self.rfile.read(length))
                server.attempts += 1
                if server.attempts <= refusals:
                    self.send_response(503)
                else:
                    received.append(body)
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/done"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 60) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"the callback URL was called {len(self.received)} times"
            time.sleep(0.2)
        return self.received


@pytest.fixture
def callbacks():
    server = Callbacks()
    yield server
    server.server.shutdown()


def test_a_refused_callback_is_tried_again(service, project):
    server = Callbacks(refusals=1)
    try:
        host = service.post(
            f"/projects/{project['id']}/hosts",
            {"name": "cb", "address": "127.0.0.1", "connection": "local"},
            201,
        ).get_json()
        body = {"name": f"cb-{uuid.uuid4().hex[:6]}", "steps": [
            {"name": "s", "type": "script", "script": {"content": "true"}, "targets": {"hosts": [host["id"]]}}
        ]}  # fmt: skip
        template = service.post(f"/projects/{project['id']}/job-templates", body, 201).get_json()
        launch = {"callback_url": server.url}
        job = service.post(f"/projects/{project['id']}/job-templates/{template['id']}/launch", launch, 202)
        [posted] = server.wait(1, timeout=90)
        assert posted["job_instance_id"] == job.get_json()["id"] and posted["status"] == "success"
        assert server.attempts == 2
    finally:
        server.server.shutdown()


def release_template(servers: list[dict], everyone: list[dict], account: dict, target: Path) -> dict:
    script_common = {"targets": {"variable": "servers"}, "account_id": account["id"], "timeout": 60}
    return {
        "name": f"release-{uuid.uuid4().hex[:6]}",
        "variables": [
            {"name": "version", "type": "string", "required": True},
            {"name": "token", "type": "secret", "default": TOKEN},
            {"name": "servers", "type": "host_list", "default": {"hosts": [h["id"] for h in servers]}},
            {"name": "build", "type": "namespace", "default": "none"},
            {"name": "files", "type": "array", "default": ["a b", "c"]},
            {"name": "note", "type": "string", "default": INJECTION, "changeable": False},
        ],
        "steps": [
            {
                "key": "stop",
                "name": "stop the service",
                "type": "script",
                "script": {
                    "language": "bash",
                    "content": 'echo "stop $version token=$token note=$note"\n'
                    'printf "%s|" "$files"; echo\n'
                    "echo OPSFLOW_SET build=$version@$(echo $SSH_CONNECTION | cut -d' ' -f3)\n",
                },
                **script_common,
            },
            {
                "key": "distribute",
                "name": "distribute the release",
                "type": "file_transfer",
                "transfer": {
                    "sources": [{"name": "release.txt", "content": "release {{ version }}\n"}],
                    "target_path": str(target),
                    "mode": "force",
                },
                "targets": {"hosts": [h["id"] for h in everyone]},
                "account_id": account["id"],
                "timeout": 60,
            },
            {
                "key": "approve",
                "name": "approve the restart",
                "type": "manual",
                "manual": {"message": "check the canary", "confirmers": {"users": ["admin"]}},
            },
            {
                "key": "start",
                "name": "start the service",
                "type": "script",
                "script": {
                    "language": "bash",
                    "content": 'echo "start build=$build previous=$OPSFLOW_PREVIOUS_SUCCESS_HOSTS"\n',
                },
                **script_common,
            },
        ],
    }


def test_four_step_release(service, project, account, lab, tmp_path, callbacks):
    pid = project["id"]
    servers = add_hosts(service, project, lab, 3)
    # The fourth host answers on no port yet: step two fails there.
    down = service.post(
        f"/projects/{pid}/hosts", {"name": "late", "address": lab.address(3), "port": 1}, expect=201
    ).get_json()
    target = tmp_path / "release dir"
    template = service.post(
        f"/projects/{pid}/job-templates",
        release_template(servers, [*servers, down], account, target),
        expect=201,
    ).get_json()
    assert [v.get("default") for v in template["variables"] if v["name"] == "token"] == ["******"]
    plan = service.post(
        f"/projects/{pid}/job-plans",
        {"template_id": template["id"], "name": f"plan-{uuid.uuid4().hex[:6]}", "values": {"version": "1.0"}},
        expect=201,
    ).get_json()
    assert plan["out_of_date"] is False and plan["enabled_steps"] == [
        "stop",
        "distribute",
        "approve",
        "start",
    ]

    launch = {"variables": {"version": "2.0"}, "callback_url": callbacks.url}
    headers = {"Idempotency-Key": f"release-{uuid.uuid4().hex}"}
    job = service.post(f"/projects/{pid}/job-plans/{plan['id']}/launch", launch, 202, headers=headers)
    job = job.get_json()
    again = service.post(f"/projects/{pid}/job-plans/{plan['id']}/launch", launch, 202, headers=headers)
    assert again.get_json()["id"] == job["id"] and again.headers["Idempotent-Replayed"] == "true"
    assert job["variables"]["token"] == {"type": "secret", "value": "******"}
    assert job["variables"]["version"] == {"type": "string", "value": "2.0"}

    failed = service.wait_job(pid, job["id"], statuses={"failed"})
    stop, fetchless_push, approve, start = failed["steps"]
    assert [s["status"] for s in failed["steps"]] == ["success", "failed", "waiting", "waiting"]
    assert fetchless_push["counts"]["unreachable"] == 1 and fetchless_push["counts"]["success"] == 3
    first = service.host_results(pid, job["id"], step=stop["id"])
    for result in first:
        assert "stop 2.0 token=****** note=" + INJECTION in result["stdout"]
        assert "a b\nc|" in result["stdout"]
        assert TOKEN not in result["stdout"]

    # Nothing waits for a confirmation yet; a step that succeeded is not retried.
    error = service.post(f"/projects/{pid}/jobs/{job['id']}/steps/{approve['id']}/confirm", {}, 409)
    assert "not waiting" in error.get_json()["error"]["message"]
    service.post(f"/projects/{pid}/jobs/{job['id']}/steps/{stop['id']}/retry", {}, 409)

    service.api("PATCH", f"/projects/{pid}/hosts/{down['id']}", 200, json={"port": lab.port})
    retried = service.post(
        f"/projects/{pid}/jobs/{job['id']}/steps/{fetchless_push['id']}/retry", {"failed_only": True}, 202
    ).get_json()
    assert retried["status"] == "running"
    waiting = service.wait_job(pid, job["id"], statuses={"waiting_user", "failed"})
    assert waiting["status"] == "waiting_user", waiting
    push = waiting["steps"][1]
    assert push["status"] == "success" and push["counts"]["success"] == 4
    assert (target / "release.txt").read_text() == "release {{ version }}\n"

    operator_token = make_member(service, pid, "operator")
    refused = service.post(
        f"/projects/{pid}/jobs/{job['id']}/steps/{approve['id']}/confirm", {}, 403, token=operator_token
    )
    assert "user admin" in refused.get_json()["error"]["message"]
    service.post(
        f"/projects/{pid}/jobs/{job['id']}/steps/{approve['id']}/confirm", {"reason": "canary is fine"}, 202
    )
    done = service.wait_job(pid, job["id"], statuses={"success", "failed"})
    assert done["status"] == "success", done
    last = service.host_results(pid, job["id"], step=start["id"])
    for result in last:
        assert f"start build=2.0@{result['address']} " in result["stdout"], result
        assert "previous=h00000 h00001 h00002 late" in result["stdout"]

    operations = [(op["action"], op["actor"], op["reason"]) for op in done["operations"]]
    assert operations == [("retry", "admin", ""), ("confirm", "admin", "canary is fine")]
    assert done["operations"][0]["details"]["hosts"] == ["late"]
    # The job ended twice: failed at step two, then, retried and confirmed, with success.
    posted = callbacks.wait(2)
    assert [(body["job_instance_id"], body["status"]) for body in posted] == [
        (job["id"], "failed"),
        (job["id"], "success"),
    ]
    assert posted[1]["counts"]["success"] == 10
