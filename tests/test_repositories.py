"""Playbook repositories through the API: saving them, their archives, syncs, discovery, and runs of
their playbooks."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import psutil

from app.config import REPOSITORY_REVISIONS_KEPT
from app.services.repositories import ARCHIVE_FILE
from tests.archive_files import attacks, tar_gz
from tests.conftest import SERVICE_ENV, add_hosts
from tests.repository_files import (
    FILES,
    REQUIREMENTS,
    SECRET_WORD,
    VAULT_PASSWORD,
    BareRepository,
    write_site,
)
from tests.test_compiler import INJECTION
from tests.test_inventory_api import KEY

FLOW_ENDED = ("success", "failed")


def repositories_of(project: dict) -> str:
    return f"/projects/{project['id']}/repositories"


def upload(service, project: dict, repository: dict, data: bytes, expect: int = 200) -> dict:
    return service.api(
        "POST",
        f"{repositories_of(project)}/{repository['id']}/archive",
        expect,
        data=data,
        headers={"Content-Type": "application/octet-stream"},
    ).get_json()


def test_repositories_are_checked_when_saved(service, project, tmp_path):
    base = repositories_of(project)
    credentials = f"/projects/{project['id']}/credentials"
    key = service.post(credentials, {"name": "key", "kind": "git", "private_key": KEY}, expect=201).get_json()
    vault = service.post(credentials, {"name": "v", "kind": "vault", "password": "p"}, expect=201).get_json()
    git = service.post(
        base,
        {
            "name": "site",
            "source": {"type": "git", "url": "git@git.example.com:ops/site.git", "credential_id": key["id"]},
        },
        expect=201,
    ).get_json()
    assert git["source"] == {
        "type": "git",
        "url": "git@git.example.com:ops/site.git",
        "branch": "main",
        "credential_id": key["id"],
    }
    assert git["current_revision"] is None and git["last_sync"] is None and git["revisions"] == []
    remote = "https://git.example.com/site.git"
    refused = [
        ({"type": "git", "url": "http://git.example.com/site.git"}, "source.url"),
        ({"type": "git", "url": "https://bot:token@git.example.com/site.git"}, "source.url"),
        ({"type": "git", "url": "-uhttps://x"}, "source.url"),
        ({"type": "git", "url": "ext::sh -c touch% /tmp/pwned"}, "source.url"),
        ({"type": "git", "url": remote, "branch": "a..b"}, "source.branch"),
        ({"type": "git", "url": remote, "credential_id": vault["id"]}, "source.credential_id"),
        ({"type": "git", "url": remote, "credential_id": 999999}, "source.credential_id"),
        ({"type": "git"}, "source.url"),
        ({"type": "archive", "url": remote}, "source.url"),
    ]
    for source, field in refused:
        error = service.post(base, {"name": "bad", "source": source}, expect=422).get_json()["error"]
        assert error["field"] == field, (source, error)
    service.api("PATCH", f"{base}/{git['id']}", 422, json={"source": {"type": "archive"}})
    prod = {"source": {"type": "git", "url": remote, "branch": "prod"}}
    changed = service.api("PATCH", f"{base}/{git['id']}", 200, json=prod).get_json()
    assert (changed["source"]["branch"], changed["source"]["credential_id"]) == ("prod", None)
    service.api(
        "PATCH",
        f"{base}/{git['id']}",
        200,
        json={"source": {**changed["source"], "credential_id": key["id"]}},
    )
    assert (
        service.api("DELETE", f"{credentials}/{key['id']}", 409)
        .get_json()["error"]["message"]
        .endswith("change that first")
    )
    # file:// remotes are on in the tests' service, and off unless a server says so.
    assert SERVICE_ENV["OPSFLOW_GIT_ALLOW_FILE"] == "true"
    service.post(base, {"name": "local", "source": {"type": "git", "url": f"file://{tmp_path}"}}, expect=201)
    service.api("DELETE", f"{base}/{git['id']}", 204)


def test_an_archive_is_kept_only_when_every_entry_is_sound(service, project, tmp_path):
    base = repositories_of(project)
    repository = service.post(base, {"name": "bundle", "source": {"type": "archive"}}, expect=201).get_json()
    source = tmp_path / "content"
    source.mkdir()
    (source / "site.yml").write_text("- hosts: all\n  tasks: []\n")
    sound = tar_gz(source)
    kept = upload(service, project, repository, sound)["archive"]
    assert kept["size"] == len(sound) and len(kept["sha256"]) == 64 and kept["uploaded_by"] == "admin"
    directory = Path(service.data_dir) / "repositories" / str(repository["id"])
    unpacked_max = int(SERVICE_ENV["OPSFLOW_UNPACKED_MAX_BYTES"])
    for attack, (data, status) in attacks(unpacked_max).items():
        error = upload(service, project, repository, data, expect=status)["error"]
        assert error["field"] == "archive", (attack, error)
        # Nothing of a refused upload stays: the archive is still the sound one, alone.
        assert [path.name for path in directory.iterdir()] == [ARCHIVE_FILE], attack
        assert (directory / ARCHIVE_FILE).read_bytes() == sound, attack
    assert service.get(f"{base}/{repository['id']}")["archive"] == kept
    git = service.post(
        base, {"name": "git", "source": {"type": "git", "url": f"file://{tmp_path}"}}, expect=201
    )
    upload(service, project, git.get_json(), sound, expect=409)


def test_deleting_a_project_removes_its_repositories_files(service, tmp_path):
    project = service.post("/projects", {"name": f"gone-{time.monotonic_ns()}"}, expect=201).get_json()
    base = repositories_of(project)
    repository = service.post(base, {"name": "bundle", "source": {"type": "archive"}}, expect=201).get_json()
    write_site(tmp_path / "site")
    upload(service, project, repository, tar_gz(tmp_path / "site"))
    sync(service, project, repository)
    directory = Path(service.data_dir) / "repositories" / str(repository["id"])
    assert (directory / ARCHIVE_FILE).exists()
    service.api("DELETE", f"/projects/{project['id']}", 204)
    assert not directory.exists()


def sync(service, project: dict, repository: dict, expect_status: str = "success") -> dict:
    job = service.post(f"{repositories_of(project)}/{repository['id']}/sync", {}, expect=202).get_json()
    ended = service.wait_job(project["id"], job["id"])
    assert ended["status"] == expect_status, ended
    return service.get(f"{repositories_of(project)}/{repository['id']}")


def test_a_git_repository_syncs_its_branch_and_keeps_the_last_revisions(service, project, tmp_path):
    remote = BareRepository(tmp_path / "git")
    write_site(remote.work)
    first = remote.commit("first")
    base = repositories_of(project)
    repository = service.post(
        base, {"name": "site", "source": {"type": "git", "url": remote.url}}, expect=201
    ).get_json()
    synced = sync(service, project, repository)
    current = synced["current_revision"]
    assert (current["revision"], current["summary"], current["synced_by"]) == (first, "first", "admin")
    assert "vendored_tools" in current["log"] and synced["last_sync"]["status"] == "success"
    directory = Path(service.data_dir) / "repositories" / str(repository["id"])
    tree = directory / "revisions" / first
    # Read-only for everyone (mode bits: the tests may run as root, whom os.access lets write anyway).
    assert (tree / "site.yml").stat().st_mode & 0o222 == 0 and tree.stat().st_mode & 0o222 == 0
    [installed] = (directory / "requirements").iterdir()
    assert (installed / "roles" / "vendored_tools" / "tasks" / "main.yml").is_file()
    found = service.get(f"{base}/{repository['id']}/playbooks")
    assert found["revision"] == first and found["ansible_cfg"] is True
    assert {playbook["path"] for playbook in found["playbooks"]} == {"site.yml", "all.yml"}
    assert (
        "no hosts" in {entry["path"]: entry["reason"] for entry in found["not_playbooks"]}["tasks_only.yml"]
    )

    # The branch moves on, then back (a force push): each sync takes its newest commit.
    second = remote.commit("second", {"site.yml": FILES["site.yml"] + "\n"})
    assert sync(service, project, repository)["current_revision"]["revision"] == second
    remote.reset_to(first)
    again = sync(service, project, repository)
    assert again["current_revision"]["revision"] == first
    assert "kept already" in again["current_revision"]["log"]

    # A requirement this machine cannot reach fails the sync, naming it; the revision in use stays.
    unreachable = "- src: git+file:///nonexistent/role.git\n  name: missing_role\n"
    remote.commit("unreachable", {"roles/requirements.yml": REQUIREMENTS + unreachable})
    failed = sync(service, project, repository, "failed")
    assert "'missing_role'" in failed["last_sync"]["error"], failed["last_sync"]
    assert failed["current_revision"]["revision"] == first
    assert service.get(f"{base}/{repository['id']}/playbooks")["revision"] == first
    galaxy = "- name: geerlingguy.nginx\n"
    remote.commit("galaxy", {"roles/requirements.yml": REQUIREMENTS + galaxy})
    failed = sync(service, project, repository, "failed")
    assert "'geerlingguy.nginx' comes from Galaxy" in failed["last_sync"]["error"]

    # Only the last revisions stay, on disk too.
    remote.commit("fixed", {"roles/requirements.yml": REQUIREMENTS})
    for number in range(REPOSITORY_REVISIONS_KEPT):
        remote.commit(f"more {number}")
        latest = sync(service, project, repository)
    kept = [row["revision"] for row in latest["revisions"]]
    assert len(kept) == REPOSITORY_REVISIONS_KEPT and kept[0] == latest["current_revision"]["revision"]
    assert sorted(path.name for path in (directory / "revisions").iterdir()) == sorted(kept)
    assert len(list((directory / "requirements").iterdir())) == 1


def test_a_git_remote_over_ssh_syncs_with_a_git_credential(service, project, lab, tmp_path):
    remote = BareRepository(tmp_path / "git")
    write_site(remote.work)
    first = remote.commit("first")
    credentials = f"/projects/{project['id']}/credentials"
    key = service.post(
        credentials, {"name": "lab-key", "kind": "git", "private_key": lab.private_key}, expect=201
    )
    other = service.post(credentials, {"name": "not-the-key", "kind": "git", "private_key": KEY}, expect=201)
    url = f"ssh://{lab.user}@{lab.address(9)}:{lab.port}{remote.bare}"
    source = {"type": "git", "url": url, "credential_id": key.get_json()["id"]}
    repository = service.post(
        repositories_of(project), {"name": "over-ssh", "source": source}, expect=201
    ).get_json()
    assert "private_key" not in str(repository)
    assert sync(service, project, repository)["current_revision"]["revision"] == first

    # A key the server does not take fails the sync, saying why; the revision in use stays.
    service.api(
        "PATCH",
        f"{repositories_of(project)}/{repository['id']}",
        200,
        json={"source": {**source, "credential_id": other.get_json()["id"]}},
    )
    remote.commit("second")
    failed = sync(service, project, repository, "failed")
    assert "Permission denied" in failed["last_sync"]["error"], failed["last_sync"]
    assert failed["current_revision"]["revision"] == first


def test_a_sync_cancelled_while_its_remote_keeps_silent_ends_terminated(service, project):
    """A remote that accepts the connection and never answers: the sync waits on it until cancelled, then
    ends terminated, leaves no git or ssh process, and the repository keeps no revision."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        silent.settimeout(60)
        port = silent.getsockname()[1]
        source = {"type": "git", "url": f"ssh://git@127.0.0.1:{port}/site.git"}
        base = repositories_of(project)
        repository = service.post(base, {"name": f"silent-{port}", "source": source}, expect=201).get_json()
        job = service.post(f"{base}/{repository['id']}/sync", {}, expect=202).get_json()
        connection, _ = silent.accept()
        with connection:
            service.post(f"/projects/{project['id']}/jobs/{job['id']}/cancel", {"reason": "stop"}, expect=202)
            ended = service.wait_job(project["id"], job["id"])
    assert ended["status"] == "terminated", ended
    assert service.get(f"{base}/{repository['id']}")["current_revision"] is None
    # git names the remote to ssh as `-p PORT git@127.0.0.1`.
    commands = [" ".join(process.info["cmdline"] or []) for process in psutil.process_iter(["cmdline"])]
    assert [command for command in commands if f"-p {port} " in command] == []


