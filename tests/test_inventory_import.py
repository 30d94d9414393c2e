"""Inventory import and export: the parse, render and diff functions, then the API on both databases."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.inventory.manager import InventoryManager
from ansible.parsing.dataloader import DataLoader
from sqlalchemy import select

from app.execution.compiler import Target, host_vars, to_ansible
from app.services.errors import Invalid
from app.services.inventory_formats import FORMATS, parse, range_size, render
from app.services.inventory_import import diff
from tests.test_compiler import load

# What a real inventory holds: nested groups, ranges with a port, host and group variables, all's
# variables, an ungrouped host, a local host, and a value that looks like a Jinja template.
SITE_INI = """\
controller ansible_connection=local

[web]
web[01:12].example.com:2222 ansible_user=deploy tier=1 motd="{{ lookup('pipe', 'id') }}"
lb1 ansible_host=10.0.0.5 ansible_port=2200 weight=3.5

[db]
db-[a:c] ansible_host=10.0.1.1 backup=true
db-main ansible_connection=paramiko role='primary'

[app:children]
web
db

[app:vars]
ntp_server=ntp.example.com
app_port=8080

[dc1:children]
app

[dc1:vars]
region=eu-west
options={'retries': 3, 'zones': ['a', 'b']}

[monitoring]

[all:vars]
env=prod
"""
SITE_HOSTS = 12 + 1 + 3 + 1 + 1


def host_names(inventory_text: str, suffix: str, tmp_path: Path) -> set[str]:
    """The hosts Ansible itself reads from the text, through its InventoryManager."""
    path = tmp_path / f"inventory.{suffix}"
    path.write_text(inventory_text)
    manager = InventoryManager(loader=DataLoader(), sources=[str(path)])
    return {host.name for host in manager.get_hosts()}


def test_range_size_counts_without_expanding():
    assert range_size("web[01:20].example.com") == 20
    assert range_size("db-[a:f]") == 6
    assert range_size("n[1:10:2]-[a:b]") == 10
    assert range_size("h[1:100000000]") == 100000000
    assert range_size("plain") == 1


def test_ini_maps_onto_hosts_and_groups():
    inventory = parse(SITE_INI, "ini", 10000)
    assert len(inventory.hosts) == SITE_HOSTS
    web = inventory.hosts["web07.example.com"]
    assert (web.address, web.port, web.connection) == ("web07.example.com", 2222, "ssh")
    assert web.variables == {"ansible_user": "deploy", "tier": 1, "motd": "{{ lookup('pipe', 'id') }}"}
    lb = inventory.hosts["lb1"]
    assert (lb.address, lb.port, lb.variables) == ("10.0.0.5", 2200, {"weight": 3.5})
    assert inventory.hosts["db-main"].connection == "ssh"  # paramiko is ssh
    assert inventory.hosts["controller"].connection == "local"
    assert inventory.groups["app"].children == ["db", "web"]
    assert inventory.groups["app"].variables == {"ntp_server": "ntp.example.com", "app_port": 8080}
    assert inventory.groups["dc1"].variables["options"] == {"retries": 3, "zones": ["a", "b"]}
    assert inventory.groups["monitoring"].hosts == []
    assert inventory.groups["all"].variables == {"env": "prod"}
    assert "ungrouped" not in inventory.groups


def test_imported_variables_reach_the_generated_inventory_untemplated():
    host = parse(SITE_INI, "ini", 10000).hosts["web01.example.com"]
    values = host_vars(Target("web01", host.address, host.port, host.connection, host.variables))
    assert load(to_ansible(values))["motd"] == ("UNSAFE", "{{ lookup('pipe', 'id') }}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips_and_ansible_reads_it(fmt, tmp_path):
    inventory = parse(SITE_INI, "ini", 10000)
    text = render(inventory, fmt)
    assert parse(text, fmt, 10000) == inventory
    if fmt != "json":
        assert host_names(text, "yml" if fmt == "yaml" else fmt, tmp_path) == set(inventory.hosts)


def test_ansible_inventory_list_output_imports_as_the_source(tmp_path):
    source = tmp_path / "site.ini"
    source.write_text(SITE_INI)
    command = [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(source), "--list"]
    exported = subprocess.run([*command, "--export"], capture_output=True, text=True, check=True).stdout
    assert parse(exported, "json", 10000) == parse(SITE_INI, "ini", 10000)
    # Without --export, Ansible folds group variables into each host's.
    listed = parse(subprocess.run(command, capture_output=True, text=True, check=True).stdout, "json", 10000)
    assert listed.hosts["db-b"].variables["region"] == "eu-west"
    assert set(listed.hosts) == set(parse(SITE_INI, "ini", 10000).hosts)


@pytest.mark.parametrize(
    ("text", "fmt", "reason"),
    [
        ("[web]\nweb1\nweb2 color\n", "ini", "line 3: Expected key=value host variable assignment"),
        ("[app:children]\nmissing\n", "ini", "line 2: Section [app:children] includes undefined group"),
        ("[web:bogus]\nx\n", "ini", "line 1: Section [web:bogus] has unknown type"),
        ("all:\n  hosts:\n    a: {x: [1,\n", "yaml", "line 4: YAML parsing failed"),
        ("", "yaml", "Parsed empty YAML file"),
        (
            "all:\n  children:\n    web:\n      hosts: [a, b]\n",
            "yaml",
            'Invalid "hosts" entry for "web" group',
        ),
        ('{"web": {"hosts": ["a"],\n "vars": }', "json", "line 2: Expecting value"),
        ('{"web": {"hosts": ["a"], "colour": 1}}', "json", "group 'web' has unknown keys: colour"),
        ("h1 ansible_connection=docker\n", "ini", "connection 'docker' is not supported"),
        ("[web]\nweb[1:100000000]\n", "ini", "host ranges expand to more than 10000 hosts"),
        ("all:\n  hosts:\n    'n[1:100000000]':\n", "yaml", "host ranges expand to more than 10000 hosts"),
        ("[a]\nx[1:6000]\n[b]\ny[1:6000]\n", "ini", "host ranges expand to more than 10000 hosts"),
    ],
)
def test_bad_inventories_are_refused_with_the_reason(text, fmt, reason):
    with pytest.raises(Invalid) as refused:
        parse(text, fmt, 10000)
    assert refused.value.field == "content" or refused.value.field.startswith("hosts.")
    assert reason in refused.value.message


def test_diff_reports_additions_updates_and_removals_only_when_asked():
    current = parse(SITE_INI, "ini", 10000)
    assert diff(current, current, remove_missing=True).report(False) == {
        "dry_run": False,
        "hosts": {"added": [], "updated": [], "removed": []},
        "groups": {"added": [], "updated": [], "removed": []},
        "memberships": {"added": [], "removed": []},
    }
    changed = SITE_INI.replace("lb1 ansible_host=10.0.0.5", "lb1 ansible_host=10.0.0.6")
    changed = changed.replace("db-main ansible_connection=paramiko role='primary'\n", "")
    changed = changed.replace("[monitoring]\n", "[monitoring]\nprobe1\n").replace(
        "region=eu-west", "region=us"
    )
    incoming = parse(changed, "ini", 10000)
    kept = diff(current, incoming, remove_missing=False)
    assert (kept.hosts_added, kept.hosts_updated, kept.hosts_removed) == (["probe1"], ["lb1"], [])
    assert (kept.groups_updated, kept.members_added, kept.members_removed) == (
        ["dc1"],
        [("monitoring", "host", "probe1")],
        [],
    )
    removed = diff(current, incoming, remove_missing=True)
    assert removed.hosts_removed == ["db-main"]
    assert removed.members_removed == []  # the host's memberships go with it


# The API, on SQLite and PostgreSQL.


def import_text(service, pid: int, content: str, fmt: str = "ini", expect: int = 200, **options) -> dict:
    body = {"format": fmt, "content": content, **options}
    return service.post(f"/projects/{pid}/inventories/import", body, expect=expect).get_json()


def export_text(service, pid: int, fmt: str, **query) -> str:
    response = service.api(
        "GET", f"/projects/{pid}/inventories/export", 200, query_string={"format": fmt, **query}
    )
    return response.get_data(as_text=True)


def all_hosts(service, pid: int) -> dict[str, dict]:
    hosts = service.get(f"/projects/{pid}/hosts", query_string={"page_size": 100})
    return {host["name"]: host for host in hosts}


def all_groups(service, pid: int) -> dict[str, dict]:
    return {
        group["name"]: group
        for group in service.get(f"/projects/{pid}/groups", query_string={"page_size": 100})
    }


def test_import_a_real_inventory_then_again(service, project):
    pid = project["id"]
    report = import_text(service, pid, SITE_INI)
    assert len(report["hosts"]["added"]) == SITE_HOSTS and report["dry_run"] is False
    assert sorted(report["groups"]["added"]) == ["all", "app", "db", "dc1", "monitoring", "web"]
    hosts, groups = all_hosts(service, pid), all_groups(service, pid)
    assert hosts["lb1"]["address"] == "10.0.0.5" and hosts["lb1"]["port"] == 2200
    assert hosts["web03.example.com"]["variables"]["motd"] == "{{ lookup('pipe', 'id') }}"
    assert hosts["controller"]["connection"] == "local"
    assert sorted(groups["app"]["children"]) == sorted([groups["web"]["id"], groups["db"]["id"]])
    assert groups["all"]["variables"] == {"env": "prod"} and groups["all"]["hosts"] == []

    again = import_text(service, pid, SITE_INI)
    assert again["hosts"] == again["groups"] == {"added": [], "updated": [], "removed": []}
    assert again["memberships"] == {"added": [], "removed": []}


@pytest.mark.parametrize("fmt", FORMATS)
def test_export_then_import_elsewhere_round_trips(service, project, fmt):
    import_text(service, project["id"], SITE_INI)
    exported = export_text(service, project["id"], fmt)
    other = service.post("/projects", {"name": f"{project['name']}-{fmt}"}, expect=201).get_json()["id"]
    import_text(service, other, exported, fmt)
    assert export_text(service, other, fmt) == exported
    assert parse(exported, fmt, 10000) == parse(SITE_INI, "ini", 10000)


def test_export_one_group_with_its_descendants(service, project):
    pid = project["id"]
    import_text(service, pid, SITE_INI)
    app_id = all_groups(service, pid)["app"]["id"]
    listed = json.loads(export_text(service, pid, "json", group=app_id))
    assert set(listed["_meta"]["hostvars"]) == set(parse(SITE_INI, "ini", 10000).hosts) - {"controller"}
    assert listed["app"]["children"] == ["db", "web"] and "dc1" not in listed and "all" not in listed["all"]
    missing = service.api(
        "GET", f"/projects/{pid}/inventories/export", 404, query_string={"format": "ini", "group": 999999}
    )
    assert missing.get_json()["error"]["code"] == "not_found"


def test_upload_a_file(service, project):
    pid = project["id"]
    data = {"file": (__import__("io").BytesIO(SITE_INI.encode()), "site.ini"), "dry_run": "true"}
    response = service.api(
        "POST", f"/projects/{pid}/inventories/import", 200, data=data, content_type="multipart/form-data"
    )
    assert response.get_json()["dry_run"] is True
    assert all_hosts(service, pid) == {}
    data = {"file": (__import__("io").BytesIO(SITE_INI.encode()), "site.ini")}
    service.api(
        "POST", f"/projects/{pid}/inventories/import", 200, data=data, content_type="multipart/form-data"
    )
    assert len(all_hosts(service, pid)) == SITE_HOSTS


def test_dry_run_and_remove_missing(service, project):
    pid = project["id"]
    import_text(service, pid, SITE_INI)
    web = all_groups(service, pid)["web"]
    extra = service.post(
        f"/projects/{pid}/hosts", {"name": "manual", "address": "10.9.9.9"}, expect=201
    ).get_json()
    service.api(
        "PATCH", f"/projects/{pid}/groups/{web['id']}", 200, json={"hosts": [*web["hosts"], extra["id"]]}
    )
    smaller = SITE_INI.replace("db-main ansible_connection=paramiko role='primary'\n", "").replace(
        "[monitoring]\n", ""
    )

    kept = import_text(service, pid, smaller)
    assert kept["hosts"]["removed"] == kept["groups"]["removed"] == kept["memberships"]["removed"] == []
    preview = import_text(service, pid, smaller, remove_missing=True, dry_run=True)
    assert preview["dry_run"] is True
    assert sorted(preview["hosts"]["removed"]) == ["db-main", "manual"]
    assert preview["groups"]["removed"] == ["monitoring"]
    assert "db-main" in all_hosts(service, pid)  # a dry run writes nothing

    done = import_text(service, pid, smaller, remove_missing=True)
    assert {key: done[key] for key in ("hosts", "groups")} == {
        key: preview[key] for key in ("hosts", "groups")
    }
    assert set(all_hosts(service, pid)) == set(parse(smaller, "ini", 10000).hosts)
    assert "monitoring" not in all_groups(service, pid)


def test_bad_imports_change_nothing(service, project):
    pid = project["id"]
    import_text(service, pid, "[web]\nweb1\n")
    before = export_text(service, pid, "json")
    cases = [
        ({"format": "ini", "content": "[web]\nweb1\nweb2 color\n"}, "content", "line 3"),
        ({"format": "ini", "content": "[web]\nw[1:100000000]\n"}, "content", "more than"),
        ({"format": "yaml", "content": "all:\n  hosts:\n    a: {x: [1,\n"}, "content", "line 4"),
        ({"format": "json", "content": "[1, 2]"}, "content", "object"),
        ({"format": "toml", "content": "x"}, "format", "Must be one of"),
        ({"content": "web1\n"}, "format", "format"),
        ({"format": "ini"}, "content", "content"),
        (
            {"format": "ini", "content": "web9\nbad ansible_ssh_common_args='-o ProxyCommand=x'\n"},
            "hosts.bad.variables.ansible_ssh_common_args",
            "not allowed",
        ),
        (
            {"format": "ini", "content": "web9\nh2 ansible_host='a b'\n"},
            "hosts.h2.address",
            "not a host name",
        ),
        (
            {"format": "ini", "content": "web9\nh3 ansible_port=99999\n"},
            "hosts.h3.port",
            "greater than or equal to 1",
        ),
        (
            {"format": "ini", "content": "[web]\nweb9\n[web:children]\nweb\n"},
            "content",
            "add group to itself",
        ),
    ]
    for body, field, message in cases:
        error = service.post(f"/projects/{pid}/inventories/import", body, expect=422).get_json()["error"]
        assert error["field"] == field and message in error["message"], (body, error)
    assert export_text(service, pid, "json") == before


def test_import_may_not_make_a_group_contain_itself(service, project):
    pid = project["id"]
    import_text(service, pid, "[a:children]\nb\n[b]\n")
    error = import_text(service, pid, "[b:children]\na\n[a]\n", expect=422)["error"]
    assert (error["field"], error["message"]) == ("content", "group 'a' would contain itself")


def test_duplicate_host_name_is_a_conflict(service, project):
    pid = project["id"]
    service.post(f"/projects/{pid}/hosts", {"name": "twin", "address": "10.0.0.1"}, expect=201)
    error = service.post(
        f"/projects/{pid}/hosts", {"name": "twin", "address": "10.0.0.2"}, expect=409
    ).get_json()
    assert error["error"] == {"code": "conflict", "message": "name 'twin' is already taken", "field": "name"}
    host = service.post(
        f"/projects/{pid}/hosts", {"name": "other", "address": "10.0.0.3"}, expect=201
    ).get_json()
    renamed = service.api("PATCH", f"/projects/{pid}/hosts/{host['id']}", 409, json={"name": "twin"})
    assert renamed.get_json()["error"]["field"] == "name"


def test_group_variables_reach_the_hosts_as_ansible_merges_them(service, project):
    from app.extensions import db
    from app.models import Slice, StepInstance
    from app.services.executions import compile_slice

    pid = project["id"]
    layered = """\
