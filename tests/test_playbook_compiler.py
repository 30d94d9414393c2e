"""The playbook compiler is pure: a user's playbook checked as Ansible would load it, and compiled
with its hosts, groups and extra vars into run data."""

from __future__ import annotations

import pytest

from app.config import PLAYBOOK_MAX_BYTES
from app.execution.compiler import Account, Target, to_ansible
from app.execution.playbook import (
    PlaybookStep,
    RepositoryPlaybook,
    check_playbook,
    compile_playbook,
    compile_repository_playbook,
    repository_config,
)
from tests.test_compiler import INJECTION, load

PLAYBOOK = """\
# The user's comments, quoting and Jinja stay as they wrote them.
- name: web
  hosts: web
  vars:
    greeting: "hello {{ inventory_hostname }}"
    literal: !unsafe '{{ not evaluated }}'
  tasks:
    - ansible.builtin.debug: msg="{{ greeting }}"
      tags: [hello]

- hosts: all:!db
  gather_facts: no
  tasks: []
"""


def refusal(content: str) -> str:
    with pytest.raises(ValueError) as refused:
        check_playbook(content)
    return str(refused.value)


def test_a_good_playbook_gives_its_plays():
    plays = check_playbook(PLAYBOOK)
    assert [play["hosts"] for play in plays] == ["web", "all:!db"]
    assert plays[0]["vars"]["literal"] == "{{ not evaluated }}"
    assert check_playbook("- hosts: [web, db]\n  tasks: []\n")[0]["hosts"] == ["web", "db"]


def test_a_yaml_error_names_its_line():
    assert refusal("- hosts: all\n  tasks:\n    - debug: msg=hi\n   oops: [\n").startswith(
        "the playbook is not valid YAML at line 4, column 4: "
    )
    # The classic: a value that starts with Jinja and is not quoted.
    message = refusal("- hosts: all\n  vars:\n    motd: {{ x }}\n")
    assert "line 3" in message and "must be quoted" in message
    assert refusal("- hosts: all\n- hosts: a\x01\n").startswith("the playbook is not valid YAML at line 2")
    assert "line 3" in refusal("- hosts: all\n  vars:\n    x: !custom y\n")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the playbook is empty: it must be a list of plays"),
        ("hosts: all\ntasks: []\n", "a playbook must be a list of plays, not a mapping"),
        ("just text", "a playbook must be a list of plays, not a string"),
        ("[]", "the playbook has no play: it must be a list of plays"),
        ("- hosts: all\n- some text\n", "play 2 (line 2): a play must be a mapping, not a string"),
    ],
)
def test_not_a_list_of_plays(content, message):
    assert refusal(content) == message


def test_a_play_needs_hosts():
    content = "- hosts: all\n  tasks: []\n\n- name: second\n  tasks: []\n"
    assert refusal(content) == "play 2 (line 4): a play needs hosts: the host pattern it runs on"
    assert refusal("- hosts:\n  tasks: []\n") == "play 1 (line 1): hosts is empty"
    assert "host patterns (strings)" in refusal("- hosts: [web, 3]\n")


@pytest.mark.parametrize("key", ["import_playbook", "ansible.builtin.import_playbook"])
def test_import_playbook_is_refused(key):
    message = refusal(f"- hosts: all\n  tasks: []\n- {key}: other.yml\n")
    assert message.startswith(f"play 2 (line 3): {key} is not supported")


def test_vault_needs_a_password_opsflow_lacks():
    vaulted = "- hosts: all\n  vars:\n    token: !vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      6331\n"
    assert "vault-encrypted value at line 3" in refusal(vaulted)
    assert "vault-encrypted" in refusal("$ANSIBLE_VAULT;1.1;AES256\n6331\n")


def test_too_large():
    padding = "#" * (PLAYBOOK_MAX_BYTES - len("- hosts: all\n"))
    check_playbook("- hosts: all\n" + padding)
    assert refusal("- hosts: all\n" + padding + "#") == (
        f"the playbook is {PLAYBOOK_MAX_BYTES + 1} bytes; it may be {PLAYBOOK_MAX_BYTES} bytes at most"
    )


TARGETS = [
    Target("web1", "10.0.0.1", 2222, "ssh", {"role": INJECTION}),
    Target("web2", "10.0.0.2"),
    Target("db1", "10.0.0.3"),
]


def test_the_playbook_text_is_kept_byte_for_byte():
    text = PLAYBOOK.replace("\n", "\r\n") + "# é ✓\n"
    compiled = compile_playbook(PlaybookStep(text), TARGETS, {}, None)
    assert compiled.playbook_text == text
    assert compiled.task_count == 0
    assert (compiled.files, compiled.extra_vars, compiled.options) == ({}, {}, [])


