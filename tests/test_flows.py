"""Flows through the API with real workers, the engine, the ingester: graphs, tasks, operations."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any

import pytest

from tests.conftest import add_local_host

TASK_ENDED = frozenset({"success", "failed", "revoked"})


def create_flow(service, project: dict, body: dict[str, Any], expect: int = 201) -> dict:
    body = {"name": f"flow-{time.monotonic_ns()}", **body}
    return service.post(f"/projects/{project['id']}/flows", body, expect=expect).get_json()


def create_task(service, project: dict, flow: dict, expect: int = 201, **body: Any) -> dict:
    return service.post(f"/projects/{project['id']}/flows/{flow['id']}/tasks", body, expect=expect).get_json()


def wait_task(service, project: dict, task_id: int, until, timeout: float = 120) -> dict:
    """Poll the task until `until(task)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        task = service.get(f"/projects/{project['id']}/flow-tasks/{task_id}")
        if until(task):
            return task
        if time.monotonic() > deadline:
            raise AssertionError(
                f"task {task_id} is {task['status']} after {timeout}s: {json.dumps(task)[:4000]}"
            )
        time.sleep(0.3)


def ended(task: dict) -> bool:
    return task["status"] in TASK_ENDED


def node_in(node_id: str, *statuses: str):
    def check(task: dict) -> bool:
        return nodes_of(task)[node_id]["status"] in statuses

    return check


def nodes_of(task: dict) -> dict[str, dict]:
    return {node["id"]: node for node in task["nodes"]}


def script_node(node_id: str, content: str, host: dict, **extra: Any) -> dict:
    return {
        "id": node_id,
        "type": "activity",
        "atom": "script",
        "inputs": {
            "script": {"language": "bash", "content": content},
            "targets": {"hosts": [host["id"]]},
            "timeout": 60,
        },
        **extra,
    }


def chain(*middle: dict, **document: Any) -> dict:
    nodes = [{"id": "start", "type": "start"}, *middle, {"id": "end", "type": "end"}]
    ids = [node["id"] for node in nodes]
    return {
        "nodes": nodes,
        "edges": [{"from": a, "to": b} for a, b in pairwise(ids)],
        **document,
    }


class Recorder(BaseHTTPRequestHandler):
    """A local HTTP server that records what it is sent and answers JSON."""

    received: list[dict] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        Recorder.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status = 500 if self.path.startswith("/fail") else 200
        answer = json.dumps({"ticket": "T-42", "echo": body}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_chain_of_sleeps_and_a_script_runs_to_its_end(service, project) -> None:
    host = add_local_host(service, project)
    document = chain(
        {"id": "nap", "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}},
        script_node(
            "say",
            'echo "version=$version"; echo "OPSFLOW_SET built=v$version"',
            host,
            outputs={"built": "built"},
        ),
        variables=[
            {"name": "version", "type": "string", "default": "1.0"},
            {"name": "built", "type": "string"},
        ],
        outputs=["built"],
    )
    flow = create_flow(service, project, document)
    assert flow["version"] == 1 and flow["nodes"][1]["id"] == "nap"
    task = create_task(service, project, flow, variables={"version": "2.5"})
    assert task["status"] == "running"
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success", task
    nodes = nodes_of(task)
    assert nodes["say"]["outputs"]["built"] == "v2.5"
    assert task["outputs"] == {"built": "v2.5"}
    job = service.get(f"/projects/{project['id']}/jobs/{nodes['say']['job_instance_id']}")
    assert job["launch_type"] == "flow" and job["status"] == "success"
    assert [node["status"] for node in task["nodes"]] == ["success"] * 4
