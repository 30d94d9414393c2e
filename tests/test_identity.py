"""Users, API tokens and authentication."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN_TOKEN, add_local_host, basic_auth, make_member

PASSWORD = "correct-Horse-7-battery"


@pytest.fixture
def user(service):
    name = f"u{time.time_ns() % 10**9}"
    body = {
        "username": name,
        "display_name": "Ops Person",
        "email": f"{name}@example.com",
        "password": PASSWORD,
    }
    return service.post("/users", body, expect=201).get_json()


def token_for(service, user, **body) -> str:
    response = service.api(
        "POST", "/users/me/tokens", 201, token=None, headers=basic_auth(user["username"], PASSWORD),
        json={"name": "cli", **body},
    )  # fmt: skip
    return response.get_json()["token"]


def test_health_and_api_description_need_no_token(service):
    service.api("GET", "/health", 200, token=None)
    service.api("GET", "/openapi.json", 200, token=None)
    spec = service.api("GET", "/openapi.json", 200, token=None).get_json()
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"


def test_missing_or_bad_token_is_401(service):
    response = service.api("GET", "/projects", 401, token=None)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.get_json()["error"]["code"] == "unauthorized"
    service.api("GET", "/projects", 401, token="opf_not-a-real-token")
    service.api("GET", "/projects", 401, token=None, headers={"Authorization": "Basic eDp5"})


def test_user_makes_tokens_with_password_only_once_shown(service, user):
    service.api(
        "POST", "/users/me/tokens", 401, token=None, headers=basic_auth(user["username"], "wrong-password-1")
    )
    value = token_for(service, user)
    assert value.startswith("opf_")
    me = service.get("/users/me", token=value)
    assert me["username"] == user["username"] and "password" not in me
    listed = service.get("/users/me/tokens", token=value)
    assert [t["name"] for t in listed] == ["cli"] and "token" not in listed[0]


def test_revocation_and_expiry_take_effect_at_once(service, user):
    value = token_for(service, user)
    [token] = service.get("/users/me/tokens", token=value)
    service.api("DELETE", f"/users/me/tokens/{token['id']}", 204, token=value)
    service.api("GET", "/users/me", 401, token=value)
    soon = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    short = token_for(service, user, expires_at=soon)
    service.api("GET", "/users/me", 200, token=short)
    time.sleep(2.2)
    response = service.api("GET", "/users/me", 401, token=short)
    assert "expired" in response.get_json()["error"]["message"]


def test_read_only_token_reads_but_never_writes(service):
    read_only = service.post("/users/me/tokens", {"name": "ro", "read_only": True}, expect=201).get_json()[
        "token"
    ]
    service.api("GET", "/projects", 200, token=read_only)
    error = service.post("/projects", {"name": "ro-made"}, expect=403, token=read_only).get_json()["error"]
    assert error["code"] == "forbidden"


def test_users_without_rights_see_nothing(service, project, user):
    value = token_for(service, user)
    assert service.get("/projects", token=value) == []
    service.api("GET", f"/projects/{project['id']}", 404, token=value)
    service.api("GET", f"/projects/{project['id']}/jobs", 404, token=value)
    service.api("POST", "/projects", 403, token=value, json={"name": "not-mine"})
    service.api("POST", "/users", 403, token=value, json={"username": "x1", "password": PASSWORD})


def test_bad_user_input(service, user):
    for password in ("", "short-1", "aaaaaaaaaaaaaaaa", "12345678901234567"):
        error = service.post("/users", {"username": "newbie", "password": password}, expect=422).get_json()
        assert error["error"]["field"] == "password", password
    error = service.post("/users", {"username": "newbie", "password": "newbie-Password-9"}, expect=422)
    assert "user name" in error.get_json()["error"]["message"]
    duplicate = service.post("/users", {"username": user["username"], "password": PASSWORD}, expect=409)
    assert duplicate.get_json()["error"]["field"] == "username"
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    error = service.post("/users/me/tokens", {"name": "old", "expires_at": past}, expect=422).get_json()[
        "error"
    ]
    assert error["field"] == "expires_at"


def test_launches_and_cancels_record_who(service, project):
    host = add_local_host(service, project)
    body = {"script": {"content": "sleep 30"}, "targets": {"hosts": [host["id"]]}}
    job = service.post(f"/projects/{project['id']}/script-executions", body, expect=202).get_json()
    assert job["launched_by"] == "admin"
    cancelled = service.post(f"/projects/{project['id']}/jobs/{job['id']}/cancel", expect=202).get_json()
    assert cancelled["cancelled_by"] == "admin"
    assert service.wait_job(project["id"], job["id"])["status"] == "terminated"
    assert ADMIN_TOKEN not in str(cancelled)


def user_id_of(service, username: str) -> int:
    [found] = service.get("/users", query_string={"username": username})
    return found["id"]


def audited(service, action: str, resource_id: int | None = None) -> list[dict]:
    query = {"action": action, "outcome": "success", "page_size": 100}
    events = service.get("/audit-events", query_string=query)
    return [e for e in events if resource_id is None or e["resource_id"] == str(resource_id)]


def test_users_read_themselves_and_system_admins_read_everyone(service, user):
    value = token_for(service, user)
    me = service.get(f"/users/{user['id']}", token=value)
    assert me["username"] == user["username"] and me["disabled"] is False and "password" not in me
    admin_id = service.get("/users/me")["id"]
    service.api("GET", f"/users/{admin_id}", 403, token=value)
    service.api("GET", "/users/987654321", 403, token=value)
    assert service.get(f"/users/{user['id']}")["email"] == user["email"]
    error = service.get("/users/987654321", expect=404)["error"]
    assert "987654321" in error["message"]


def test_system_admins_change_users_and_bad_changes_are_refused(service, user):
    path = f"/users/{user['id']}"
    changed = service.api("PATCH", path, 200, json={"display_name": "Renamed", "email": "r@example.com"})
    assert changed.get_json()["display_name"] == "Renamed" and changed.get_json()["email"] == "r@example.com"
    assert audited(service, "update", user["id"])[0]["resource"] == "user"
    for body, field in (
        ({"username": "someone-else"}, "username"),
        ({"password": PASSWORD + "-2"}, "password"),
        ({"email": "not-an-address"}, "email"),
        ({"display_name": "x" * 129}, "display_name"),
        ({"disabled": "maybe"}, "disabled"),
        ({"is_admin": [1]}, "is_admin"),
        ({"colour": "red"}, "colour"),
    ):
        error = service.api("PATCH", path, 422, json=body).get_json()["error"]
        assert error["field"] == field, (body, error)
    assert service.get(path)["username"] == user["username"]
    service.api("PATCH", "/users/987654321", 404, json={"display_name": "x"})
    value = token_for(service, user)
    service.api("PATCH", path, 403, token=value, json={"is_admin": True})
    assert service.get(path)["is_admin"] is False


def test_disabling_a_user_stops_their_tokens_and_password_at_once(service, user):
    value = token_for(service, user)
    service.api("GET", "/users/me", 200, token=value)
    service.api("PATCH", f"/users/{user['id']}", 200, json={"disabled": True})
    error = service.api("GET", "/users/me", 401, token=value).get_json()["error"]
    assert "disabled" in error["message"]
    service.api(
        "POST", "/users/me/tokens", 401, token=None, json={"name": "again"},
        headers=basic_auth(user["username"], PASSWORD),
    )  # fmt: skip
    assert service.get(f"/users/{user['id']}")["disabled"] is True
    service.api("PATCH", f"/users/{user['id']}", 200, json={"disabled": False})
    service.api("GET", "/users/me", 200, token=value)


def test_a_deleted_user_is_gone_but_their_name_stays_in_history(service, project, user):
    pid = project["id"]
    host = add_local_host(service, project)
    service.post(f"/projects/{pid}/members", {"user_id": user["id"], "role": "operator"}, expect=201)
    value = token_for(service, user)
    body = {"script": {"content": "true"}, "targets": {"hosts": [host["id"]]}}
    job = service.post(f"/projects/{pid}/script-executions", body, expect=202, token=value).get_json()
    service.wait_job(pid, job["id"])

    service.api("DELETE", f"/users/{user['id']}", 204)
    service.api("GET", f"/users/{user['id']}", 404)
    service.api("DELETE", f"/users/{user['id']}", 404)
    service.api("GET", "/users/me", 401, token=value)
    assert user["username"] not in {
        u["username"] for u in service.get("/users", query_string={"page_size": 100})
    }
    assert service.get("/users", query_string={"username": user["username"]}) == []
    assert service.get(f"/projects/{pid}/members") == []
    assert service.get(f"/projects/{pid}/jobs/{job['id']}")["launched_by"] == user["username"]
    launches = service.get("/audit-events", query_string={"username": user["username"], "action": "launch"})
    assert [event["resource_id"] for event in launches] == [str(job["id"])]
    assert audited(service, "delete", user["id"])[0]["username"] == "admin"
    # The name is never given to somebody else, nor can the deleted user be granted a role.
    taken = service.post("/users", {"username": user["username"], "password": PASSWORD}, expect=409)
    assert taken.get_json()["error"]["field"] == "username"
    grant = service.post(f"/projects/{pid}/members", {"user_id": user["id"], "role": "viewer"}, expect=422)
    assert grant.get_json()["error"]["field"] == "user_id"


def test_the_last_active_system_administrator_stays(service):
    active = [
        u
        for u in service.get("/users", query_string={"page_size": 100})
        if u["is_admin"] and not u["disabled"]
    ]
    assert [u["username"] for u in active] == ["admin"]
    admin = f"/users/{active[0]['id']}"
    for body, field in (({"disabled": True}, "disabled"), ({"is_admin": False}, "is_admin")):
        error = service.api("PATCH", admin, 409, json=body).get_json()["error"]
        assert error["field"] == field and "last" in error["message"]
    service.api("DELETE", admin, 409)
    assert service.get(admin)["is_admin"] is True and service.get(admin)["disabled"] is False

    second = service.post(
        "/users", {"username": f"root{time.time_ns() % 10**9}", "password": PASSWORD, "is_admin": True}, 201
    ).get_json()
    service.api("PATCH", f"/users/{second['id']}", 200, json={"disabled": True})
    # A disabled admin is no admin to count on.
    service.api("PATCH", admin, 409, json={"disabled": True})
    service.api("DELETE", f"/users/{second['id']}", 204)
    service.api("GET", "/users/me", 200)


def test_two_admins_disabling_each_other_at_once_leave_one_active(service):
    name = f"root{time.time_ns() % 10**9}"
    second = service.post(
        "/users", {"username": name, "password": PASSWORD, "is_admin": True}, 201
    ).get_json()
    second_token = token_for(service, {"username": name})
    admin_id = service.get("/users/me")["id"]
    start = threading.Barrier(2)

    def disable(token: str, user_id: int) -> int:
        # A thread of its own is a request of its own: its own application context and session.
        start.wait()
        headers = {"Authorization": f"Bearer {token}"}
        return service.client.patch(
            f"/api/v1/users/{user_id}", json={"disabled": True}, headers=headers
        ).status_code

    with ThreadPoolExecutor(max_workers=2) as pool:
        by_admin = pool.submit(disable, ADMIN_TOKEN, second["id"])
        by_second = pool.submit(disable, second_token, admin_id)
        statuses = [by_admin.result(), by_second.result()]
    # The other was refused as the last admin, or, disabled first, no longer got in at all.
    assert statuses.count(200) == 1 and set(statuses) - {200} <= {401, 409}, statuses
    if statuses[1] == 200:
        service.api("PATCH", f"/users/{admin_id}", 200, token=second_token, json={"disabled": False})
    service.api("DELETE", f"/users/{second['id']}", 204)


def test_a_password_changes_with_the_current_one_and_other_tokens_go(service, user):
    used, other = token_for(service, user), token_for(service, user)
    change = "/users/me/password"
    new = "new-Staple-9-battery"
    for body, status, field in (
        ({"current_password": "wrong-Password-1", "new_password": new}, 403, "current_password"),
        ({"new_password": new}, 422, "current_password"),
        ({"current_password": PASSWORD}, 422, "new_password"),
        ({"current_password": PASSWORD, "new_password": "short-1"}, 422, "new_password"),
        ({"current_password": PASSWORD, "new_password": PASSWORD}, 422, "new_password"),
        (
            {"current_password": PASSWORD, "new_password": new, "revoke_other_tokens": "x"},
            422,
            "revoke_other_tokens",
        ),
    ):
        error = service.post(change, body, status, token=used).get_json()["error"]
        assert error["field"] == field, (body, error)
    service.api("GET", "/users/me", 200, token=other)
    read_only = token_for(service, user, read_only=True)
    service.post(change, {"current_password": PASSWORD, "new_password": new}, 403, token=read_only)

    done = service.post(change, {"current_password": PASSWORD, "new_password": new}, 200, token=used)
    assert done.get_json() == {"revoked_tokens": 2}
    service.api("GET", "/users/me", 200, token=used)
    service.api("GET", "/users/me", 401, token=other)
    service.api("GET", "/users/me", 401, token=read_only)
    assert audited(service, "change_password")[0]["username"] == user["username"]
    old_login = basic_auth(user["username"], PASSWORD)
    service.api("POST", "/users/me/tokens", 401, token=None, headers=old_login, json={"name": "x"})
    kept = service.api(
        "POST",
        "/users/me/tokens",
        201,
        token=None,
        headers=basic_auth(user["username"], new),
        json={"name": "n"},
    ).get_json()["token"]
    # Asked to, the other tokens are kept; with the password alone (no token), every token goes.
    again = {"current_password": new, "new_password": PASSWORD + "-x", "revoke_other_tokens": False}
    assert service.post(change, again, 200, token=used).get_json() == {"revoked_tokens": 0}
    service.api("GET", "/users/me", 200, token=kept)
    by_password = {"current_password": PASSWORD + "-x", "new_password": new + "-y"}
    service.post(change, by_password, 200, token=None, headers=basic_auth(user["username"], PASSWORD + "-x"))
    service.api("GET", "/users/me", 401, token=used)
    service.api("GET", "/users/me", 401, token=kept)


def test_system_admins_list_and_revoke_any_users_tokens(service, user):
    value = token_for(service, user)
    tokens = service.get(f"/users/{user['id']}/tokens")
    assert (
        [t["name"] for t in tokens] == ["cli"] and "token" not in tokens[0] and "token_hash" not in tokens[0]
    )
    service.api("GET", f"/users/{user['id']}/tokens", 403, token=value)
    service.api("DELETE", f"/users/{user['id']}/tokens/{tokens[0]['id']}", 403, token=value)
    admin_id = service.get("/users/me")["id"]
    service.api("DELETE", f"/users/{admin_id}/tokens/{tokens[0]['id']}", 404)
    service.api("GET", "/users/987654321/tokens", 404)
    service.api("DELETE", f"/users/{user['id']}/tokens/987654321", 404)
    service.api("GET", "/users/me", 200, token=value)
    service.api("DELETE", f"/users/{user['id']}/tokens/{tokens[0]['id']}", 204)
    service.api("GET", "/users/me", 401, token=value)
    assert service.get(f"/users/{user['id']}/tokens")[0]["revoked_at"]
    [event] = audited(service, "revoke", tokens[0]["id"])
    assert (event["resource"], event["username"]) == ("token", "admin")


def test_project_admins_look_users_up_by_name_to_grant_a_role(service, project, user):
    pid = project["id"]
    project_admin = make_member(service, pid, "admin")
    operator = make_member(service, pid, "operator")
    found = service.get("/users", query_string={"username": user["username"]}, token=project_admin)
    assert found == [{"id": user["id"], "username": user["username"], "display_name": user["display_name"]}]
    service.post(
        f"/projects/{pid}/members", {"user_id": found[0]["id"], "role": "viewer"}, 201, token=project_admin
    )
    assert service.get("/users", query_string={"username": "no-such-user"}, token=project_admin) == []
    service.api("GET", "/users", 403, token=project_admin)
    service.api("GET", "/users", 403, token=operator, query_string={"username": user["username"]})
    service.api("GET", f"/users/{user['id']}", 403, token=project_admin)
    error = service.get("/users", 422, query_string={"colour": "red"})["error"]
    assert error["field"] == "colour"
    error = service.get("/users", 422, query_string={"username": "x" * 65})["error"]
    assert error["field"] == "username"
    assert service.get("/users", query_string={"username": user["username"]})[0]["email"] == user["email"]


def test_a_read_only_token_revokes_itself_and_nothing_else(service, user):
    writer = token_for(service, user)
    read_only = token_for(service, user, read_only=True)
    writer_id, read_only_id = (t["id"] for t in service.get("/users/me/tokens", token=read_only))
    service.api("DELETE", f"/users/me/tokens/{writer_id}", 403, token=read_only)
    service.api("DELETE", f"/users/me/tokens/{read_only_id}", 204, token=read_only)
    service.api("GET", "/users/me", 401, token=read_only)
    service.api("GET", "/users/me", 200, token=writer)
