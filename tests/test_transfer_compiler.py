"""The transfer compiler is pure: files, paths and hosts in, playbook and inventory data out."""

from __future__ import annotations

from app.execution.compiler import Account, Target, to_ansible
from app.execution.transfer import (
    Origin,
    PushFile,
    PushPlan,
    SpeedLimit,
    compile_fetch,
    compile_push,
    expand,
    scp_arguments,
    source_pattern,
    target_directory,
    unknown_variables,
)
from tests.test_compiler import INJECTION, load

WEB = Origin("web1", "10.0.0.1")


def test_path_variables_expand_per_source():
    path = "/data/${source_name}/${source_address}/${date}"
    assert expand(path, WEB, "20261121") == "/data/web1/10.0.0.1/20261121"
    assert expand(path, Origin(), "d") == "/data/controller/controller/d"
    assert unknown_variables("/x/${date}/${host}") == ["host"]
    # Nothing else is a variable: Jinja and shell syntax stay as they are.
    assert expand("/x/{{ date }}/$date", WEB, "d") == "/x/{{ date }}/$date"


def test_modes_place_files():
    assert target_directory(PushPlan("/srv/app/", "strict"), WEB) == "/srv/app"
    assert target_directory(PushPlan("/srv/app", "force"), WEB) == "/srv/app"
    assert target_directory(PushPlan("/srv", "safe", "host", "2026"), WEB) == "/srv/web1"
    assert target_directory(PushPlan("/srv", "safe", "host_date", "2026"), WEB) == "/srv/web1/2026"


def test_an_exact_source_name_matches_only_itself():
    assert source_pattern("/var/log/*.log") == ("/var/log", "*.log")
    assert source_pattern("/var/log/app[1].log") == ("/var/log", "app[1].log")
    assert source_pattern("/var/log/app.log") == ("/var/log", "app.log")
    assert source_pattern("/etc/nginx/") == ("/etc", "nginx")


def push_plays(files, plan):
    compiled = compile_push(files, plan, [Target("web1", "10.0.0.1")], Account("deploy"), {"inline-0": b"x"})
    return compiled, load(to_ansible(compiled.playbook))[0]["tasks"]


def test_strict_checks_directories_force_creates_them():
    files = [PushFile("/store/a", "sub/a.txt", 1, "aa"), PushFile("/store/b", "b.txt", 1, "bb")]
    _, strict = push_plays(files, PushPlan("/srv", "strict"))
    assert [task["name"] for task in strict] == [
        "check target directories",
        "target directories must exist",
        "create directories",
        "push files",
    ]
    # Only the directory a directory source brings is made; the target directory itself must exist.
    assert strict[2]["loop"] == [("UNSAFE", "/srv/sub")]
    _, force = push_plays(files, PushPlan("/srv", "force"))
    assert force[0]["loop"] == [("UNSAFE", "/srv"), ("UNSAFE", "/srv/sub")]


def test_names_and_paths_are_data_never_templates():
    name = f"-rf '{INJECTION}' é.txt"
    compiled, tasks = push_plays(
        [PushFile("inline-0", name, 1, "ab", WEB)], PushPlan(f"/srv/{INJECTION}", "force")
    )
    push = tasks[-1]
    [item] = push["loop"]
    assert item["dest"] == ("UNSAFE", f"/srv/{INJECTION}/{name}")
    assert item["src"] == ("UNSAFE", "inline-0")
    assert item["source"] == ("UNSAFE", "web1")
    # The known SHA-1 travels with each file: the controller does not hash it per host.
    assert item["sha1"] == ("UNSAFE", "ab")
    assert push["opsflow_copy"]["checksum"] == "{{ item.sha1 }}"
    assert compiled.files == {"inline-0": b"x"}
    assert compiled.task_count == 2


def test_fetch_holds_the_path_in_unsafe_variables():
    compiled = compile_fetch(
        f"/var/{INJECTION}/*.log", "/staging/7", [Target("db1", "10.0.0.2")], None, SpeedLimit(125_000)
    )
    play = load(to_ansible(compiled.playbook))[0]
    assert play["vars"]["opsflow_source"] == ("UNSAFE", f"/var/{INJECTION}/*.log")
    assert play["vars"]["opsflow_pattern"] == ("UNSAFE", "*.log")
    assert INJECTION not in to_ansible(play["tasks"])
    common = compiled.inventory["all"]["vars"]
    # 125,000 bytes/s is 1000 Kbit/s for scp, in its legacy protocol: hosts need no SFTP subsystem.
    assert (common["ansible_ssh_transfer_method"], common["ansible_scp_extra_args"]) == ("scp", "-O -l 1000")
    # An scp from before OpenSSH 8.7 knows no -O, and speaks only the legacy protocol.
    assert scp_arguments(SpeedLimit(1000, scp_legacy_flag=False)) == "-l 8"
