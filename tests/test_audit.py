"""The audit log records changes, launches, operations and refusals; it can only be read."""

from __future__ import annotations

import uuid

from tests.conftest import add_local_host, basic_auth

PASSWORD = "audit-Password-2026"


def test_launch_cancel_and_refusal_are_recorded(service, project):
    pid = project["id"]
    host = add_local_host(service, project)
    body = {"script": {"content": "sleep 20"}, "targets": {"hosts": [host["id"]]}, "params": ["s3cret-param"]}
    job = service.post(f"/projects/{pid}/script-executions", body, expect=202).get_json()
    service.post(f"/projects/{pid}/jobs/{job['id']}/cancel", expect=202)
    name = f"viewer{uuid.uuid4().hex[:8]}"
    viewer = service.post("/users", {"username": name, "password": PASSWORD}, expect=201).get_json()
    service.post(f"/projects/{pid}/members", {"user_id": viewer["id"], "role": "viewer"}, expect=201)
    headers = basic_auth(name, PASSWORD)
    token = service.api(
        "POST", "/users/me/tokens", 201, token=None, headers=headers, json={"name": "t"}
    ).get_json()
    service.api("POST", f"/projects/{pid}/jobs/{job['id']}/cancel", 403, token=token["token"])

    events = service.get("/audit-events", query_string={"project_id": pid, "page_size": 100})
    seen = [(e["action"], e["resource"], e["outcome"], e["username"]) for e in events]
    assert ("launch", "job", "success", "admin") in seen
    assert ("cancel", "job", "success", "admin") in seen
    assert ("cancel", "job", "denied", name) in seen
    assert ("create", "host", "success", "admin") in seen
    launch = next(e for e in events if e["action"] == "launch")
    assert launch["resource_id"] == str(job["id"]) and launch["client_address"]
    assert events == sorted(events, key=lambda e: e["at"], reverse=True)
    assert "s3cret-param" not in str(events) and token["token"] not in str(events)

    denied = service.get("/audit-events", query_string={"project_id": pid, "outcome": "denied"})
    assert [e["username"] for e in denied] == [name]
    only_launches = service.get("/audit-events", query_string={"action": "launch", "username": "admin"})
    assert only_launches and {e["action"] for e in only_launches} == {"launch"}
    assert service.get("/audit-events", token=token["token"]) == []
    service.wait_job(pid, job["id"])


def test_the_log_is_append_only_and_filters_are_checked(service):
    service.api("POST", "/audit-events", 405, json={})
    service.api("DELETE", "/audit-events", 405)
    error = service.api("GET", "/audit-events", 422, query_string={"colour": "red"}).get_json()["error"]
    assert error["field"] == "colour"
    error = service.api("GET", "/audit-events", 422, query_string={"since": "yesterday"}).get_json()["error"]
    assert error["field"] == "since"
