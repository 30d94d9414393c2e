"""Dangerous-command rules: the default set against evasions and false positives, and the API."""

from __future__ import annotations

import uuid

import pytest

from app.models import DangerRule
from app.services import danger
from tests.conftest import add_local_host, run_script

DANGEROUS = {
    "recursive delete of /": [
        "rm -rf /",
        "rm -rf /*",
        "rm  -rf   /",
        "rm -fr /",
        "rm -Rf '/'",
        "rm -r -f /",
        "rm --recursive --force /",
        "rm / -rf",
        "rm -rf -- /*",
        "sudo rm -rf /",
        "/bin/rm -rf /",
        "rm -rf /tmp/x /",
        "rm -rf --no-preserve-root /",
        "x=$(rm -rf /)",
        "os.system('rm -rf /')",
    ],
    "make or wipe a file system (mkfs, mkswap, wipefs)": [
        "mkfs.ext4 /dev/sdb1",
        "mkfs -t xfs /dev/vdb",
        "wipefs -a /dev/sdc",
    ],
    "dd onto a block device": ["dd if=/dev/zero of=/dev/sda bs=1M", 'dd if=x.img of="/dev/nvme0n1"'],
    "writing to a disk device": ["echo x > /dev/sda", "cat img >>/dev/sdb1", "echo 1 | tee /dev/sda"],
    "fork bomb": [":(){ :|:& };:", ":() { : | : & }; :", "bomb(){ bomb|bomb& };bomb"],
    "recursive chmod, chown or chgrp of /": ["chmod -R 777 /", "chmod 777 -R /", "sudo chown -R nobody /*"],
    "shutdown, reboot, halt, poweroff or init 0/6": [
        "shutdown -h now",
        "sudo reboot",
        "echo done; shutdown -r +5",
        "/sbin/poweroff",
        "halt",
        "init 0",
        "init 6",
        "systemctl reboot",
    ],
}

HARMLESS = [
    "rm -rf /tmp/x",
    "rm -rf ./build",
    "rm -f /",
    'rm -rf "$DIR"/',
    "rm -rf /var/tmp/*",
    "echo rm -rf /tmp && ls /",
    "rm x; ls -R /etc",
    "dd if=/dev/sda of=/tmp/disk.img",
    "echo hi 2>/dev/null",
    "echo x > /dev/stderr",
    "chmod -R 755 /srv/app",
    "chown root /",
    "find / -name core",
    "if [ -f /var/run/reboot-required ]; then echo needed; fi",
    "echo 'reboot required'",
    "grep shutdown /var/log/syslog",
    "init_db 0",
]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def defaults(service) -> list[DangerRule]:
    """The global rules the migration ships: every rule the tests make is off or belongs to a project."""
    return danger.enabled_rules(None)


@pytest.mark.parametrize(
    ("description", "line"),
    [(description, line) for description, lines in DANGEROUS.items() for line in lines],
)
def test_default_rules_catch(defaults, description, line):
    matches = danger.scan(defaults, f"echo start\n{line}\n", "bash")
    assert [(match.description, match.line_number, match.line) for match in matches] == [
        (description, 2, line)
    ]


@pytest.mark.parametrize("line", HARMLESS)
def test_default_rules_leave_alone(defaults, line):
    assert danger.scan(defaults, line, "bash") == []


def test_defaults_intercept_destruction_and_scan_restarts(defaults):
    actions = {rule.description: rule.action for rule in defaults}
    assert set(actions) == set(DANGEROUS)
    assert actions.pop("shutdown, reboot, halt, poweroff or init 0/6") == "scan"
    assert set(actions.values()) == {"intercept"}


def test_languages_narrow_a_rule(service, project):
    rule = {"pattern": unique("only-in-python"), "action": "scan", "languages": ["python"]}
    service.post(f"/projects/{project['id']}/danger-rules", rule, expect=201)
    check = f"/projects/{project['id']}/danger-rules/check"
    python = service.post(check, {"content": rule["pattern"], "language": "python"}, expect=200).get_json()
    bash = service.post(check, {"content": rule["pattern"], "language": "bash"}, expect=200).get_json()
    assert (python["verdict"], bash["verdict"]) == ("warn", "allow")


def test_check_endpoint_verdicts(service, project):
    check = f"/projects/{project['id']}/danger-rules/check"
    assert service.post(check, {"content": "echo hi"}, expect=200).get_json() == {
        "verdict": "allow",
        "matches": [],
    }
    warn = service.post(
        check, {"content": "apt-get upgrade -y\nreboot", "language": "bash"}, expect=200
    ).get_json()
    assert warn["verdict"] == "warn"
    [match] = warn["matches"]
    assert (match["action"], match["line_number"], match["line"]) == ("scan", 2, "reboot")
    refuse = service.post(check, {"content": "reboot\nrm -rf /\nmkfs.ext4 /dev/sdb"}, expect=200).get_json()
    assert refuse["verdict"] == "refuse"
    assert [(m["line_number"], m["action"]) for m in refuse["matches"]] == [
        (1, "scan"),
        (2, "intercept"),
        (3, "intercept"),
    ]
    assert all(m["rule_id"] and m["description"] for m in refuse["matches"])


def test_intercept_refuses_the_launch_naming_rule_and_line(service, project):
    host = add_local_host(service, project)
    error = run_script(service, project, [host], "echo cleaning\nsudo rm -rf /", expect=422)["error"]
    assert error["field"] == "script.content"
    assert "line 2" in error["message"] and "recursive delete of /" in error["message"]
    assert "sudo rm -rf /" in error["message"]
    [match] = error["details"]["matches"]
    assert (match["line_number"], match["line"], match["action"]) == (2, "sudo rm -rf /", "intercept")
    assert service.get(f"/projects/{project['id']}/jobs") == []


