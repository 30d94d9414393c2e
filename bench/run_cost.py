"""Benchmark: what each part of the service's run adds to plain ``ansible-playbook``, in CPU and time.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.run_cost                      # 100 hosts, 3 rounds
    .venv/bin/python -m bench.run_cost --hosts 200 --rounds 4

It needs a Redis for the callback plugin's events (REDIS_URL, default redis://127.0.0.1:6379/11; that
database is emptied before and after) and starts a private sshd (``tests.sshd.SshLab``: every host is
its own 127.x.y.z address). One script (``echo hello``) is compiled for N hosts as a worker compiles a
slice (``compile_script``), then run in turns, each round in the order below, with forks 50:

  plain        ansible-playbook on the compiled playbook and inventory, host keys not checked
  known hosts  + the service's host key checking: accept-new against the project's known_hosts file
               (filled by a first run, as after a project's first run)
  callback     + the Opsflow callback plugin, pushing the run's events to Redis
  launcher     + the runs' ansible-playbook (plugins/launcher: Ansible's definition files from copies)
  niced        + the work horses' niceness (OPSFLOW_WORKER_NICE's default), which the launcher gives the
               run's session and each fork's: behind the sshd sessions serving the hosts, at their own
  runner       the service's own Runner, as a work horse calls it: ansible-runner with its display
               callback, the run's watchdog, the key file, the sandbox (bubblewrap, when it can run)
  unsandboxed  the same Runner without the sandbox

Each run's wall time and the CPU the whole machine took meanwhile (from /proc/stat: ansible-playbook,
ssh and its masters, the sshd sessions serving the hosts, and the Runner reading the run's output in
this process, as the work horse does); run it on a machine with nothing else running. ssh's
ControlPersist masters are ended after each run, outside the timing. It prints each variant's runs and
their medians against plain's. ``--accounting DIR`` (root, with Debian's ``acct``) records each run with
Linux process accounting into a file of its own in DIR and prints the CPU of ansible-playbook's main
process, of its forks, of ssh and of the sshd sessions, per run and as medians: which of the run's
processes a part makes dearer. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import accounting
from bench.app import emptied_redis, machine, machine_cpu_now
from bench.fanout import KEX_ARGS, SCRIPT, SSH_ARGS, close_masters
from tests.sshd import SshLab

FORKS = 50
STREAM = "opsflow:bench:run-cost"
VARIANTS = ("plain", "known hosts", "callback", "launcher", "niced", "runner", "unsandboxed")


ACCOUNTED = ("main", "forks", "ssh", "sshd")


@dataclasses.dataclass
class Measure:
    seconds: float
    machine_cpu: float
    ok: bool
    # CPU seconds of ACCOUNTED, from process accounting
    accounted: dict[str, float] = dataclasses.field(default_factory=dict)


def measured(run: Callable[[], bool]) -> Measure:
    machine_cpu = machine_cpu_now()
    start = time.monotonic()
    ok = run()
    seconds = time.monotonic() - start
    return Measure(seconds, machine_cpu_now() - machine_cpu, ok)


def accounted(path: Path) -> dict[str, float]:
    main, forks = accounting.ansible_playbook(path)
    commands = accounting.by_command(path)
    return {
        "main": main.cpu if main else 0.0,
        "forks": forks.cpu,
        "ssh": commands["ssh"].cpu if "ssh" in commands else 0.0,
        "sshd": sum(command.cpu for name, command in commands.items() if name.startswith("sshd")),
    }


class Bench:
    """The compiled slice, the service's settings and Runner, and a way to run each variant."""

    def __init__(self, workdir: Path, lab: SshLab, hosts: int, redis_url: str) -> None:
        os.environ.update(OPSFLOW_DATA_DIR=str(workdir / "data"), REDIS_URL=redis_url)
        from redis import Redis

        from app.config import HOST_KEY_ACCEPT_NEW, Settings
        from app.execution.compiler import Account, ScriptStep, Target, compile_script, to_ansible
        from app.execution.known_hosts import ProjectKnownHosts
        from app.execution.runner import DEFINITIONS_SCRIPT, PLAYBOOK, Runner, RunRequest

        self.lab = lab
        self.workdir = workdir
        settings = dataclasses.replace(
            Settings.from_env(), event_stream=STREAM, ssh_host_key_checking=HOST_KEY_ACCEPT_NEW
        )
        settings.data_dir.mkdir(mode=0o700)
        subprocess.run(
            [sys.executable, str(DEFINITIONS_SCRIPT), str(settings.ansible_definitions_dir)], check=True
        )
        targets = [Target(f"h{n:05d}", lab.address(n), lab.port) for n in range(hosts)]
        self.compiled = compile_script(ScriptStep("shell", SCRIPT), targets, Account(lab.user))
        self.request = RunRequest(
            slice_id=1,
            job_id=1,
            compiled=self.compiled,
            forks=FORKS,
            timeout=3600,
            private_key=lab.private_key,
            project_id=1,
            event_token="bench",
        )
        redis = Redis.from_url(redis_url)
        self.runners = {
            "runner": Runner(settings, redis),
            "unsandboxed": Runner(
                dataclasses.replace(settings, isolation_executable=str(workdir / "no-bubblewrap")), redis
            ),
        }
        self.settings = settings
        self.known_hosts = ProjectKnownHosts(settings.known_hosts_dir / "1").ensure()
        self.playbook = workdir / PLAYBOOK
        self.playbook.write_text(to_ansible(self.compiled.playbook))
        self.inventory = workdir / "inventory.yml"
        self.inventory.write_text(to_ansible(self.compiled.inventory))
        self.ansible_playbook = str(Path(sys.executable).with_name("ansible-playbook"))
        self.runs = 0

    def environment(self, variant: str, control_dir: Path) -> dict[str, str]:
        from app.execution.runner import CALLBACK_DIR, LAUNCHER_DIR

        env = {
            **os.environ,
            "ANSIBLE_SSH_ARGS": SSH_ARGS,
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_PRIVATE_KEY_FILE": str(self.lab.private_key_path),
            "ANSIBLE_NOCOLOR": "1",
        }
        step = VARIANTS.index(variant)
        if step >= VARIANTS.index("known hosts"):
            env["ANSIBLE_HOST_KEY_CHECKING"] = "True"
            env["ANSIBLE_SSH_ARGS"] = (
                "-o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=15 -o LogLevel=ERROR"
                f" -o StrictHostKeyChecking=accept-new -o UserKnownHostsFile={self.known_hosts}"
                " -o HashKnownHosts=no -o UpdateHostKeys=no"
            ) + KEX_ARGS
        if step >= VARIANTS.index("callback"):
            env.update(
                ANSIBLE_CALLBACK_PLUGINS=str(CALLBACK_DIR),
                ANSIBLE_CALLBACKS_ENABLED="opsflow",
                OPSFLOW_REDIS_URL=os.environ["REDIS_URL"],
                OPSFLOW_EVENT_STREAM=STREAM,
                OPSFLOW_SLICE_ID="1",
                OPSFLOW_SLICE_TOKEN="bench",
                OPSFLOW_OUTPUT_CAP_BYTES=str(self.settings.output_cap_bytes),
            )
        if step >= VARIANTS.index("launcher"):
            # As the service starts it: the launcher's `python3` is the virtualenv's.
            env["PATH"] = os.pathsep.join(
                [str(LAUNCHER_DIR), str(Path(sys.executable).parent), env.get("PATH", "")]
            )
            env["OPSFLOW_ANSIBLE_DEFINITIONS"] = str(self.settings.ansible_definitions_dir)
        return env

    def run(self, variant: str) -> Measure:
        self.runs += 1
        if variant in self.runners:
            from app.status import RunStatus

            runner = self.runners[variant]
            return measured(lambda: runner.run(self.request).status == RunStatus.SUCCESS)
        control_dir = Path(tempfile.mkdtemp(prefix="opsflow-cp-", dir="/tmp"))
        step = VARIANTS.index(variant)
        command = ["ansible-playbook" if step >= VARIANTS.index("launcher") else self.ansible_playbook]
        if variant == "niced":
            command = ["nice", "-n", str(self.settings.worker_nice), *command]
        env = self.environment(variant, control_dir)
        log = self.workdir / f"run-{self.runs:03d}.log"
        with log.open("wb") as out:
            measure = measured(
                lambda: (
                    subprocess.run(
                        [*command, "-i", str(self.inventory), "-f", str(FORKS), str(self.playbook)],
                        cwd=self.workdir,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    ).returncode
                    == 0
                )
            )
        close_masters(control_dir)
        with contextlib.suppress(OSError):
            control_dir.rmdir()
        return measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", action="append", choices=VARIANTS, help="variants to run (repeatable)")
    accounting.add_option(parser)
    options = parser.parse_args()
    accounting.prepare(parser, options.accounting)
    variants = [variant for variant in VARIANTS if not options.only or variant in options.only]
    if "plain" not in variants:
        variants.insert(0, "plain")
    load = os.getloadavg()
    results: dict[str, list[Measure]] = {variant: [] for variant in variants}
    with (
        emptied_redis("redis://127.0.0.1:6379/11") as redis_url,
        tempfile.TemporaryDirectory(prefix="opsflow-run-cost-") as tmp,
        SshLab(Path(tmp) / "lab") as lab,
    ):
        bench = Bench(Path(tmp), lab, options.hosts, redis_url)
        print(machine(), flush=True)
        print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
        # The known_hosts file as after the project's first run; the first runs warm the caches too.
        bench.run("runner")
        bench.run("plain")
        for round_number in range(1, options.rounds + 1):
            for variant in variants:
                name = f"{variant.replace(' ', '-')}-{round_number}"
                with accounting.recorded_in(options.accounting, name) as path:
                    measure = bench.run(variant)
                if path:
                    measure.accounted = accounted(path)
                results[variant].append(measure)
                split = ", ".join(f"{name} {cpu:.2f}" for name, cpu in measure.accounted.items())
                print(
                    f"  round {round_number} {variant:<12} {measure.seconds:6.2f} s"
                    f"  machine cpu {measure.machine_cpu:6.2f} s"
                    f"{f'  accounted cpu s: {split}' if split else ''}"
                    f"{'' if measure.ok else '  FAILED'}",
                    flush=True,
                )
    load = os.getloadavg()
    print(f"\n{options.hosts} hosts, forks {FORKS}; load average at the end {load[0]:.2f}")
    print(
        f"{'variant':<12} {'median s':>8} {'ratio':>6} {'machine cpu s':>13} {'ratio':>6}"
        "   runs (s / machine cpu s)"
    )
    plain_seconds = statistics.median(m.seconds for m in results["plain"])
    plain_cpu = statistics.median(m.machine_cpu for m in results["plain"])
    for variant, measures in results.items():
        seconds = statistics.median(m.seconds for m in measures)
        cpu = statistics.median(m.machine_cpu for m in measures)
        runs = ", ".join(f"{m.seconds:.2f}/{m.machine_cpu:.2f}" for m in measures)
        print(
            f"{variant:<12} {seconds:>8.2f} {seconds / plain_seconds:>6.3f} {cpu:>13.2f}"
            f" {cpu / plain_cpu:>6.3f}   {runs}"
        )
    if options.accounting:
        print(f"\nmedian accounted CPU s: {'variant':<12} " + " ".join(f"{name:>7}" for name in ACCOUNTED))
        for variant, measures in results.items():
            medians = (statistics.median(m.accounted[name] for m in measures) for name in ACCOUNTED)
            print(f"{'':23}{variant:<12} " + " ".join(f"{cpu:7.2f}" for cpu in medians))


if __name__ == "__main__":
    main()