def test_an_archive_syncs_to_its_sha256(service, project, tmp_path):
    base = repositories_of(project)
    repository = service.post(base, {"name": "bundle", "source": {"type": "archive"}}, expect=201).get_json()
    service.post(f"{base}/{repository['id']}/sync", {}, expect=409)
    sha256 = upload(service, project, repository, tar_gz(write_site(tmp_path / "site")))["archive"]["sha256"]
    synced = sync(service, project, repository)
    assert synced["current_revision"]["revision"] == sha256
    found = service.get(f"{base}/{repository['id']}/playbooks", query_string={"revision": sha256[:12]})
    assert {playbook["path"] for playbook in found["playbooks"]} == {"site.yml", "all.yml"}
    service.get(f"{base}/{repository['id']}/playbooks", 422, query_string={"revision": "0000000"})


def run_playbook(service, project: dict, body: dict, expect_status: str | None = "success") -> dict:
    job = service.post(f"/projects/{project['id']}/playbook-runs", body, expect=202).get_json()
    ended = service.wait_job(project["id"], job["id"])
    if expect_status is not None:
        results = service.host_results(project["id"], job["id"])
        slices = [piece["error"] for step in ended["steps"] for piece in step["slices"]]
        assert ended["status"] == expect_status, (slices, [result["error"] for result in results])
    return ended


