"""Git and vault credentials: secrets go in and never come out, stored encrypted; each kind takes its own
fields only."""

from __future__ import annotations

from sqlalchemy import text

from app.extensions import db
from tests.test_inventory_api import KEY

TOKEN = "ghp_token-that-must-never-show"
VAULT_PASSWORD = "vault-Password-42"


def test_credentials_are_write_only_encrypted_and_of_one_kind(service, project):
    base = f"/projects/{project['id']}/credentials"
    ssh = service.post(base, {"name": "deploy-key", "kind": "git", "private_key": KEY}, expect=201).get_json()
    https = service.post(
        base, {"name": "bot", "kind": "git", "username": "bot", "token": TOKEN}, expect=201
    ).get_json()
    vault = service.post(
        base, {"name": "prod", "kind": "vault", "password": VAULT_PASSWORD, "vault_id": "prod"}, expect=201
    ).get_json()
    for shown in (ssh, https, vault, *service.get(base)):
        assert not {"private_key", "token", "password"} & set(shown), shown
    assert (ssh["has_private_key"], ssh["has_token"]) == (True, False)
    assert (https["username"], https["has_token"], https["has_private_key"]) == ("bot", True, False)
    assert (vault["has_password"], vault["vault_id"]) == (True, "prod")
    stored = db.session.execute(
        text("SELECT private_key, token, password FROM credential WHERE id IN (:a, :b, :c)"),
        {"a": ssh["id"], "b": https["id"], "c": vault["id"]},
    ).all()
    everything = " ".join(value for row in stored for value in row if value)
    assert "PRIVATE KEY" not in everything and TOKEN not in everything and VAULT_PASSWORD not in everything

    refused = [
        ({"name": "x", "kind": "git"}, "private_key"),
        ({"name": "x", "kind": "git", "token": TOKEN}, "username"),
        ({"name": "x", "kind": "git", "private_key": KEY, "username": "bot", "token": TOKEN}, "token"),
        ({"name": "x", "kind": "git", "private_key": KEY, "password": "p"}, "password"),
        ({"name": "x", "kind": "vault"}, "password"),
        ({"name": "x", "kind": "vault", "password": "p", "token": TOKEN}, "token"),
        ({"name": "x", "kind": "vault", "password": "p", "vault_id": "a@b"}, "vault_id"),
        ({"name": "x", "kind": "ssh"}, "kind"),
    ]
    for body, field in refused:
        error = service.post(base, body, expect=422).get_json()["error"]
        assert error["field"] == field, (body, error)
    assert service.post(base, {"name": "bot", "kind": "vault", "password": "p"}, expect=409)

    # A change keeps the credential one of its kind: a key replaces the token, and the kind stays.
    changed = service.api("PATCH", f"{base}/{https['id']}", 200, json={"private_key": KEY}).get_json()
    assert (changed["has_private_key"], changed["has_token"], changed["username"]) == (True, False, None)
    service.api("PATCH", f"{base}/{https['id']}", 422, json={"kind": "vault"})
    service.api("PATCH", f"{base}/{vault['id']}", 422, json={"password": None})
    service.api("PATCH", f"{base}/{vault['id']}", 200, json={"vault_id": None})
    service.api("DELETE", f"{base}/{vault['id']}", 204)
