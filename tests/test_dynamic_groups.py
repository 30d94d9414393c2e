"""Dynamic groups: saved filters, their preview, and launches that target them."""

from __future__ import annotations

import json

from sqlalchemy import event

from app.extensions import db
from app.services.dynamic_groups import like_pattern
from tests.conftest import add_local_host

INVENTORY = """\
[web]
web[01:04].example.com tier=1 canary=False

[db]
db1 tier=2 canary=True
db2 tier="'2'"

[backend:children]
db

[site:children]
backend
web

[winhosts]
win1 ansible_connection=winrm
"""


def setup_inventory(service, pid: int) -> dict[str, int]:
    service.post(f"/projects/{pid}/inventories/import", {"format": "ini", "content": INVENTORY}, expect=200)
    hosts = service.get(f"/projects/{pid}/hosts", query_string={"page_size": 100})
    for host in hosts:
        labels = {"team": "blue" if host["name"].startswith("web0") else "red"}
        service.api("PATCH", f"/projects/{pid}/hosts/{host['id']}", 200, json={"labels": labels})
    return {group["name"]: group["id"] for group in service.get(f"/projects/{pid}/groups")}


def preview(service, pid: int, spec: dict) -> list[str]:
    name = f"d{abs(hash(json.dumps(spec, sort_keys=True))) % 10**8}"
    created = service.post(f"/projects/{pid}/dynamic-groups", {"name": name, "filter": spec}, expect=201)
    group_id = created.get_json()["id"]
    hosts = service.get(f"/projects/{pid}/dynamic-groups/{group_id}/hosts", query_string={"page_size": 100})
    return sorted(host["name"] for host in hosts)


def test_like_pattern_escapes_sql_wildcards():
    assert like_pattern("Web*.example_?%") == "web%.example\\__\\%"


def test_filters_resolve_in_sql(service, project):
    pid = project["id"]
    groups = setup_inventory(service, pid)
    web = [f"web0{n}.example.com" for n in range(1, 5)]
    assert preview(service, pid, {}) == sorted([*web, "db1", "db2", "win1"])
    assert preview(service, pid, {"names": ["WEB0[12]*"]}) == []
    assert preview(service, pid, {"names": ["web0?.example.com", "db1"]}) == sorted([*web, "db1"])
    assert preview(service, pid, {"labels": {"team": "red"}}) == ["db1", "db2", "win1"]
    assert preview(service, pid, {"variables": {"tier": 2}}) == ["db1"]
    assert preview(service, pid, {"variables": {"tier": "2"}}) == ["db2"]
    assert preview(service, pid, {"variables": {"canary": True}}) == ["db1"]
    assert preview(service, pid, {"groups": [groups["site"]]}) == sorted([*web, "db1", "db2"])
    assert preview(service, pid, {"groups": [groups["backend"]], "labels": {"team": "red"}}) == ["db1", "db2"]
    assert preview(service, pid, {"connection": "winrm"}) == ["win1"]
    assert preview(service, pid, {"groups": [groups["web"]], "labels": {"team": "red"}}) == []


def test_filter_input_is_validated(service, project):
    pid = project["id"]
    cases = [
        ({"name": "x", "filter": {"colour": "red"}}, "filter.colour"),
        ({"name": "x", "filter": {"groups": [999999]}}, "filter.groups"),
        ({"name": "x", "filter": {"variables": {"tier": [1]}}}, "filter.variables.tier.value"),
        ({"name": "x", "filter": {"connection": "telnet"}}, "filter.connection"),
        ({"name": "bad name"}, "name"),
    ]
    for body, field in cases:
        error = service.post(f"/projects/{pid}/dynamic-groups", body, expect=422).get_json()["error"]
        assert error["field"] == field, (body, error)
    service.post(f"/projects/{pid}/dynamic-groups", {"name": "x"}, expect=201)
    duplicate = service.post(f"/projects/{pid}/dynamic-groups", {"name": "x"}, expect=409).get_json()
    assert duplicate["error"]["field"] == "name"


def test_update_and_delete(service, project):
    pid = project["id"]
    groups = setup_inventory(service, pid)
    created = service.post(f"/projects/{pid}/dynamic-groups", {"name": "dbs"}, expect=201).get_json()
    assert created["filter"] == {} and created["description"] == ""
    path = f"/projects/{pid}/dynamic-groups/{created['id']}"
    changed = service.api("PATCH", path, 200, json={"filter": {"groups": [groups["db"]]}}).get_json()
    assert changed["filter"] == {"groups": [groups["db"]]}
    service.api("PATCH", path, 422, json={"filter": {"groups": [999999]}})
    assert service.get(path)["filter"] == {"groups": [groups["db"]]}
    service.api("DELETE", path, 204)
    service.api("GET", path, 404)


def test_launch_targets_a_dynamic_group(service, project):
    pid = project["id"]
    hosts = [add_local_host(service, project, f"local{n}") for n in range(3)]
    service.api("PATCH", f"/projects/{pid}/hosts/{hosts[1]['id']}", 200, json={"labels": {"pick": "me"}})
    picked = service.post(
        f"/projects/{pid}/dynamic-groups",
        {"name": "picked", "filter": {"labels": {"pick": "me"}}},
        expect=201,
    ).get_json()
    body = {
        "script": {"content": "echo hi"},
        "targets": {"dynamic_groups": [picked["id"]], "hosts": [hosts[0]["id"]]},
    }
    job = service.post(f"/projects/{pid}/script-executions", body, expect=202).get_json()
    assert job["host_count"] == 2
    done = service.wait_job(pid, job["id"])
    assert done["status"] == "success"
    results = service.host_results(pid, job["id"])
    assert sorted(result["host_name"] for result in results) == ["local0", "local1"]

    missing = {"script": {"content": "true"}, "targets": {"dynamic_groups": [999999]}}
    error = service.post(f"/projects/{pid}/script-executions", missing, expect=422).get_json()["error"]
    assert error["field"] == "targets.dynamic_groups"
    nobody = service.post(
        f"/projects/{pid}/dynamic-groups", {"name": "none", "filter": {"names": ["zzz*"]}}, expect=201
    ).get_json()
    empty = {"script": {"content": "true"}, "targets": {"dynamic_groups": [nobody["id"]]}}
    assert service.post(f"/projects/{pid}/script-executions", empty, expect=422).get_json()["error"][
        "field"
    ] == ("targets")


def test_resolution_takes_a_fixed_number_of_queries(service, project):
    pid = project["id"]
    names = "\n".join(
        f"h{n:05d} ansible_host=10.1.{n // 250}.{n % 250 + 1} ring={n % 3}" for n in range(1000)
    )
    service.post(
        f"/projects/{pid}/inventories/import", {"format": "ini", "content": f"[big]\n{names}\n"}, expect=200
    )
    big = next(group for group in service.get(f"/projects/{pid}/groups") if group["name"] == "big")
    ring = service.post(
        f"/projects/{pid}/dynamic-groups",
        {"name": "ring0", "filter": {"variables": {"ring": 0}, "groups": [big["id"]]}},
        expect=201,
    ).get_json()
    from app.services.inventory import resolve_targets

    statements = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(db.engine, "before_cursor_execute", listener)
    try:
        hosts = resolve_targets(pid, {"groups": [big["id"]], "dynamic_groups": [ring["id"]]})
    finally:
        event.remove(db.engine, "before_cursor_execute", listener)
    assert len(hosts) == 1000
    assert len(statements) <= 5, statements