def test_a_repository_playbook_runs_as_ansible_playbook_would_there(service, project, account, lab, tmp_path):
    pid = project["id"]
    hosts = add_hosts(service, project, lab, 2)
    service.post(
        f"/projects/{pid}/groups", {"name": "web", "hosts": [host["id"] for host in hosts]}, expect=201
    )
    remote = BareRepository(tmp_path / "git")
    lab_inventory = "".join(
        f"lab-{n} ansible_host={lab.address(n)} ansible_port={lab.port}\n" for n in range(2)
    )
    write_site(remote.work, {"inventories/lab.ini": "[web]\n" + lab_inventory})
    first = remote.commit("first")
    repository = service.post(
        repositories_of(project), {"name": "site", "source": {"type": "git", "url": remote.url}}, expect=201
    ).get_json()
    sync(service, project, repository)
    credentials = f"/projects/{pid}/credentials"
    vault = service.post(credentials, {"name": "v", "kind": "vault", "password": VAULT_PASSWORD}, expect=201)
    wrong = service.post(
        credentials, {"name": "w", "kind": "vault", "password": "not-the-password"}, expect=201
    )
    out = tmp_path / "out"
    out.mkdir()
    base = {
        "repository_id": repository["id"],
        "playbook": "site.yml",
        "targets": {"hosts": [host["id"] for host in hosts]},
        "account_id": account["id"],
        "vault_credential_id": vault.get_json()["id"],
    }

    def run_vars(tag: str) -> dict:
        return {"out_dir": str(out), "run_tag": tag, "payload": INJECTION}

    def written(tag: str) -> dict[str, str]:
        return {path.name: path.read_text() for path in sorted(out.glob(f"{tag}-*"))}

    # Check mode changes nothing on the hosts; with diff, each host's tasks show what would change.
    checked = run_playbook(
        service, project, {**base, "check": True, "diff": True, "extra_vars": run_vars("check")}
    )
    assert written("check") == {}
    tasks = service.get(
        f"/projects/{pid}/jobs/{checked['id']}/host-results/{hosts[0]['id']}/tasks",
        query_string={"page_size": 100},
    )
    assert any("+greeting = HELLO FROM GROUP_VARS!" in (task["diff"] or "") for task in tasks), tasks
    # A whole run: the role's template with the filter plugin and group_vars, its handler, the vendored
    # role from the requirements, the vault-encrypted variable, and the extra var as text.
    job = run_playbook(service, project, {**base, "extra_vars": run_vars("all")})
    assert job["steps"][0]["spec"]["revision"] == first
    files = written("all")
    assert files["all-h00000.conf"] == "greeting = HELLO FROM GROUP_VARS!\nhost = h00000\n"
    assert files["all-h00000.handled"] == "handled\n" and files["all-h00001.vendored"] == "vendored"
    assert files["all-h00000.secret"] == SECRET_WORD and files["all-h00001.payload"] == INJECTION
    assert {result["status"] for result in service.host_results(pid, job["id"])} == {"success"}
    # Tags and a limit choose the tasks and the hosts.
    run_playbook(
        service, project, {**base, "extra_vars": run_vars("tags"), "tags": ["config"], "limit": "h00001"}
    )
    assert sorted(written("tags")) == ["tags-h00001.conf", "tags-h00001.handled"]
    # A wrong vault password fails clearly.
    wrong_vault = {**base, "extra_vars": run_vars("wrong"), "vault_credential_id": wrong.get_json()["id"]}
    failed = run_playbook(service, project, wrong_vault, "failed")
    errors = " ".join(result["error"] or "" for result in service.host_results(pid, failed["id"]))
    assert "ecrypt" in errors, errors
    # The repository's own inventory, the account's login.
    by_file = {**base, "extra_vars": run_vars("inventory"), "inventory_file": "inventories/lab.ini"}
    by_file.pop("targets")
    job = run_playbook(service, project, {**by_file, "limit": "lab-1"})
    assert sorted(written("inventory")) == [
        f"inventory-lab-1.{suffix}" for suffix in ("conf", "handled", "payload", "secret", "vendored")
    ]
    assert {r["host_name"]: r["status"] for r in service.host_results(pid, job["id"])} == {
        "lab-0": "skipped", "lab-1": "success",
    }  # fmt: skip
    # Ansible's own answers, without touching a host.
    listed = run_playbook(service, project, {**base, "list_tasks": True})
    assert "write the config" in listed["steps"][0]["output"] and listed["host_count"] == 0
    checked = run_playbook(service, project, {**base, "playbook": "all.yml", "syntax_check": True})
    assert "playbook: all.yml" in checked["steps"][0]["output"]
    # Not a playbook: the reason discovery found.
    error = service.post(f"/projects/{pid}/playbook-runs", {**base, "playbook": "tasks_only.yml"}, expect=422)
    assert "it has no hosts" in error.get_json()["error"]["message"]
    # A relaunch runs the revision the job ran, after the branch moved on.
    remote.commit("second", {"site.yml": FILES["site.yml"] + "\n"})
    sync(service, project, repository)
    again = service.post(f"/projects/{pid}/jobs/{job['id']}/relaunch", {}, expect=202).get_json()
    assert service.wait_job(pid, again["id"])["steps"][0]["spec"]["revision"] == first


