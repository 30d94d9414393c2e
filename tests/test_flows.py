"""Flows through the API with real workers, the engine, the ingester: graphs, tasks, operations."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import pairwise
from typing import Any

import pytest

from app.flows.calls import NO_ANSWER
from tests.conftest import add_hosts, add_local_host, make_member

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


def script_node(node_id: str, content: str, host: dict, account: dict | None = None, **extra: Any) -> dict:
    """A script node on `host`: a local host, or a lab host reached through `account`."""
    logins = {"account_id": account["id"]} if account else {}
    return {
        "id": node_id,
        "type": "activity",
        "atom": "script",
        "inputs": {
            "script": {"language": "bash", "content": content},
            "targets": {"hosts": [host["id"]]},
            "timeout": 60,
            **logins,
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
    # What /hold waits for before it answers.
    released = threading.Event()

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        Recorder.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if self.path.startswith("/hold"):
            Recorder.released.wait(120)
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


def http_node(node_id: str, url: str, **extra: Any) -> dict:
    inputs = {"method": "POST", "url": url, **extra.pop("inputs", {})}
    return {"id": node_id, "type": "activity", "atom": "http", "inputs": inputs, **extra}


def held_call(service, project: dict, http_server: str, timeout: int) -> tuple[dict, str]:
    """A task whose http node calls a path the server answers once `Recorder.released` is set; returned
    once the call has reached the server."""
    path = f"/hold-{uuid.uuid4().hex}"
    flow = create_flow(
        service, project, chain(http_node("call", f"{http_server}{path}", inputs={"timeout": timeout}))
    )
    task = create_task(service, project, flow)
    deadline = time.monotonic() + 60
    while not any(sent["path"] == path for sent in Recorder.received):
        assert time.monotonic() < deadline, "the http node never called"
        time.sleep(0.2)
    return task, path


def test_an_api_slow_to_answer_keeps_its_node_waiting_not_the_engine(service, project, http_server) -> None:
    """The service runs one engine here: while an http node waits for its answer, another task runs to its
    end."""
    Recorder.released.clear()
    try:
        slow, _ = held_call(service, project, http_server, timeout=120)
        quick = create_task(service, project, create_flow(service, project, chain(sleep_node("nap", 0))))
        assert wait_task(service, project, quick["id"], ended, timeout=60)["status"] == "success"
        waiting = service.get(f"/projects/{project['id']}/flow-tasks/{slow['id']}")
        assert nodes_of(waiting)["call"]["status"] == "running"
    finally:
        Recorder.released.set()
    slow = wait_task(service, project, slow["id"], ended)
    assert slow["status"] == "success", slow
    assert nodes_of(slow)["call"]["outputs"]["json"]["ticket"] == "T-42"


def test_a_call_lost_with_the_engine_making_it_fails_its_node_once_its_time_is_up(
    service, project, http_server
) -> None:
    Recorder.released.clear()
    try:
        task, _ = held_call(service, project, http_server, timeout=5)
        service.stop("engine")
        service.start("engine", "engine")
        task = wait_task(service, project, task["id"], ended, timeout=90)
    finally:
        Recorder.released.set()
    assert task["status"] == "failed", task
    call = nodes_of(task)["call"]
    assert call["error"] == NO_ANSWER and len(call["attempts"]) == 1


def test_a_release_flow_runs_branches_a_gateway_an_approval_an_http_call_and_a_subflow(
    service, project, http_server
) -> None:
    pid = project["id"]
    host = add_local_host(service, project)
    service.post(f"/projects/{pid}/variables", {"name": "tickets", "value": http_server}, expect=201)
    child = create_flow(
        service,
        project,
        chain(
            script_node(
                "greet", 'echo "OPSFLOW_SET greeting=hello $v"', host, outputs={"greeting": "greeting"}
            ),
            variables=[
                {"name": "v", "type": "string", "required": True},
                {"name": "greeting", "type": "string"},
            ],
            outputs=["greeting"],
        ),
    )
    document = {
        "variables": [
            {"name": "version", "type": "string", "default": "2.1", "validation": "^[0-9.]+$"},
            {"name": "token", "type": "secret", "default": "s3cr3t-token"},
            {"name": "ticket", "type": "string"},
            {"name": "greeting", "type": "string"},
        ],
        "outputs": ["ticket", "greeting"],
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "fork", "type": "parallel"},
            script_node("build", 'echo "building $version"; sleep 1', host),
            script_node("test", 'echo "testing $version"; sleep 1', host),
            {"id": "join", "type": "converge"},
            {"id": "which", "type": "exclusive"},
            {
                "id": "approve",
                "type": "activity",
                "atom": "approval",
                "inputs": {"message": "release ${version}?", "approvers": {"users": ["admin"]}},
            },
            http_node(
                "notify",
                "${_project.tickets}/tickets",
                inputs={"headers": {"Authorization": "Bearer ${token}"}, "body": {"version": "${version}"}},
                outputs={"ticket": "json"},
            ),
            {
                "id": "sub",
                "type": "subflow",
                "inputs": {"flow_id": child["id"], "values": {"v": "${version}"}},
                "outputs": {"greeting": "greeting"},
            },
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"from": "start", "to": "fork"},
            {"from": "fork", "to": "build"},
            {"from": "fork", "to": "test"},
            {"from": "build", "to": "join"},
            {"from": "test", "to": "join"},
            {"from": "join", "to": "which"},
            {"from": "which", "to": "approve", "condition": 'version.startsWith("2.")'},
            {"from": "which", "to": "end", "default": True},
            {"from": "approve", "to": "notify"},
            {"from": "notify", "to": "sub"},
            {"from": "sub", "to": "end"},
        ],
    }
    flow = create_flow(service, project, document)
    assert flow["variables"][1]["default"] == "******"
    task = create_task(service, project, flow, name="release 2.1")
    task = wait_task(service, project, task["id"], node_in("approve", "waiting_user"))
    nodes = nodes_of(task)
    build_job = service.get(f"/projects/{pid}/jobs/{nodes['build']['job_instance_id']}")
    test_job = service.get(f"/projects/{pid}/jobs/{nodes['test']['job_instance_id']}")
    # The two branches ran at the same time: each job started before the other ended.
    assert build_job["started_at"] < test_job["ended_at"] and test_job["started_at"] < build_job["ended_at"]
    assert nodes["which"]["outputs"] == {"branches": ["approve"]}
    assert nodes["approve"]["inputs"]["message"] == "release 2.1?"
    assert nodes["approve"]["waiting_for"]["approvers"] == {"users": ["admin"], "roles": []}

    viewer = make_member(service, pid, "viewer")
    operator = make_member(service, pid, "operator")
    path = f"/projects/{pid}/flow-tasks/{task['id']}/nodes/approve/approve"
    service.post(path, {"reason": "ok"}, expect=403, token=viewer)
    service.post(path, {"reason": "ok"}, expect=403, token=operator)
    service.post(path, {"reason": "looks good"}, expect=200)
    service.post(path, {"reason": "again"}, expect=409)
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success", task
    nodes = nodes_of(task)
    assert nodes["approve"]["outputs"] == {"approved": True, "by": "admin", "reason": "looks good"}
    sent = [entry for entry in Recorder.received if entry["path"] == "/tickets"][-1]
    assert sent["headers"]["Authorization"] == "Bearer s3cr3t-token"
    assert json.loads(sent["body"]) == {"version": "2.1"}
    assert nodes["notify"]["inputs"]["headers"]["Authorization"] == "******"
    assert "s3cr3t-token" not in json.dumps(task)
    assert task["outputs"] == {
        "ticket": {"ticket": "T-42", "echo": '{"version": "2.1"}'},
        "greeting": "hello 2.1",
    }
    child_task_id = nodes["sub"]["attempts"][0]["child_task_id"]
    child_task = service.get(f"/projects/{pid}/flow-tasks/{child_task_id}")
    assert child_task["status"] == "success" and child_task["variables"] == {"v": "2.1", "greeting": None}
    assert [entry["operation"] for entry in task["operations"]] == ["approve"]
    audit = service.get("/audit-events", query_string={"action": "approve", "project_id": pid})
    assert {entry["outcome"] for entry in audit} == {"success", "denied", "failed"}
    assert {entry["resource"] for entry in audit} == {"flow_task"}

    # Another version takes the default edge: straight to the end.
    task = create_task(service, project, flow, variables={"version": "3.0"})
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success"
    assert nodes_of(task)["approve"]["status"] == "waiting"
    tasks = service.get(f"/projects/{pid}/flow-tasks", query_string={"flow_id": flow["id"]})
    assert len(tasks) == 2


def test_bad_flows_are_refused_with_every_problem_and_its_path(service, project) -> None:
    pid = project["id"]
    document = chain(
        {"id": "call", "type": "activity", "atom": "http", "inputs": {"url": "not a url ${nope}"}},
        {
            "id": "sh",
            "type": "activity",
            "atom": "script",
            "inputs": {
                "script": {"content": "x", "language": "bash"},
                "targets": {"hosts": [999999]},
                "timeout": 60,
            },
        },
        {"id": "sub", "type": "subflow", "inputs": {"flow_id": 999999}},
    )
    body = create_flow(service, project, document, expect=422)
    error = body["error"]
    paths = {entry["path"] for entry in error["details"]["errors"]}
    assert {"nodes.1.inputs.url", "nodes.2.inputs.targets.hosts", "nodes.3.inputs.flow_id"} <= paths
    assert error["field"] in paths
    assert service.get(f"/projects/{pid}/flows") == []
    viewer = make_member(service, pid, "viewer")
    good = chain({"id": "nap", "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}})
    service.post(f"/projects/{pid}/flows", {"name": "x", **good}, expect=403, token=viewer)


def test_each_change_of_the_graph_is_a_version_and_a_task_keeps_its_own(service, project) -> None:
    pid = project["id"]
    flow = create_flow(
        service, project, chain({"id": "one", "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}})
    )
    task = create_task(service, project, flow, start=False)
    assert task["status"] == "created"
    changed = chain(
        {"id": "one", "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}},
        {"id": "two", "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}},
    )
    updated = service.api("PATCH", f"/projects/{pid}/flows/{flow['id']}", 200, json=changed).get_json()
    assert updated["version"] == 2
    renamed = service.api(
        "PATCH", f"/projects/{pid}/flows/{flow['id']}", 200, json={"description": "d"}
    ).get_json()
    assert renamed["version"] == 2
    versions = service.get(f"/projects/{pid}/flows/{flow['id']}/versions")
    assert [version["version"] for version in versions] == [1, 2]
    first = service.get(f"/projects/{pid}/flows/{flow['id']}/versions/1")
    assert [node["id"] for node in first["nodes"]] == ["start", "one", "end"]
    service.get(f"/projects/{pid}/flows/{flow['id']}/versions/3", expect=404)
    service.post(f"/projects/{pid}/flow-tasks/{task['id']}/start", {}, expect=200)
    task = wait_task(service, project, task["id"], ended)
    assert task["flow_version"] == 1 and [node["id"] for node in task["nodes"]] == ["start", "one", "end"]
    service.post(f"/projects/{pid}/flow-tasks/{task['id']}/start", {}, expect=409)
    naps = [
        {"id": "a", "atom": "sleep", "inputs": {"seconds": 0}},
        {"id": "b", "atom": "sleep", "inputs": {"seconds": 0}},
    ]
    stages = {"stages": [{"name": "s1", "mode": "parallel", "nodes": naps}]}
    staged = create_flow(service, project, stages)
    assert staged["stages"][0]["name"] == "s1"
    task = wait_task(service, project, create_task(service, project, staged)["id"], ended)
    assert task["status"] == "success"
    assert {node["id"]: node["stage"] for node in task["nodes"]}["a"] == "s1"


def sleep_node(node_id: str, seconds: float, **extra: Any) -> dict:
    return {"id": node_id, "type": "activity", "atom": "sleep", "inputs": {"seconds": seconds}, **extra}


def test_retry_with_new_inputs_keeps_every_attempt_and_operations_are_refused_when_the_state_forbids(
    service, project
) -> None:
    pid = project["id"]
    host = add_local_host(service, project)
    flow = create_flow(
        service,
        project,
        chain(script_node("deploy", "echo trying; exit 3", host), sleep_node("after", 0, retryable=False)),
    )
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "failed"
    node_path = f"/projects/{pid}/flow-tasks/{task['id']}/nodes"
    service.post(f"{node_path}/after/retry", {"reason": "x"}, expect=409)
    service.post(f"{node_path}/deploy/approve", {"reason": "x"}, expect=409)
    service.post(f"{node_path}/deploy/force_fail", {"reason": "x"}, expect=409)
    service.post(f"{node_path}/deploy/launch", {}, expect=404)
    service.post(f"{node_path}/ghost/retry", {}, expect=404)
    viewer = make_member(service, pid, "viewer")
    service.post(f"{node_path}/deploy/retry", {"reason": "x"}, expect=403, token=viewer)
    bad = {
        "inputs": {
            "script": {"language": "bash", "content": "exit 0"},
            "targets": {"hosts": [host["id"]]},
            "timeout": "soon",
        }
    }
    assert (
        service.post(f"{node_path}/deploy/retry", bad, expect=422).get_json()["error"]["field"]
        == "inputs.timeout"
    )
    fixed = {
        "script": {"language": "bash", "content": "echo fixed"},
        "targets": {"hosts": [host["id"]]},
        "timeout": 60,
    }
    service.post(f"{node_path}/deploy/retry", {"reason": "fixed the script", "inputs": fixed}, expect=200)
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success"
    deploy = nodes_of(task)["deploy"]
    assert [attempt["status"] for attempt in deploy["attempts"]] == ["failed", "success"]
    assert deploy["attempts"][0]["inputs"]["script"]["content"] == "echo trying; exit 3"
    assert deploy["attempts"][1]["inputs"]["script"]["content"] == "echo fixed"
    assert deploy["attempts"][0]["job_instance_id"] != deploy["attempts"][1]["job_instance_id"]
    assert task["operations"][0] | {"at": None} == {
        "at": None, "username": "admin", "operation": "retry", "node": "deploy", "reason": "fixed the script"
    }  # fmt: skip
    service.post(f"{node_path}/deploy/retry", {}, expect=409)
    service.post(f"/projects/{pid}/flow-tasks/{task['id']}/pause", {}, expect=409)


def test_skip_pause_resume_force_fail_and_revoke(service, project) -> None:
    pid = project["id"]
    flow = create_flow(
        service,
        project,
        chain(
            sleep_node("first", 60),
            sleep_node("second", 0, skippable=False),
            sleep_node("third", 0, outputs={}),
        ),
    )
    task = create_task(service, project, flow)
    task = wait_task(service, project, task["id"], node_in("first", "running"))
    task_path = f"/projects/{pid}/flow-tasks/{task['id']}"
    service.post(f"{task_path}/nodes/second/skip", {}, expect=409)
    service.post(f"{task_path}/nodes/third/skip", {"reason": "not today"}, expect=200)
    service.post(f"{task_path}/nodes/third/skip", {}, expect=409)
    service.post(f"{task_path}/nodes/second/pause_before", {"reason": "look first"}, expect=200)
    service.post(f"{task_path}/nodes/second/pause_before", {}, expect=409)
    service.post(f"{task_path}/pause", {"reason": "lunch"}, expect=200)
    service.post(f"{task_path}/pause", {}, expect=409)
    service.post(f"{task_path}/resume", {}, expect=200)
    service.post(f"{task_path}/nodes/first/force_fail", {"reason": "too slow"}, expect=200)
    task = wait_task(service, project, task["id"], lambda task: task["status"] == "failed")
    assert "force-failed by admin" in nodes_of(task)["first"]["error"]
    service.post(f"{task_path}/nodes/first/skip", {"reason": "go on"}, expect=200)
    task = wait_task(service, project, task["id"], node_in("second", "ready"))
    assert task["status"] == "running" and nodes_of(task)["second"]["paused_before"] is True
    service.post(f"{task_path}/nodes/second/resume", {}, expect=200)
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success"
    nodes = nodes_of(task)
    assert nodes["first"]["status"] == "skipped" and nodes["first"]["outputs"] is None
    assert nodes["third"]["status"] == "skipped"
    assert [entry["operation"] for entry in task["operations"]] == [
        "skip", "pause_before", "pause", "resume", "force_fail", "skip", "resume"
    ]  # fmt: skip
    service.post(f"{task_path}/revoke", {}, expect=409)

    task = wait_task(service, project, create_task(service, project, flow)["id"], node_in("first", "running"))
    service.post(f"/projects/{pid}/flow-tasks/{task['id']}/revoke", {"reason": "cancelled"}, expect=200)
    task = service.get(f"/projects/{pid}/flow-tasks/{task['id']}")
    assert task["status"] == "revoked" and nodes_of(task)["first"]["status"] == "revoked"
    for operation in ("resume", "revoke", "start"):
        service.post(f"/projects/{pid}/flow-tasks/{task['id']}/{operation}", {}, expect=409)
    service.post(f"/projects/{pid}/flow-tasks/{task['id']}/nodes/second/skip", {}, expect=409)


def test_a_revoke_cancels_the_running_job_instance(service, project) -> None:
    pid = project["id"]
    host = add_local_host(service, project)
    flow = create_flow(service, project, chain(script_node("long", "sleep 60", host)))
    task = wait_task(
        service,
        project,
        create_task(service, project, flow)["id"],
        lambda t: nodes_of(t)["long"]["job_instance_id"],
    )
    job_id = nodes_of(task)["long"]["job_instance_id"]
    service.wait_job(pid, job_id, statuses={"running"})
    service.post(f"/projects/{pid}/flow-tasks/{task['id']}/revoke", {}, expect=200)
    job = service.wait_job(pid, job_id)
    assert job["status"] == "terminated"


def test_exclusive_gateway_without_a_true_branch_fails_and_an_operator_chooses(service, project) -> None:
    pid = project["id"]
    document = {
        "variables": [{"name": "zone", "type": "string", "default": "mars"}],
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "where", "type": "exclusive"},
            sleep_node("earth", 0),
            sleep_node("moon", 0),
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"from": "start", "to": "where"},
            {"from": "where", "to": "earth", "condition": 'zone == "earth"'},
            {"from": "where", "to": "moon", "condition": 'zone == "moon"'},
            {"from": "earth", "to": "end"},
            {"from": "moon", "to": "end"},
        ],
    }
    flow = create_flow(service, project, document)
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "failed" and "no condition holds" in nodes_of(task)["where"]["error"]
    path = f"/projects/{pid}/flow-tasks/{task['id']}/nodes/where/choose_branch"
    assert service.post(path, {"branches": ["end"]}, expect=422).get_json()["error"]["field"] == "branches"
    service.post(path, {"branches": ["earth", "moon"]}, expect=422)
    service.post(path, {"branches": ["moon"], "reason": "it is the moon"}, expect=200)
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success"
    nodes = nodes_of(task)
    assert nodes["moon"]["status"] == "success" and nodes["earth"]["status"] == "waiting"
    service.post(path, {"branches": ["moon"]}, expect=409)


def test_a_callback_node_takes_its_token_once(service, project) -> None:
    flow = create_flow(
        service,
        project,
        chain(
            {
                "id": "wait",
                "type": "activity",
                "atom": "callback",
                "inputs": {},
                "outputs": {"build": "build"},
            },
            variables=[{"name": "build", "type": "string"}],
            outputs=["build"],
        ),
    )
    task = wait_task(
        service, project, create_task(service, project, flow)["id"], node_in("wait", "waiting_callback")
    )
    waiting = nodes_of(task)["wait"]["waiting_for"]
    url = waiting["url"].removeprefix("/api/v1")
    service.post(url, {"token": "stale", "data": {"build": "x"}}, expect=403)
    service.post(url, {"token": waiting["token"], "data": {"build": "b-17"}}, expect=200)
    service.post(url, {"token": waiting["token"], "data": {"build": "again"}}, expect=409)
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success" and task["outputs"] == {"build": "b-17"}


def test_task_values_are_checked_like_a_launch(service, project) -> None:
    pid = project["id"]
    document = chain(
        sleep_node("optional_nap", 0, optional=True),
        sleep_node("nap", 0),
        variables=[
            {"name": "version", "type": "string", "required": True, "validation": "^[0-9]+$"},
            {"name": "fixed", "type": "string", "default": "x", "changeable": False},
            {"name": "count", "type": "number", "default": 1},
        ],
    )
    flow = create_flow(service, project, document)
    cases = [
        ({}, "variables.version"),
        ({"variables": {"version": "abc"}}, "variables.version"),
        ({"variables": {"version": "1", "fixed": "y"}}, "variables.fixed"),
        ({"variables": {"version": "1", "count": "many"}}, "variables.count"),
        ({"variables": {"version": "1", "nope": 1}}, "variables.nope"),
        ({"variables": {"version": "1"}, "skip_nodes": ["nap"]}, "skip_nodes.0"),
        ({"variables": {"version": "1"}, "skip_nodes": ["ghost"]}, "skip_nodes.0"),
    ]
    for body, field in cases:
        error = create_task(service, project, flow, expect=422, **body)["error"]
        assert error["field"] == field, (body, error)
    assert service.get(f"/projects/{pid}/flow-tasks", query_string={"flow_id": flow["id"]}) == []
    headers = {"Idempotency-Key": "release-7"}
    body = {"variables": {"version": "7"}, "skip_nodes": ["optional_nap"]}
    first = service.post(f"/projects/{pid}/flows/{flow['id']}/tasks", body, expect=201, headers=headers)
    again = service.post(f"/projects/{pid}/flows/{flow['id']}/tasks", body, expect=201, headers=headers)
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.get_json()["id"] == first.get_json()["id"]
    other_flow = create_flow(service, project, chain(sleep_node("nap", 0)))
    changed = {"variables": {"version": "8"}, "skip_nodes": ["optional_nap"]}
    for path, reused in ((f"flows/{flow['id']}", changed), (f"flows/{other_flow['id']}", {})):
        refused = service.post(
            f"/projects/{pid}/{path}/tasks", reused, expect=409, headers=headers
        ).get_json()
        assert refused["error"]["field"] == "idempotency_key", refused
        assert f"flow task {first.get_json()['id']}" in refused["error"]["message"], refused
    task = wait_task(service, project, first.get_json()["id"], ended)
    assert nodes_of(task)["optional_nap"]["status"] == "skipped"
    assert task["variables"] == {"version": "7", "fixed": "x", "count": 1}


def test_auto_retry_waits_its_interval_and_keeps_both_attempts(
    service, project, lab, account, tmp_path
) -> None:
    # A lab host over SSH: a local host's run is sandboxed and sees none of the test's files.
    host = add_hosts(service, project, lab, 1)[0]
    marker = tmp_path / "tried"
    content = f'if [ -e "{marker}" ]; then echo second; else touch "{marker}"; echo first; exit 1; fi'
    flow = create_flow(
        service,
        project,
        chain(
            script_node("flaky", content, host, account, auto_retry={"times": 2, "interval": 1, "backoff": 2})
        ),
    )
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "success"
    flaky = nodes_of(task)["flaky"]
    assert [attempt["status"] for attempt in flaky["attempts"]] == ["failed", "success"]
    assert flaky["retries"] == 1
    first, second = flaky["attempts"]
    assert second["started_at"] >= first["ended_at"]


def test_a_node_timeout_fails_or_skips_it_and_stops_its_job(service, project) -> None:
    pid = project["id"]
    host = add_local_host(service, project)
    flow = create_flow(service, project, chain(script_node("slow", "sleep 60", host, timeout={"seconds": 2})))
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    slow = nodes_of(task)["slow"]
    assert task["status"] == "failed" and slow["error"] == "timed out after 2s"
    assert service.wait_job(pid, slow["job_instance_id"])["status"] == "terminated"
    skipping = create_flow(
        service,
        project,
        chain(
            sleep_node("nap", 60, timeout={"seconds": 1, "action": "fail_and_skip"}), sleep_node("next", 0)
        ),
    )
    task = wait_task(service, project, create_task(service, project, skipping)["id"], ended)
    assert task["status"] == "success"
    assert nodes_of(task)["nap"]["status"] == "skipped" and nodes_of(task)["next"]["status"] == "success"


def loop_flow(url: str, run_limit: int = 100) -> dict:
    return {
        "nodes": [
            {"id": "start", "type": "start"},
            http_node("work", f"{url}/loop", inputs={"body": "run ${_loop}"}, run_limit=run_limit),
            {"id": "again", "type": "exclusive"},
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"from": "start", "to": "work"},
            {"from": "work", "to": "again"},
            {"from": "again", "to": "end", "condition": "_loop >= 3"},
            {"from": "again", "to": "work", "default": True},
        ],
    }


def test_a_loop_runs_its_nodes_again_with_loop_counted_and_stops_at_its_run_limit(
    service, project, http_server
) -> None:
    before = len(Recorder.received)
    flow = create_flow(service, project, loop_flow(http_server))
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "success"
    bodies = [entry["body"] for entry in Recorder.received[before:] if entry["path"] == "/loop"]
    assert bodies == ["run 1", "run 2", "run 3"]
    work = nodes_of(task)["work"]
    assert work["runs"] == 3 and [attempt["run"] for attempt in work["attempts"]] == [1, 2, 3]
    limited = create_flow(service, project, loop_flow(http_server, run_limit=2))
    task = wait_task(service, project, create_task(service, project, limited)["id"], ended)
    assert task["status"] == "failed" and nodes_of(task)["work"]["error"] == "ran 2 times: its run limit"


INJECTION = (
    "$(touch {marker}); `touch {marker}`; {{{{ lookup('pipe', 'id') }}}} ${{other}} %s; rm -rf /nothing"
)


def test_values_holding_code_reach_scripts_http_and_conditions_as_text(
    service, project, lab, account, http_server, tmp_path
) -> None:
    pid = project["id"]
    host = add_hosts(service, project, lab, 1)[0]
    marker = tmp_path / "pwned"
    value = INJECTION.format(marker=marker)
    document = {
        "variables": [
            {"name": "version", "type": "string"},
            {"name": "other", "type": "string", "default": "O"},
        ],
        "nodes": [
            {"id": "start", "type": "start"},
            script_node("show", 'echo "$version"; echo "${VAR:-kept}"', host, account),
            http_node(
                "post",
                f"{http_server}/inject",
                inputs={"body": "${version}", "headers": {"X-V": "${version}"}},
            ),
            {"id": "same", "type": "exclusive"},
            sleep_node("matched", 0),
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"from": "start", "to": "show"},
            {"from": "show", "to": "post"},
            {"from": "post", "to": "same"},
            {"from": "same", "to": "matched", "condition": f"version == {json.dumps(value)}"},
            {"from": "same", "to": "end", "default": True},
            {"from": "matched", "to": "end"},
        ],
    }
    flow = create_flow(service, project, document)
    task = wait_task(
        service, project, create_task(service, project, flow, variables={"version": value})["id"], ended
    )
    assert task["status"] == "success", task
    nodes = nodes_of(task)
    results = service.host_results(pid, nodes["show"]["job_instance_id"])
    assert results[0]["stdout"] == f"{value}\nkept\n"
    sent = [entry for entry in Recorder.received if entry["path"] == "/inject"][-1]
    assert sent["body"] == value
    assert nodes["matched"]["status"] == "success"
    assert not marker.exists()


def test_a_duplicated_event_or_advance_changes_nothing(service, project) -> None:
    from app.flows import engine

    host = add_local_host(service, project)
    flow = create_flow(service, project, chain(script_node("once", "echo once", host), sleep_node("nap", 0)))
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    job_id = nodes_of(task)["once"]["job_instance_id"]
    for _ in range(3):
        engine.job_ended([job_id])
        engine.advance(task["id"])
    engine.enqueue([task["id"]] * 3)
    time.sleep(2)
    again = service.get(f"/projects/{project['id']}/flow-tasks/{task['id']}")
    assert again == task
    assert len(nodes_of(again)["once"]["attempts"]) == 1


def test_a_lost_queue_entry_and_lost_wake_ups_are_found_by_the_sweep(service, project) -> None:
    from app.extensions import redis
    from app.flows import wakeups

    service.stop("engine")
    try:
        flow = create_flow(service, project, chain(sleep_node("nap", 2), sleep_node("then", 0)))
        task = create_task(service, project, flow)
        # Redis loses the queue entry that would have started the task.
        redis.client.delete("rq:queue:flows")
    finally:
        service.start("engine", "engine")
    task = wait_task(service, project, task["id"], node_in("nap", "running"), timeout=90)
    redis.client.delete(wakeups.KEY)
    task = wait_task(service, project, task["id"], ended, timeout=90)
    assert task["status"] == "success"


def test_an_engine_killed_while_a_node_runs_leaves_the_task_to_the_next_engine(service, project) -> None:
    host = add_local_host(service, project)
    flow = create_flow(
        service, project, chain(script_node("slow", "sleep 4; echo slept", host), sleep_node("then", 0))
    )
    task = create_task(service, project, flow)
    task = wait_task(
        service, project, task["id"], lambda task: nodes_of(task)["slow"]["job_instance_id"], timeout=90
    )
    job_id = nodes_of(task)["slow"]["job_instance_id"]
    service.stop("engine")
    try:
        # The job instance ends while no engine runs: its end waits in Redis for the next one.
        assert service.wait_job(project["id"], job_id)["status"] == "success"
    finally:
        service.start("engine", "engine")
    task = wait_task(service, project, task["id"], ended, timeout=120)
    assert task["status"] == "success", task
    slow = nodes_of(task)["slow"]
    assert len(slow["attempts"]) == 1 and slow["job_instance_id"] == job_id


def test_the_callback_url_is_posted_once_when_the_task_ends(service, project, http_server) -> None:
    flow = create_flow(service, project, chain(sleep_node("nap", 0)))
    # A path of its own: the run on each database has its task 1, and both post to this server.
    path = f"/done-{uuid.uuid4().hex}"
    task = create_task(service, project, flow, callback_url=f"{http_server}{path}")
    task = wait_task(service, project, task["id"], ended)
    deadline = time.monotonic() + 60
    while not [entry for entry in Recorder.received if entry["path"] == path]:
        assert time.monotonic() < deadline, "the callback URL was not posted"
        time.sleep(0.3)
    # Long enough for a second post, if one were made, to arrive.
    time.sleep(2)
    mine = [json.loads(entry["body"]) for entry in Recorder.received if entry["path"] == path]
    assert len(mine) == 1 and mine[0]["status"] == "success" and mine[0]["flow_id"] == flow["id"]
    assert mine[0]["flow_task_id"] == task["id"]


PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: say the version
      ansible.builtin.command: echo "OPSFLOW_SET seen={{ version }}"
"""