[site:children]
app

[site:vars]
level=site
site_only=1

[app]
box ansible_connection=local level=host

[app:vars]
level=app
app_only="{{ lookup('pipe', 'id') }}"

[other]
box

[other:vars]
other_only=yes

[all:vars]
level=all
everywhere=1
"""
    import_text(service, pid, layered)
    box = all_hosts(service, pid)["box"]
    job = service.post(
        f"/projects/{pid}/script-executions",
        {"script": {"content": "true"}, "targets": {"hosts": [box["id"]]}},
    ).get_json()
    service.wait_job(pid, job["id"])
    piece = db.session.scalars(
        select(Slice).join(StepInstance).where(StepInstance.job_instance_id == job["id"])
    ).one()
    compiled = compile_slice(piece).compiled
    values = compiled.inventory["all"]["children"]["opsflow_local"]["hosts"]["box"]
    assert {key: values[key] for key in ("level", "site_only", "app_only", "other_only", "everywhere")} == {
        "level": "host",
        "site_only": 1,
        "app_only": "{{ lookup('pipe', 'id') }}",
        "other_only": "yes",
        "everywhere": 1,
    }
    box_values = load(to_ansible(compiled.inventory))["all"]["children"]["opsflow_local"]["hosts"]["box"]
    assert box_values["app_only"] == ("UNSAFE", "{{ lookup('pipe', 'id') }}")
    service.api("PATCH", f"/projects/{pid}/hosts/{box['id']}", 200, json={"variables": {}})
    db.session.expire_all()
    compiled = compile_slice(piece).compiled
    assert compiled.inventory["all"]["children"]["opsflow_local"]["hosts"]["box"]["level"] == "app"
