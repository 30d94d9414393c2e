"""Projects, hosts, groups and accounts through the API."""

from __future__ import annotations

import json

from sqlalchemy import text

from app.extensions import db

KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


def test_project_crud(service):
    created = service.post("/projects", {"name": "crud-project", "description": "d"}, expect=201).get_json()
    assert service.get(f"/projects/{created['id']}")["name"] == "crud-project"
    changed = service.api("PATCH", f"/projects/{created['id']}", 200, json={"description": "new"}).get_json()
    assert changed["description"] == "new"
    duplicate = service.post("/projects", {"name": "crud-project"}, expect=409).get_json()
    assert duplicate["error"] == {
        "code": "conflict",
        "message": "name 'crud-project' is already taken",
        "field": "name",
    }
    service.api("DELETE", f"/projects/{created['id']}", 204)
    assert service.api("GET", f"/projects/{created['id']}", 404).get_json()["error"]["code"] == "not_found"


def test_hosts_and_groups(service, project):
    pid = project["id"]
    web = service.post(
        f"/projects/{pid}/hosts",
        {
            "name": "web1",
            "address": "10.1.0.1",
            "port": 2222,
            "labels": {"role": "web"},
            "variables": {"tier": "1"},
        },
        expect=201,
    ).get_json()
    db_host = service.post(
        f"/projects/{pid}/hosts", {"name": "db1", "address": "db1.example.com"}, expect=201
    )
    db_host = db_host.get_json()
    assert (web["connection"], web["port"], web["labels"]) == ("ssh", 2222, {"role": "web"})
    child = service.post(
        f"/projects/{pid}/groups", {"name": "db", "hosts": [db_host["id"]]}, expect=201
    ).get_json()
    parent = service.post(
        f"/projects/{pid}/groups",
        {"name": "all-app", "hosts": [web["id"]], "children": [child["id"]]},
        expect=201,
    ).get_json()
    assert parent["hosts"] == [web["id"]] and parent["children"] == [child["id"]]
    cycle = service.api(
        "PATCH", f"/projects/{pid}/groups/{child['id']}", 422, json={"children": [parent["id"]]}
    )
    assert cycle.get_json()["error"]["field"] == "children"
    response = service.api("GET", f"/projects/{pid}/hosts", 200, query_string={"page_size": 1})
    assert len(response.get_json()) == 1
    assert json.loads(response.headers["X-Pagination"])["total"] == 2


def test_host_input_is_validated(service, project):
    pid = project["id"]
    cases = [
        ({"name": "bad name", "address": "10.0.0.1"}, "name"),
        ({"name": "ok", "address": "10.0.0.1; rm -rf /"}, "address"),
        ({"name": "ok", "address": "10.0.0.1", "port": 70000}, "port"),
        ({"name": "ok", "address": "10.0.0.1", "connection": "telnet"}, "connection"),
        (
            {
                "name": "ok",
                "address": "10.0.0.1",
                "variables": {"ansible_ssh_common_args": "-o ProxyCommand=x"},
            },
            "variables",
        ),
        ({"name": "ok", "address": "10.0.0.1", "variables": {"1bad": "x"}}, "variables"),
        ({"address": "10.0.0.1"}, "name"),
    ]
    for body, field in cases:
        error = service.post(f"/projects/{pid}/hosts", body, expect=422).get_json()["error"]
        assert error["code"] == "invalid"
        assert error["field"].startswith(field), (body, error)
    assert service.get(f"/projects/{pid}/hosts") == []
    missing = service.post(f"/projects/{pid}/groups", {"name": "g", "hosts": [999999]}, expect=422).get_json()
    assert missing["error"]["field"] == "hosts" and "999999" in missing["error"]["message"]


def test_account_secrets_are_write_only_and_encrypted(service, project):
    pid = project["id"]
    body = {
        "name": "deploy",
        "username": "deploy",
        "private_key": KEY,
        "password": "hunter2-pass",
        "become": True,
    }
    account = service.post(f"/projects/{pid}/accounts", body, expect=201).get_json()
    for response in (account, service.get(f"/projects/{pid}/accounts/{account['id']}")):
        assert "private_key" not in response and "password" not in response
        assert response["has_private_key"] is True and response["has_password"] is True
    raw = db.session.execute(
        text("SELECT private_key, password FROM account WHERE id = :id"), {"id": account["id"]}
    )
    stored_key, stored_password = raw.one()
    assert "PRIVATE KEY" not in stored_key and "hunter2" not in stored_password
    bad = service.post(
        f"/projects/{pid}/accounts", {"name": "x", "username": "u", "private_key": "nope"}, expect=422
    )
    assert bad.get_json()["error"]["field"] == "private_key"


def test_other_projects_resources_are_not_found(service, project):
    other = service.post("/projects", {"name": "other-project-x"}, expect=201).get_json()
    host = service.post(
        f"/projects/{other['id']}/hosts", {"name": "h", "address": "10.0.0.1"}, expect=201
    ).get_json()
    service.api("GET", f"/projects/{project['id']}/hosts/{host['id']}", 404)
    service.api("GET", "/projects/999999/hosts", 404)