def test_job_plan_file_transfer_and_playbook_atoms_run_their_job_instances(
    service, project, lab, account, tmp_path
) -> None:
    pid = project["id"]
    host = add_hosts(service, project, lab, 1)[0]
    login = account["id"]
    template = service.post(
        f"/projects/{pid}/job-templates",
        {
            "name": f"t-{time.monotonic_ns()}",
            "variables": [{"name": "who", "type": "string", "default": "nobody"}],
            "steps": [{"key": "hi", "name": "hi", "type": "script", "targets": {"hosts": [host["id"]]},
                       "account_id": login,
                       "script": {"language": "bash", "content": 'echo "OPSFLOW_SET greeted=$who"'}}],
        },
        expect=201,
    ).get_json()  # fmt: skip
    target = tmp_path / "pushed"
    target.mkdir()
    document = chain(
        {"id": "plan", "type": "activity", "atom": "job_plan",
         "inputs": {"template_id": template["id"], "variables": {"who": "${version}"}}},
        {"id": "push", "type": "activity", "atom": "file_transfer",
         "inputs": {"sources": [{"name": "release.txt", "content": "release ${version}\n"}],
                    "target_path": str(target), "targets": {"hosts": [host["id"]]}, "account_id": login}},
        {"id": "play", "type": "activity", "atom": "playbook",
         "inputs": {"content": PLAYBOOK, "targets": {"hosts": [host["id"]]}, "account_id": login},
         "outputs": {"seen": "status"}},
        variables=[{"name": "version", "type": "string", "default": "4.2"},
                   {"name": "seen", "type": "string"}],
    )  # fmt: skip
    operator = make_member(service, pid, "operator")
    body = {"name": "with a playbook", **document}
    service.post(f"/projects/{pid}/flows", body, expect=403, token=operator)
    flow = create_flow(service, project, document)
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "success", task
    nodes = nodes_of(task)
    plan_job = service.get(f"/projects/{pid}/jobs/{nodes['plan']['job_instance_id']}")
    assert plan_job["launch_type"] == "flow" and plan_job["template_id"] == template["id"]
    assert nodes["plan"]["outputs"]["greeted"] == "4.2"
    assert (target / "release.txt").read_text() == "release 4.2\n"
    assert nodes["push"]["outputs"]["status"] == "success"
    assert nodes["play"]["outputs"]["status"] == "success"
    assert task["values"]["seen"] == "success"


