"""Discovery over a directory: playbooks, every other YAML file with its reason, inventories."""

from __future__ import annotations

import os

from app.execution.discovery import discover
from tests.repository_files import write_site


def test_discovery_lists_playbooks_and_says_why_other_files_are_not(tmp_path):
    root = write_site(tmp_path / "site", {"hidden/.x.yml": "- hosts: all\n", ".github/ci.yml": "on: push\n"})
    os.symlink("/etc/hostname", root / "outside.yml")
    found = discover(root)
    assert {playbook["path"]: playbook["plays"] for playbook in found["playbooks"]} == {
        "site.yml": [{"name": "configure the web hosts", "hosts": "web"}],
        "all.yml": [{"import_playbook": "site.yml"}],
        "hidden/.x.yml": [{"name": "", "hosts": "all"}],
    }
    reasons = {entry["path"]: entry["reason"] for entry in found["not_playbooks"]}
    assert reasons["tasks_only.yml"].startswith("item 1 (line 1) is not a play: it has no hosts")
    assert "ansible.builtin.debug" in reasons["tasks_only.yml"]
    assert reasons["vars.yml"].startswith("a mapping (variables?)")
    assert reasons["broken.yml"].startswith("it is not valid YAML at line")
    assert reasons["outside.yml"] == "a link that leads out of the tree"
    assert set(reasons) == {"tasks_only.yml", "vars.yml", "broken.yml", "outside.yml"}
    skipped = {entry["path"] for entry in found["skipped"]}
    assert {"roles", "group_vars", ".github"} <= skipped
    [inventory] = found["inventories"]
    assert inventory["path"] == "inventories/lab.ini" and inventory["groups"] == ["web"]
    assert [host["name"] for host in inventory["hosts"]] == ["lab-a", "lab-b"] and inventory["error"] is None
    assert found["ansible_cfg"] is True
