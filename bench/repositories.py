"""Playbook repositories: sync and discovery of a repository of many files, and a repository playbook on
loopback hosts through the service against plain ansible-playbook run in the same directory.

    .venv/bin/python -m bench.repositories --files 2000 --hosts 500

It starts the service as `make run` does (data dir in a temporary directory, file:// remotes allowed)
and a private sshd whose loopback addresses are the hosts; it prints figures, it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.execution.discovery import discover
from bench.fanout import SSH_ARGS, Service, close_masters, machine
from tests.repository_files import BareRepository, tarball
from tests.sshd import SshLab

PLAYBOOK = """\
- name: bench
  hosts: all
  gather_facts: false
  roles: [bench]
"""
ROLE_TASK = "- name: say hello\n  ansible.builtin.command: echo hello\n  changed_when: false\n"


def repository_files(count: int) -> dict[str, str]:
    """`count` files as a repository has them: the playbook, its role, and many more roles and playbooks."""
    files = {"site.yml": PLAYBOOK, "roles/bench/tasks/main.yml": ROLE_TASK, "ansible.cfg": "[defaults]\n"}
    number = 0
    while len(files) < count:
        role = f"roles/role{number:04d}"
        files[f"{role}/tasks/main.yml"] = ROLE_TASK
        files[f"{role}/defaults/main.yml"] = f"role_value: {number}\n"
        files[f"{role}/templates/conf.j2"] = "value = {{ role_value }}\n"
        files[f"playbooks/play{number:04d}.yml"] = f"- hosts: all\n  roles: [role{number:04d}]\n"
        number += 1
    return dict(list(files.items())[:count])


def timed_sync(service: Service, pid: int, rid: int) -> tuple[float, dict]:
    start = time.monotonic()
    job = service.api.post(f"/projects/{pid}/repositories/{rid}/sync", {})
    ended = service.wait(pid, job["id"], 600)
    return time.monotonic() - start, ended


def plain_run(lab: SshLab, tree: Path, hosts: int, forks: int, workdir: Path) -> float:
    """ansible-playbook in the revision's own directory, on the same hosts, as its user would run it."""
    workdir.mkdir()
    inventory = workdir / "inventory.json"
    inventory.write_text(json.dumps(lab.inventory(hosts)))
    control_dir = workdir / "cp"
    control_dir.mkdir()
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SSH_ARGS": SSH_ARGS,
           "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir), "ANSIBLE_NOCOLOR": "1"}  # fmt: skip
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        str(inventory),
        "-f",
        str(forks),
        "site.yml",
    ]
    start = time.monotonic()
    done = subprocess.run(command, cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    seconds = time.monotonic() - start
    close_masters(control_dir)
    if done.returncode:
        raise RuntimeError(f"plain ansible-playbook ended {done.returncode}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=500)
    parser.add_argument("--forks", type=int, default=50)
    args = parser.parse_args()
    print(f"machine: {machine()}; load average at start: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="opsflow-bench-repo-") as scratch:
        workdir = Path(scratch)
        remote = BareRepository(workdir / "git")
        files = repository_files(args.files)
        commit = remote.commit("bench", files)
        with SshLab(workdir / "ssh") as lab:
            (workdir / "service").mkdir()
            service = Service(workdir / "service", None, args.forks)
            service.env["OPSFLOW_GIT_ALLOW_FILE"] = "true"
            service.start()
            try:
                pid, host_ids, account_id = service.setup_project("bench", lab, args.hosts)
                git = {"type": "git", "url": remote.url}
                rid = service.api.post(f"/projects/{pid}/repositories", {"name": "git", "source": git})["id"]
                seconds, ended = timed_sync(service, pid, rid)
                print(f"git sync of {len(files)} files ({commit[:12]}): {seconds:.2f} s, {ended['status']}")
                seconds, ended = timed_sync(service, pid, rid)
                print(f"git sync again, nothing new: {seconds:.2f} s, {ended['status']}")
                tree = service.data_dir / "repositories" / str(rid) / "revisions" / commit
                start = time.monotonic()
                found = discover(tree)
                print(
                    f"discovery of {len(files)} files: {time.monotonic() - start:.2f} s "
                    f"({len(found['playbooks'])} playbooks, {len(found['not_playbooks'])} other YAML files)"
                )
                archive = workdir / "repo.tgz"
                archive.write_bytes(tarball(files))
                aid = service.api.post(
                    f"/projects/{pid}/repositories", {"name": "tgz", "source": {"type": "archive"}}
                )["id"]
                subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", "-H", f"Authorization: Bearer {service.api.token}",
                     "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{archive}",
                     f"{service.api.base}/projects/{pid}/repositories/{aid}/archive"],
                    check=True,
                )  # fmt: skip
                seconds, ended = timed_sync(service, pid, aid)
                print(f"archive sync of {len(files)} files: {seconds:.2f} s, {ended['status']}")
                body = {"repository_id": rid, "playbook": "site.yml", "targets": {"hosts": host_ids},
                        "account_id": account_id, "forks": args.forks}  # fmt: skip
                start = time.monotonic()
                job = service.api.post(f"/projects/{pid}/playbook-runs", body)
                ended = service.wait(pid, job["id"], 3600)
                through = time.monotonic() - start
                plain = plain_run(lab, tree, args.hosts, args.forks, workdir / "plain")
                print(
                    f"site.yml on {args.hosts} hosts, {args.forks} forks: service {through:.2f} s "
                    f"({ended['status']}, {ended['counts'].get('success', 0)} success), "
                    f"plain ansible-playbook {plain:.2f} s, ratio {through / plain:.2f}"
                )
            finally:
                service.stop()


if __name__ == "__main__":
    main()
