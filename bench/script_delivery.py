"""Benchmark: deliver one shell script to N hosts with a single ``raw`` task vs the ``script`` module.

Run it from the repository root, so that ``tests.sshd`` imports::

    python -m bench.script_delivery                       # 100 hosts
    python -m bench.script_delivery --hosts 100 --hosts 500

It starts a private sshd (``tests.sshd.SshLab``, needs /usr/sbin/sshd from openssh-server) whose hosts
are loopback addresses, and runs plain ``ansible-playbook`` (taken from beside this Python, else PATH)
with forks=50, ControlMaster/ControlPersist and ``ansible_ssh_use_tty: false``. Each playbook run
gets a fresh ControlPath directory, so every timed run opens its connections cold.

(a) raw:    one ``raw`` task that writes the script from base64 into a ``mktemp -d`` dir, runs it with
            ``sh``, removes the dir and exits with the script's rc.
(b) script: the ``script`` module, with the script in a directory whose path contains a space.

Per host count it prints wall times and their ratio, then checks both paths (stdout, stderr and
rc=3 kept apart; a payload with binary-ish bytes, a Jinja expression and ``--payload-kb`` KiB of
data arriving byte-exact, judged by a sha256 the remote side prints), and finally how big a base64
payload one ``raw`` command can carry. It prints findings and never fails on them.

Seen with ansible-core 2.21 and OpenSSH 9.2: one raw command may be at most 131071 bytes (Linux
MAX_ARG_STRLEN; beyond it Ansible fails to exec ssh with E2BIG), so path (a) carries scripts up to
about 96 KiB; and with the default ssh_args the raw task's stderr starts with ssh's own "Warning:
Permanently added ..." line, which ``--ssh-args "<defaults> -o LogLevel=ERROR"`` removes.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import random
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from tests.sshd import SshLab

FORKS = 50
SSH_ARGS = "-o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=/dev/null"
ARGS = ("arg 1", "arg2")
RAW_PROBE_SIZES = (64 * 1024, 120 * 1024, 200 * 1024, 1024 * 1024)
JINJA = "{{ lookup('pipe','id') }}"
CALLBACK_NAME = "opsflow_bench_results"

# Aggregate callback that appends one JSON line per host result to $OPSFLOW_BENCH_RESULTS.
CALLBACK_SOURCE = """\
from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "opsflow_bench_results"
    CALLBACK_NEEDS_ENABLED = True

    def _record(self, result, status):
        data = result.result if hasattr(result, "result") else result._result
        host = result.host if hasattr(result, "host") else result._host
        keys = ("rc", "stdout", "stderr", "msg")
        row = {"host": host.get_name(), "status": status, **{k: data.get(k) for k in keys}}
        with open(os.environ["OPSFLOW_BENCH_RESULTS"], "a", encoding="utf-8") as out:
            out.write(json.dumps(row, default=str) + "\\n")

    def v2_runner_on_ok(self, result):
        self._record(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False):
        self._record(result, "failed")

    def v2_runner_on_unreachable(self, result):
        self._record(result, "unreachable")