def test_templates_and_flows_run_repository_playbooks(service, project, account, lab, tmp_path):
    pid = project["id"]
    [host] = add_hosts(service, project, lab, 1)
    service.post(f"/projects/{pid}/groups", {"name": "web", "hosts": [host["id"]]}, expect=201)
    remote = BareRepository(tmp_path / "git")
    write_site(remote.work)
    first = remote.commit("first")
    # Synced on launch: a launch finds it never synced, and syncs first.
    source = {"type": "git", "url": remote.url}
    saved = {"name": "site", "source": source, "sync_on_launch": True, "sync_cache_seconds": 3600}
    repository = service.post(repositories_of(project), saved, expect=201).get_json()
    vault = service.post(
        f"/projects/{pid}/credentials", {"name": "v", "kind": "vault", "password": VAULT_PASSWORD}, expect=201
    ).get_json()
    out = tmp_path / "out"
    out.mkdir()
    body = {
        "repository_id": repository["id"],
        "playbook": "site.yml",
        "vault_credential_id": vault["id"],
        "tags": ["config"],
        "extra_vars": {"out_dir": str(out), "run_tag": "template"},
    }
    step = {
        "name": "site",
        "type": "playbook",
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
    }
    bad = {**step, "playbook": {**body, "content": "- hosts: all\n"}}
    service.post(f"/projects/{pid}/job-templates", {"name": "bad", "steps": [bad]}, expect=422)
    template = service.post(
        f"/projects/{pid}/job-templates", {"name": "site", "steps": [{**step, "playbook": body}]}, expect=201
    ).get_json()
    job = service.post(f"/projects/{pid}/job-templates/{template['id']}/launch", {}, expect=202).get_json()
    ended = service.wait_job(pid, job["id"])
    assert ended["status"] == "success", ended
    assert [step["kind"] for step in ended["steps"]] == ["repository_sync", "playbook"]
    assert ended["steps"][1]["spec"]["revision"] == first
    assert (out / "template-h00000.conf").read_text().startswith("greeting = HELLO")
    # Synced a moment ago: the next launch runs at once, on the same revision.
    job = service.post(f"/projects/{pid}/job-templates/{template['id']}/launch", {}, expect=202).get_json()
    assert [step["kind"] for step in service.wait_job(pid, job["id"])["steps"]] == ["playbook"]

    flow = service.post(
        f"/projects/{pid}/flows",
        {
            "name": "site",
            "nodes": [
                {"id": "start", "type": "start"},
                {"id": "site", "type": "activity", "atom": "playbook", "inputs": {
                    **body, "extra_vars": {"out_dir": str(out), "run_tag": "flow"},
                    "targets": {"hosts": [host["id"]]}, "account_id": account["id"],
                }},
                {"id": "end", "type": "end"},
            ],
            "edges": [{"from": "start", "to": "site"}, {"from": "site", "to": "end"}],
        },
        expect=201,
    ).get_json()  # fmt: skip
    task = service.post(f"/projects/{pid}/flows/{flow['id']}/tasks", {}, expect=201).get_json()
    deadline = time.monotonic() + 180
    while (state := service.get(f"/projects/{pid}/flow-tasks/{task['id']}"))["status"] not in (
        "success",
        "failed",
    ):
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
    assert state["status"] == "success", state
    assert (out / "flow-h00000.conf").is_file()