def test_scan_warning_is_on_the_202_and_on_the_job(service, project):
    host = add_local_host(service, project)
    marker = unique("warn-me")
    rule = service.post(
        f"/projects/{project['id']}/danger-rules",
        {"pattern": marker, "action": "scan", "description": "a word to warn about"},
        expect=201,
    ).get_json()
    job = run_script(service, project, [host], f"echo {marker}")
    expected = [
        {
            "rule_id": rule["id"],
            "description": "a word to warn about",
            "action": "scan",
            "line_number": 1,
            "line": f"echo {marker}",
        }
    ]
    assert job["warnings"] == expected
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "success"
    assert done["warnings"] == expected


def test_project_switches_a_default_off_for_itself_only(service, project):
    other = service.post("/projects", {"name": unique("other")}, expect=201).get_json()
    rules = service.get(f"/projects/{project['id']}/danger-rules", query_string={"page_size": 100})
    [root] = [rule for rule in rules if rule["description"] == "recursive delete of /"]
    assert (root["scope"], root["enabled"]) == ("global", True)
    path = f"/projects/{project['id']}/danger-rules/{root['id']}"
    body = {"content": "rm -rf /"}

    off = service.api("PATCH", path, 200, json={"enabled": False}).get_json()
    assert off["enabled"] is False
    assert service.post(f"/projects/{project['id']}/danger-rules/check", body, expect=200).get_json()[
        "verdict"
    ] == ("allow")
    assert service.post(f"/projects/{other['id']}/danger-rules/check", body, expect=200).get_json()[
        "verdict"
    ] == ("refuse")
    assert service.get(f"/danger-rules/{root['id']}")["enabled"] is True

    service.api("PATCH", path, 200, json={"enabled": True})
    assert service.post(f"/projects/{project['id']}/danger-rules/check", body, expect=200).get_json()[
        "verdict"
    ] == ("refuse")
    error = service.api("PATCH", path, 422, json={"pattern": "x"}).get_json()["error"]
    assert error["field"] == "pattern" and "global" in error["message"]
    service.api("DELETE", path, 409)


def test_invalid_and_oversized_patterns_are_refused(service, project):
    rules = f"/projects/{project['id']}/danger-rules"
    error = service.post(rules, {"pattern": "rm (-rf", "action": "scan"}, expect=422).get_json()["error"]
    assert error["field"] == "pattern" and "missing )" in error["message"]
    # RE2 has no backreferences: what it cannot match in linear time, it refuses.
    error = service.post(rules, {"pattern": r"(a)\1", "action": "scan"}, expect=422).get_json()["error"]
    assert error["field"] == "pattern"
    error = service.post(rules, {"pattern": "a" * 1001, "action": "scan"}, expect=422).get_json()["error"]
    assert error["field"] == "pattern"
    rule = service.post(rules, {"pattern": unique("fine"), "action": "scan"}, expect=201).get_json()
    error = service.api("PATCH", f"{rules}/{rule['id']}", 422, json={"pattern": "[z-a]"}).get_json()["error"]
    assert error["field"] == "pattern"
    assert service.get(f"{rules}/{rule['id']}")["pattern"] == rule["pattern"]


def test_a_backtracking_pattern_runs_in_linear_time(service, project):
    rules = f"/projects/{project['id']}/danger-rules"
    service.post(rules, {"pattern": "^(a+)+$", "action": "scan"}, expect=201)
    # With a backtracking engine this line would take longer than the age of the universe.
    line = "a" * 50_000 + "!"
    verdict = service.post(f"{rules}/check", {"content": line}, expect=200).get_json()
    assert verdict["verdict"] == "allow"


def test_versions_are_checked_when_saved(service, project):
    scripts = f"/projects/{project['id']}/scripts"
    script = service.post(scripts, {"name": unique("s"), "language": "bash"}, expect=201).get_json()
    versions = f"{scripts}/{script['id']}/versions"
    error = service.post(versions, {"version": "1", "content": "cd /\nrm -rf /*"}, expect=422).get_json()[
        "error"
    ]
    assert error["field"] == "content" and "line 2" in error["message"]
    assert service.get(versions) == []
    saved = service.post(
        versions, {"version": "1", "content": "apt-get upgrade -y\nreboot"}, expect=201
    ).get_json()
    [warning] = saved["warnings"]
    assert (warning["line_number"], warning["action"]) == (2, "scan")
    error = service.api(
        "PATCH", f"{versions}/{saved['id']}", 422, json={"content": "mkfs.xfs /dev/sdb"}
    ).get_json()
    assert error["error"]["field"] == "content"
    assert service.get(f"{versions}/{saved['id']}")["content"] == "apt-get upgrade -y\nreboot"


def test_global_rules_are_read_by_all_and_written_by_system_administrators(service, project):
    rule = service.post(
        "/danger-rules", {"pattern": unique("global"), "action": "intercept", "enabled": False}, expect=201
    ).get_json()
    assert rule["scope"] == "global" and rule["enabled"] is False
    listed = service.get(f"/projects/{project['id']}/danger-rules", query_string={"page_size": 100})
    assert rule["id"] in [item["id"] for item in listed]
    service.api("DELETE", f"/danger-rules/{rule['id']}", 204)
    service.api("GET", f"/danger-rules/{rule['id']}", 404)