def test_a_conditional_parallel_gateway_runs_every_true_branch_and_its_converge_waits_for_those(
    service, project
) -> None:
    document = {
        "variables": [{"name": "regions", "type": "array", "default": ["eu", "us"]}],
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "pick", "type": "conditional_parallel"},
            sleep_node("eu", 1),
            sleep_node("us", 0),
            sleep_node("asia", 0),
            {"id": "join", "type": "converge"},
            sleep_node("after", 0),
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"from": "start", "to": "pick"},
            {"from": "pick", "to": "eu", "condition": '"eu" in regions'},
            {"from": "pick", "to": "us", "condition": '"us" in regions'},
            {"from": "pick", "to": "asia", "condition": '"asia" in regions'},
            {"from": "eu", "to": "join"},
            {"from": "us", "to": "join"},
            {"from": "asia", "to": "join"},
            {"from": "join", "to": "after"},
            {"from": "after", "to": "end"},
        ],
    }
    flow = create_flow(service, project, document)
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "success"
    nodes = nodes_of(task)
    assert {name: nodes[name]["status"] for name in ("eu", "us", "asia", "after")} == {
        "eu": "success", "us": "success", "asia": "waiting", "after": "success"
    }  # fmt: skip
    assert nodes["after"]["started_at"] >= nodes["eu"]["ended_at"]
    assert nodes["pick"]["outputs"] == {"branches": ["eu", "us"]}


