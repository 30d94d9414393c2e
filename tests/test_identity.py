"""Users, API tokens and authentication."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.conftest import ADMIN_TOKEN, add_local_host, basic_auth

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
