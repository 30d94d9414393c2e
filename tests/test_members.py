"""Granting roles in a project, and what is refused."""

from __future__ import annotations

import uuid

PASSWORD = "members-Password-2026"


def new_user(service) -> int:
    body = {"username": f"m{uuid.uuid4().hex[:10]}", "password": PASSWORD}
    return service.post("/users", body, expect=201).get_json()["id"]


def test_roles_are_granted_changed_and_revoked(service, project):
    pid, alice, bob = project["id"], new_user(service), new_user(service)
    granted = service.post(
        f"/projects/{pid}/members", {"user_id": alice, "role": "admin"}, expect=201
    ).get_json()
    assert (granted["role"], granted["granted_by"]) == ("admin", "admin")
    service.post(f"/projects/{pid}/members", {"user_id": bob, "role": "viewer"}, expect=201)
    again = service.post(
        f"/projects/{pid}/members", {"user_id": bob, "role": "operator"}, expect=409
    ).get_json()
    assert again["error"]["field"] == "user_id"
    changed = service.api(
        "PATCH", f"/projects/{pid}/members/{bob}", 200, json={"role": "operator"}
    ).get_json()
    assert changed["role"] == "operator"
    assert {m["username"] for m in service.get(f"/projects/{pid}/members")} >= {granted["username"]}
    service.api("DELETE", f"/projects/{pid}/members/{bob}", 204)
    service.api("DELETE", f"/projects/{pid}/members/{bob}", 404)


def test_the_last_admin_stays(service, project):
    pid, alice, carol = project["id"], new_user(service), new_user(service)
    service.post(f"/projects/{pid}/members", {"user_id": alice, "role": "admin"}, expect=201)
    error = service.api("DELETE", f"/projects/{pid}/members/{alice}", 409).get_json()["error"]
    assert "last admin" in error["message"]
    service.api("PATCH", f"/projects/{pid}/members/{alice}", 409, json={"role": "viewer"})
    service.post(f"/projects/{pid}/members", {"user_id": carol, "role": "admin"}, expect=201)
    service.api("DELETE", f"/projects/{pid}/members/{alice}", 204)
    assert [m["user_id"] for m in service.get(f"/projects/{pid}/members")] == [carol]


def test_bad_grants(service, project):
    alice = new_user(service)
    missing = service.post(
        "/projects/987654/members", {"user_id": alice, "role": "admin"}, expect=404
    ).get_json()
    assert "987654" in missing["error"]["message"]
    unknown = service.post(
        f"/projects/{project['id']}/members", {"user_id": 876543, "role": "admin"}, expect=422
    )
    assert unknown.get_json()["error"]["field"] == "user_id"
    role = service.post(f"/projects/{project['id']}/members", {"user_id": alice, "role": "owner"}, expect=422)
    assert role.get_json()["error"]["field"] == "role"
    assert service.get(f"/projects/{project['id']}/members") == []