def test_an_approval_timeout_takes_its_outcome_and_a_rejection_fails_the_node(service, project) -> None:
    pid = project["id"]
    approval = {"message": "ok?", "timeout": 1, "timeout_outcome": "approve"}
    flow = create_flow(
        service, project, chain({"id": "ask", "type": "activity", "atom": "approval", "inputs": approval})
    )
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "success"
    assert nodes_of(task)["ask"]["outputs"] == {"approved": True, "by": "", "reason": "no decision in time"}
    strict = create_flow(
        service,
        project,
        chain(
            {
                "id": "ask",
                "type": "activity",
                "atom": "approval",
                "inputs": {"approvers": {"roles": ["admin"]}},
            }
        ),
    )
    task = wait_task(
        service, project, create_task(service, project, strict)["id"], node_in("ask", "waiting_user")
    )
    service.post(
        f"/projects/{pid}/flow-tasks/{task['id']}/nodes/ask/reject", {"reason": "not now"}, expect=200
    )
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "failed" and nodes_of(task)["ask"]["error"] == "rejected by admin: not now"


def test_a_flow_timeout_fails_the_task_and_stops_what_runs(service, project) -> None:
    flow = create_flow(
        service, project, {"timeout": 2, **chain(sleep_node("long", 60), sleep_node("never", 0))}
    )
    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "failed" and task["error"] == "the task ran longer than its flow's timeout"
    nodes = nodes_of(task)
    assert nodes["long"]["status"] == "failed" and nodes["never"]["status"] == "waiting"
