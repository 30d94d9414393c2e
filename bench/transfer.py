"""Benchmark: one file pushed to N hosts; plain ``ansible-playbook`` (copy, synchronize) against the service.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.transfer                     # 100 MB to 50 hosts
    .venv/bin/python -m bench.transfer --megabytes 20 --hosts 10

It starts a private sshd (``tests.sshd.SshLab``; every host is its own 127.x.y.z address, all on this
machine, so every host writes the same target path) and the service (``python -m app.cli run``, as
bench/fanout.py does). It makes one file of random bytes, then times, once each:

  copy          plain ``ansible-playbook`` with the ``copy`` module, as the service's push step uses it;
  copy again    the same, when every host already holds the file (nothing is sent: "unchanged");
  opsflow_copy  the same with the service's action plugin, given the file's SHA-1 (no hash per host);
  opsflow_copy again;
  rsync         plain ``ansible-playbook`` running ``rsync -a`` from the controller to each host over the
                run's own ControlPersist connection (what ansible.posix's ``synchronize`` does; that
                collection is not part of ansible-core, so the command is spelled out);
  rsync again   the same, when every host already holds the file (size and mtime match);
  service       POST /file-transfers of the uploaded file until GET /jobs/{id} is final;
  service again a relaunch of it: every file unchanged.

Before each first run the target file is removed, so every host receives the whole file. Wall time,
and aggregate MB/s (file size x hosts / wall time) for the runs that send the file. The upload's own
time is printed too. Figures only: nothing passes or fails.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from app.execution.runner import ACTION_DIR
from bench.fanout import SSH_ARGS, Service, close_masters
from tests.sshd import SshLab

FORKS = 50
TARGET_NAME = "payload.bin"


def playbook(method: str, source: Path, target: Path, lab: SshLab, control_dir: str) -> str:
    """The plain playbook of one method: copy, or rsync from the controller over Ansible's own
    ControlPersist connection to each host (what ansible.posix's synchronize runs; that collection
    is not part of ansible-core)."""
    if method == "copy":
        tasks = [{"copy": {"src": str(source), "dest": str(target), "force": True}}]
    elif method == "opsflow_copy":
        sha1 = hashlib.sha1(source.read_bytes()).hexdigest()
        tasks = [{"opsflow_copy": {"src": str(source), "dest": str(target), "force": True, "checksum": sha1}}]
    else:
        ssh = f"ssh {SSH_ARGS} -o ControlPath={control_dir}/%C -i {lab.private_key_path} -p {lab.port}"
        tasks = [
            {"name": "open the connection", "raw": "true", "changed_when": False},
            {
                "name": "rsync",
                "delegate_to": "localhost",
                "command": {
                    "argv": [
                        "rsync",
                        "-a",
                        "-e",
                        ssh,
                        str(source),
                        f"{lab.user}@{{{{ ansible_host }}}}:{target}",
                    ]
                },
                "vars": {"ansible_connection": "local"},
            },
        ]
    return yaml.safe_dump([{"hosts": "all", "gather_facts": False, "tasks": tasks}])


def plain_run(lab: SshLab, hosts: int, workdir: Path, name: str, method: str, source: Path, target: Path):
    """Wall seconds and return code of one plain ansible-playbook run, in a directory of its own."""
    rundir = workdir / name
    rundir.mkdir()
    # Unix socket paths are short: the ControlPath directory lives directly in /tmp.
    control_dir = Path(tempfile.mkdtemp(prefix="cp-", dir="/tmp"))
    (rundir / "play.yml").write_text(playbook(method, source, target, lab, str(control_dir)))
    (rundir / "inventory.json").write_text(json.dumps(lab.inventory(hosts)))
    env = {
        **os.environ,
        "ANSIBLE_HOST_KEY_CHECKING": "False",
        # First on ssh's command line, so it wins over Ansible's own; rsync names the same path.
        "ANSIBLE_SSH_ARGS": f"{SSH_ARGS} -o ControlPath={control_dir}/%C",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_ACTION_PLUGINS": str(ACTION_DIR),
    }
    command = [
        str(Path(sys.executable).with_name("ansible-playbook")),
        "-i",
        "inventory.json",
        "-f",
        str(FORKS),
    ]
    with (rundir / "ansible.log").open("wb") as log:
        start = time.monotonic()
        proc = subprocess.run(
            [*command, "play.yml"], cwd=rundir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        seconds = time.monotonic() - start
    close_masters(control_dir)
    shutil.rmtree(control_dir, ignore_errors=True)
    if proc.returncode:
        print(f"{name}: ansible-playbook ended {proc.returncode}; its log ends:", file=sys.stderr)
        print((rundir / "ansible.log").read_text(errors="replace")[-1500:], file=sys.stderr)
    return seconds, proc.returncode


def upload(service: Service, pid: int, path: Path) -> tuple[float, dict]:
    start = time.monotonic()
    out = subprocess.run(
        [
            "curl", "-sS", "--fail-with-body", "-H", f"Authorization: Bearer {service.api.token}",
            "-H", "Content-Type: application/octet-stream", "--data-binary", f"@{path}",
            f"{service.api.base}/projects/{pid}/files?name={TARGET_NAME}",
        ],
        capture_output=True,
    )  # fmt: skip
    if out.returncode:
        raise RuntimeError(f"upload failed ({out.returncode}): {out.stdout[-500:]!r} {out.stderr[-500:]!r}")
    return time.monotonic() - start, json.loads(out.stdout)


def service_run(service: Service, pid: int, path: str, body: dict | None, hosts: int) -> tuple[float, str]:
    start = time.monotonic()
    job = service.api.call("POST", path, body, retries=0)[1]
    job = service.wait(pid, job["id"], timeout=600 + hosts)
    seconds = time.monotonic() - start
    counts = {status: count for status, count in job["counts"].items() if count}
    return seconds, f"{job['status']} {counts}"


def rate(megabytes: int, hosts: int, seconds: float) -> str:
    return f"{megabytes * hosts / seconds:8.1f} MB/s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=50)
    parser.add_argument("--megabytes", type=int, default=100)
    args = parser.parse_args()
    hosts, megabytes = args.hosts, args.megabytes
    print(f"machine: {platform.node()}, nproc {os.cpu_count()}, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="opsflow-bench-transfer-") as tmp:
        workdir = Path(tmp)
        source = workdir / "source.bin"
        with source.open("wb") as out:
            for _ in range(megabytes):
                out.write(os.urandom(1_000_000))
        target_dir = workdir / "target"
        target_dir.mkdir()
        target = target_dir / TARGET_NAME
        rows: list[tuple[str, float, str]] = []
        with SshLab(workdir / "ssh") as lab:
            for method in ("copy", "opsflow_copy", "rsync"):
                target.unlink(missing_ok=True)
                for label in (method, f"{method} again"):
                    name = label.replace(" ", "-")
                    seconds, rc = plain_run(lab, hosts, workdir, name, method, source, target)
                    rows.append((label, seconds, f"rc {rc}"))
            target.unlink(missing_ok=True)
            (workdir / "service").mkdir()
            service = Service(workdir / "service", slice_size=None, forks=FORKS)
            service.start()
            try:
                pid, host_ids, account_id = service.setup_project("transfer", lab, hosts)
                seconds, stored = upload(service, pid, source)
                print(f"upload of {megabytes} MB: {seconds:.2f} s ({megabytes / seconds:.1f} MB/s)")
                body = {
                    "sources": [{"file_id": stored["id"]}],
                    "target_path": str(target_dir),
                    "targets": {"hosts": host_ids},
                    "account_id": account_id,
                    "forks": FORKS,
                }
                seconds, outcome = service_run(service, pid, f"/projects/{pid}/file-transfers", body, hosts)
                rows.append(("service", seconds, outcome))
                jid = service.api.get(f"/projects/{pid}/jobs")[0]["id"]
                relaunch = f"/projects/{pid}/jobs/{jid}/relaunch"
                rows.append(("service again", *service_run(service, pid, relaunch, {}, hosts)))
            finally:
                service.stop()
    print(f"{megabytes} MB to {hosts} hosts, forks {FORKS}:")
    for label, seconds, outcome in rows:
        sent = "" if "again" in label else rate(megabytes, hosts, seconds)
        print(f"  {label:18} {seconds:7.2f} s {sent:>14}  {outcome}")
    plain = next(seconds for label, seconds, _ in rows if label == "copy")
    service_seconds = next(seconds for label, seconds, _ in rows if label == "service")
    print(f"service / plain copy: {service_seconds / plain:.2f}")


if __name__ == "__main__":
    main()