def test_hosts_and_groups_in_the_inventory():
    groups = {"web": ["web1", "web2"], "db": ["db1"], "all": ["web1"], "ungrouped": ["db1"], "empty": []}
    compiled = compile_playbook(PlaybookStep(PLAYBOOK), TARGETS, groups, Account("deploy", become=True))
    inventory = load(to_ansible(compiled.inventory))["all"]
    assert list(inventory["hosts"]) == ["web1", "web2", "db1"]
    web1 = inventory["hosts"]["web1"]
    assert web1["role"] == ("UNSAFE", INJECTION)
    assert (web1["ansible_host"], web1["ansible_port"]) == (("UNSAFE", "10.0.0.1"), 2222)
    assert inventory["vars"]["ansible_user"] == ("UNSAFE", "deploy")
    assert inventory["vars"]["ansible_become"] is True
    # Groups list their members only; `all` and `ungrouped` are Ansible's own.
    assert inventory["children"] == {
        "web": {"hosts": {"web1": None, "web2": None}},
        "db": {"hosts": {"db1": None}},
        "empty": {"hosts": {}},
    }


def test_group_members_outside_the_slice_stay_out():
    compiled = compile_playbook(PlaybookStep(PLAYBOOK), TARGETS[:1], {"web": ["web1", "web2"]}, None)
    assert compiled.inventory["all"]["children"] == {"web": {"hosts": {"web1": None}}}
    assert list(compiled.inventory["all"]["hosts"]) == ["web1"]


def test_extra_vars_are_data():
    extra_vars = {"cmd": INJECTION, "nested": {"list": [INJECTION, 3]}, "count": 2, "on": True}
    compiled = compile_playbook(PlaybookStep(PLAYBOOK, extra_vars=extra_vars), TARGETS, {}, None)
    assert load(to_ansible(compiled.extra_vars)) == {
        "cmd": ("UNSAFE", INJECTION),
        "nested": {"list": [("UNSAFE", INJECTION), 3]},
        "count": 2,
        "on": True,
    }


def test_tags_skip_tags_and_limit_are_options():
    step = PlaybookStep(PLAYBOOK, tags=["hello", "deploy"], skip_tags=["slow"], limit="web:!web2")
    assert compile_playbook(step, TARGETS, {}, None).options == [
        "--tags=hello,deploy",
        "--skip-tags=slow",
        "--limit=web:!web2",
    ]


def test_a_bad_playbook_does_not_compile():
    with pytest.raises(ValueError, match="import_playbook is not supported"):
        compile_playbook(PlaybookStep("- import_playbook: x.yml\n"), TARGETS, {}, None)


def test_a_repository_run_keeps_what_its_ansible_cfg_enables():
    cfg = (
        "[defaults]\ncallbacks_enabled = profile_tasks, timer\ncallback_plugins = ./plugins/callback\n"
        "roles_path = ./roles:~/shared/roles\ntimeout = 30 ; seconds\n"
    )
    config = repository_config(cfg, "/repo")
    run = RepositoryPlaybook(workdir="/repo", playbook="site.yml", tags=["a"], check=True, verbosity=2)
    compiled = compile_repository_playbook(
        run, [], {}, None, config, "/opsflow/callback", {"roles": "/cache/roles"}
    )
    environment = compiled.environment
    assert environment["ANSIBLE_CONFIG"] == "/repo/ansible.cfg"
    assert environment["ANSIBLE_CALLBACKS_ENABLED"] == "profile_tasks,timer,opsflow"
    assert environment["ANSIBLE_CALLBACK_PLUGINS"] == "/repo/plugins/callback:/opsflow/callback"
    assert environment["ANSIBLE_ROLES_PATH"] == "/repo/roles:~/shared/roles:/cache/roles"
    # What the repository sets itself is left to it; Opsflow's action plugins are not added.
    assert environment["ANSIBLE_TIMEOUT"] is None and environment["ANSIBLE_ACTION_PLUGINS"] is None
    assert "ANSIBLE_PYTHON_INTERPRETER" not in environment
    assert compiled.options == ["--tags=a", "--check", "-vv"]
    assert (compiled.workdir, compiled.playbook_path) == ("/repo", "site.yml")
    plain = compile_repository_playbook(run, [], {}, None, repository_config(None, "/repo"), "/cb", {})
    assert plain.environment["ANSIBLE_CALLBACKS_ENABLED"] == "opsflow"
    assert plain.environment["ANSIBLE_CONFIG"] is None and "ANSIBLE_ROLES_PATH" not in plain.environment