"""

TIMED_SCRIPT = b"""#!/bin/sh
printf 'hello from %s, args:' "$(hostname)"
printf ' [%s]' "$@"
printf '\\n'
echo 'a line on stderr' >&2
"""

IO_SCRIPT = b"""#!/bin/sh
printf 'out:%s|' "$@"
printf 'OUT-\\303\\251-2\\n'
printf 'err:%s|' "$@" >&2
printf 'ERR-2\\n' >&2
exit 3
"""
IO_EXPECTED = (3, "out:arg 1|out:arg2|OUT-\u00e9-2\n", "err:arg 1|err:arg2|ERR-2\n")


@dataclass
class Run:
    """Outcome of one ansible-playbook run."""

    seconds: float
    rc: int
    results: dict[str, dict]
    log: Path


def payload_script(kib: int) -> bytes:
    """Return a script carrying binary-ish bytes, a Jinja expression and kib KiB of random bytes.

    It prints the sha256 of its own file, its args and the Jinja text, each on one line.
    """
    rng = random.Random(1234)
    binaryish = bytes(b for b in range(1, 256) if b != ord("\n"))
    blob = bytes(rng.randrange(1, 256) for _ in range(kib * 1024)).replace(b"PAYLOAD", b"PAYL0AD")
    return (
        b"#!/bin/sh\n# binary-ish: " + binaryish + b"\n# " + JINJA.encode() + b"\n"
        b": <<'PAYLOAD'\n" + blob + b"\nPAYLOAD\n"
        b"printf 'sha256=%s\\n' \"$(sha256sum < \"$0\" | cut -d ' ' -f 1)\"\n"
        b"printf 'args=%s|' \"$@\"\nprintf '\\n'\n"
        b"printf '%s\\n' \"" + JINJA.encode() + b'"\n'
    )


def unsafe(text: str) -> str:
    """Return text as a YAML scalar tagged !unsafe (JSON strings are valid YAML double-quoted)."""
    return "!unsafe " + json.dumps(text)


def raw_command(script: bytes, args: tuple[str, ...]) -> str:
    """Return the one-line shell command of path (a)."""
    encoded = base64.b64encode(script).decode()
    quoted = " ".join(shlex.quote(a) for a in args)
    return (
        "dir=$(mktemp -d) || exit 125; "
        f"printf '%s' '{encoded}' | base64 -d > \"$dir/script\" && sh \"$dir/script\" {quoted}; "
        'rc=$?; rm -rf "$dir"; exit $rc'
    )


def playbook(module: str, free_form: str) -> str:
    """Return a one-task playbook running module with an !unsafe free-form argument."""
    return (
        "- name: deliver\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        f"    - name: run\n      ansible.builtin.{module}: {unsafe(free_form)}\n"
    )


class Bench:
    """Playbook runs against an SshLab, each in its own numbered directory under workdir."""

    def __init__(self, lab: SshLab, workdir: Path, ssh_args: str = SSH_ARGS) -> None:
        self.lab = lab
        self.ssh_args = ssh_args
        self.workdir = workdir
        self.runs = 0
        self.ansible_playbook = self._find_ansible_playbook()
        plugins = workdir / "callback_plugins"
        plugins.mkdir(parents=True)
        (plugins / f"{CALLBACK_NAME}.py").write_text(CALLBACK_SOURCE)
        (workdir / "ansible.cfg").write_text("")
        self.scripts_dir = workdir / "user scripts"
        self.scripts_dir.mkdir()

    @staticmethod
    def _find_ansible_playbook() -> str:
        """Prefer the ansible-playbook installed with this Python."""
        beside = Path(sys.executable).with_name("ansible-playbook")
        return str(beside) if beside.exists() else shutil.which("ansible-playbook") or "ansible-playbook"

    def version(self) -> str:
        """Return the first line of ``ansible-playbook --version``."""
        out = subprocess.run([self.ansible_playbook, "--version"], capture_output=True, text=True)
        return out.stdout.splitlines()[0] if out.stdout else out.stderr.strip()

    def inventory(self, hosts: int) -> Path:
        """Write (once) and return an inventory of hosts loopback hosts."""
        path = self.workdir / f"inventory-{hosts}.json"
        if not path.exists():
            path.write_text(json.dumps(self.lab.inventory(hosts)))
        return path

    def run_raw(self, hosts: int, script: bytes) -> Run:
        """Path (a): one raw task."""
        return self.play(hosts, playbook("raw", raw_command(script, ARGS)))

    def run_script(self, hosts: int, script: bytes) -> Run:
        """Path (b): the script module, from a directory whose path contains a space."""
        path = self.scripts_dir / f"script-{self.runs}.sh"
        path.write_bytes(script)
        return self.play(hosts, playbook("script", shlex.join([str(path), *ARGS])))

    def play(self, hosts: int, text: str) -> Run:
        """Run one playbook against hosts hosts with a fresh ControlPath directory."""
        self.runs += 1
        rundir = self.workdir / f"run-{self.runs:03d}"
        control_dir = rundir / "cp"
        control_dir.mkdir(parents=True)
        (rundir / "play.yml").write_text(text)
        results = rundir / "results.jsonl"
        env = {
            **os.environ,
            "ANSIBLE_CONFIG": str(self.workdir / "ansible.cfg"),
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_ARGS": self.ssh_args,
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_CALLBACK_PLUGINS": str(self.workdir / "callback_plugins"),
            "ANSIBLE_CALLBACKS_ENABLED": CALLBACK_NAME,
            "ANSIBLE_NOCOLOR": "1",
            "OPSFLOW_BENCH_RESULTS": str(results),
        }
        cmd = [self.ansible_playbook, "-i", str(self.inventory(hosts)), "-f", str(FORKS), "play.yml"]
        log = rundir / "ansible.log"
        with log.open("wb") as out:
            start = time.monotonic()
            proc = subprocess.run(cmd, cwd=rundir, env=env, stdout=out, stderr=subprocess.STDOUT)
            seconds = time.monotonic() - start
        self._close_masters(control_dir)
        rows = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
        return Run(seconds, proc.returncode, {row["host"]: row for row in rows}, log)

    @staticmethod
    def _close_masters(control_dir: Path) -> None:
        """End the ControlPersist masters of one run, so runs never share connections."""
        mark = str(control_dir)
        masters = [p for p in psutil.process_iter(["cmdline"]) if mark in " ".join(p.info["cmdline"] or [])]
        for proc in masters:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        psutil.wait_procs(masters, timeout=5)


def check(label: str, run: Run, hosts: int, expected: tuple[int, str, str]) -> None:
    """Print how many hosts returned exactly (rc, stdout, stderr) and one mismatch if any."""
    good = 0
    bad: dict | None = None
    for row in run.results.values():
        if (row["rc"], row["stdout"], row["stderr"]) == expected:
            good += 1
        elif bad is None:
            bad = row
    print(f"  {label:<36} {good}/{hosts} hosts exact  (playbook rc={run.rc}, {run.seconds:.1f}s)")
    if bad is not None or len(run.results) < hosts:
        shown = {k: (v[:300] if isinstance(v, str) else v) for k, v in (bad or {}).items()}
        print(f"    {hosts - len(run.results)} hosts without a result; first mismatch: {shown}")
        print(f"    log: {run.log}")


def probe_raw_limit(bench: Bench) -> None:
    """Print which base64 payload sizes one raw command can carry to one host."""
    print("raw command size probe (1 host, `printf '%s' '<b64>' | base64 -d | sha256sum`):")
    for size in RAW_PROBE_SIZES:
        data = random.Random(size).randbytes(size * 3 // 4)
        encoded = base64.b64encode(data).decode()
        command = f"printf '%s' '{encoded}' | base64 -d | sha256sum"
        run = bench.play(1, playbook("raw", command))
        row = next(iter(run.results.values()), {})
        if row.get("rc") == 0 and (row.get("stdout") or "").startswith(hashlib.sha256(data).hexdigest()):
            outcome = "ok, sha256 matches"
        else:
            detail = row.get("msg") or row.get("stderr") or f"no result, see {run.log}"
            outcome = f"FAILED status={row.get('status')} rc={row.get('rc')}: {str(detail).strip()[:160]}"
        print(f"  {len(encoded):>8} base64 chars ({len(command)} command chars): {outcome}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, action="append", help="host count, repeatable (default 100)")
    parser.add_argument("--payload-kb", type=int, default=100, help="payload size of the byte-exact check")
    parser.add_argument("--ssh-args", default=SSH_ARGS, help=f"ansible ssh_args (default {SSH_ARGS!r})")
    options = parser.parse_args()
    counts = options.hosts or [100]
    payload = payload_script(options.payload_kb)
    digest = hashlib.sha256(payload).hexdigest()
    payload_expected = (0, f"sha256={digest}\nargs=arg 1|args=arg2|\n{JINJA}\n", "")

    with tempfile.TemporaryDirectory(prefix="opsflow-bench-") as tmp, SshLab(Path(tmp) / "lab") as lab:
        bench = Bench(lab, Path(tmp) / "bench", options.ssh_args)
        print(f"{bench.version()}; nproc={len(os.sched_getaffinity(0))}; forks={FORKS}; sshd port {lab.port}")
        print(f"ssh_args: {options.ssh_args}")
        for hosts in counts:
            print(f"\n== {hosts} hosts ==")
            raw = bench.run_raw(hosts, TIMED_SCRIPT)
            script = bench.run_script(hosts, TIMED_SCRIPT)
            for label, run in (("(a) raw", raw), ("(b) script", script)):
                ok = sum(row["rc"] == 0 for row in run.results.values())
                print(f"  {label:<11} wall {run.seconds:7.2f}s  ({ok}/{hosts} hosts rc=0, rc={run.rc})")
            print(f"  ratio script/raw: {script.seconds / raw.seconds:.2f}")
            print("  correctness:")
            check("(a) raw    stdout/stderr/rc=3", bench.run_raw(hosts, IO_SCRIPT), hosts, IO_EXPECTED)
            check("(b) script stdout/stderr/rc=3", bench.run_script(hosts, IO_SCRIPT), hosts, IO_EXPECTED)
            label = f"{len(payload) // 1024} KiB payload sha256"
            check(f"(a) raw    {label}", bench.run_raw(hosts, payload), hosts, payload_expected)
            check(f"(b) script {label}", bench.run_script(hosts, payload), hosts, payload_expected)
        print()
        probe_raw_limit(bench)


if __name__ == "__main__":
    main()
