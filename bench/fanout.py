"""Benchmark: one script on N hosts, plain ``ansible-playbook`` vs the Opsflow service end to end.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.fanout                                   # 100 and 500 hosts
    .venv/bin/python -m bench.fanout --hosts 100 --hosts 500 --hosts 1000
    .venv/bin/python -m bench.fanout --hosts 500 --slice-size 1000     # one slice

It starts a private sshd (``tests.sshd.SshLab``; every host is its own 127.x.y.z address) and the
service itself (``python -m app.cli run``: embedded Redis unless REDIS_URL is set, SQLite in a
temporary data dir, gunicorn, RQ workers, the ingester). For each host count N it creates N hosts
and an account in a fresh project (not timed), then times, twice each and interleaved:

  plain    ``ansible-playbook`` from the virtualenv running the same task the service runs (the
           compiler's one ``raw`` command around ``echo hello``), gather_facts false, the same
           forks and the service's ssh args; a fresh ControlPath dir per run (the
           ControlPersist masters are closed after the run, outside the timing). Wall time of the
           subprocess.
  service  from just before POST /script-executions until the job's ``ended_at`` (the service's
           own clock, on this machine), i.e. until the ingester has written every host result and
           the job is final; GET /jobs/{id} is polled every 2 s to find it ended. The job's counts
           are checked: every host should be ``success``.

A warm-up (two 1-host jobs, so both RQ workers have run once) comes before any timing. The figures
are printed; nothing passes or fails. Per service run it also prints a timeline taken from the
API's timestamps (slice claimed, first host start, last host end, slice ended, job ended), which
shows where the service's time goes, and the CPU seconds each side spent: plain's ansible-playbook with
everything it started, the service's per kind of process (a worker counts the work horses and
ansible-playbook trees it reaped; gunicorn, the ingester, Redis). On 2 cores a run is CPU-bound, so CPU
the service spends beside Ansible is wall time. Both sides also print the CPU the whole machine took
meanwhile (/proc/stat: the sshd sessions serving the hosts too, and the service's poll), which tells
extra work (more CPU) from waiting (cores left idle). The summary gives the better run of each side,
their ratio, and the median of each pair's ratio (a pair runs back to back, so it shares the machine's
speed of the moment). ``--trace`` adds, per slice, the RQ job's timestamps and the mtimes of
ansible-runner's artifacts (``command`` just before ansible-playbook starts, ``rc`` just after it exits);
it sets OPSFLOW_KEEP_RUN_DIRS=1 for that, so run dirs are kept, not removed.

``--accounting DIR`` (root, with Debian's ``acct``) turns Linux process accounting on around each
timed run, into a file of its own in DIR: until plain's ControlPersist masters are closed, and until
the service's job is seen ended, each then 1 s more for the processes ending to be written. It prints
each run's commands by CPU (ansible-playbook's forks, ssh, the sshd sessions serving the hosts, the
sandbox, a work horse...) and, in the summary, each command's median CPU on both sides: the CPU one
side's run took more than the other's, by what took it. The long-lived processes of the service are
not in it (they do not end); they are in its "beside the run" figure.

The service caps forks at OPSFLOW_FORKS_MAX (default 50); with ``--forks`` above that, the
benchmark raises the cap for its service so both sides really run with the same forks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from app.config import ROOT, Settings, embedded_redis_urls, kex_algorithms
from app.execution.compiler import ScriptStep, Unsafe, posix_command, to_ansible
from bench import accounting
from bench.app import machine_cpu_now
from tests.sshd import SshLab

FINAL = {"success", "failed", "timeout", "terminated", "abnormal"}
# Polling is the API serving GETs on the same 2 cores as the run (about 14 ms of CPU each on a slow
# machine), and the service's time ends at the job's own ended_at whenever the poll sees it: seldom.
POLL_SECONDS = 2.0
SCRIPT = "echo hello"
# The service's ssh arguments, with its key exchange setting: the service started here reads the
# same environment.
KEX_ALGORITHMS = kex_algorithms(os.environ.get("OPSFLOW_SSH_KEX_ALGORITHMS"))
KEX_ARGS = f" -o KexAlgorithms={KEX_ALGORITHMS}" if KEX_ALGORITHMS else ""
SSH_ARGS = (
    "-o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=15 "
    "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
) + KEX_ARGS
SETUP_THREADS = 8
# The service's first start makes the admin with this token (its data dir is the benchmark's own).
ADMIN_TOKEN = "opf_bench-" + secrets.token_urlsafe(16)
DEFAULT_SLICE_SIZE = Settings.__dataclass_fields__["slice_size"].default
DEFAULT_FORKS_MAX = Settings.__dataclass_fields__["forks_max"].default
# The same task the service runs: the script in the compiler's one raw command.
PLAYBOOK = to_ansible(
    [
        {
            "name": "fanout",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "run script",
                    "raw": Unsafe(posix_command(ScriptStep("shell", SCRIPT), over_ssh=True)),
                }
            ],
        }
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def parse_ts(value: str | None) -> float | None:
    return None if not value else datetime.fromisoformat(value).timestamp()


class Api:
    """A tiny JSON client of the service's API (loopback only)."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.token = token

    def call(self, method: str, path: str, body: Any = None, retries: int = 5) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        for attempt in range(retries + 1):
            request = urllib.request.Request(
                self.base + path,
                data=data,
                method=method,
                headers={"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"},
            )
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    return response.status, json.loads(response.read() or b"null")
            except urllib.error.HTTPError as exc:
                payload = exc.read()
                # SQLite may answer "database is locked" under concurrent setup writes: try again.
                if exc.code >= 500 and attempt < retries:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise RuntimeError(f"{method} {path}: HTTP {exc.code}: {payload[:500]!r}") from None
        raise AssertionError("unreachable")

    def get(self, path: str) -> Any:
        return self.call("GET", path)[1]

    def post(self, path: str, body: Any) -> Any:
        return self.call("POST", path, body)[1]


@dataclass
class ServiceRun:
    seconds: float
    status: str
    counts: dict[str, int]
    slices: list[dict]
    timeline: dict[str, float | None] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    machine_cpu: float = 0.0


class Service:
    """The service under test, as a subprocess of this benchmark."""

    def __init__(self, workdir: Path, slice_size: int | None, forks: int, trace: bool = False) -> None:
        self.workdir = workdir
        self.data_dir = workdir / "data"
        self.port = free_port()
        self.log_path = workdir / "service.log"
        self.trace = trace
        env = {
            **os.environ,
            "OPSFLOW_DATA_DIR": str(self.data_dir),
            "PORT": str(self.port),
            "OPSFLOW_ADMIN_TOKEN": ADMIN_TOKEN,
            # The benchmark measures one launch at a time; never hold one back.
            "OPSFLOW_PROJECT_RUNNING_LIMIT": "0",
        }
        env.pop("HOST", None)
        if trace:
            env["OPSFLOW_KEEP_RUN_DIRS"] = "1"
        if slice_size is not None:
            env["OPSFLOW_SLICE_SIZE"] = str(slice_size)
        if forks > int(env.get("OPSFLOW_FORKS_MAX") or DEFAULT_FORKS_MAX):
            env["OPSFLOW_FORKS_MAX"] = str(forks)
        self.env = env
        self.api = Api(f"http://127.0.0.1:{self.port}/api/v1", ADMIN_TOKEN)
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> float:
        started = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "run"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with {self.process.returncode}; see {self.log_path}")
            with contextlib.suppress(Exception):
                if self.api.call("GET", "/health", retries=0)[0] == 200:
                    return time.monotonic() - started
            if time.monotonic() > deadline:
                raise RuntimeError(f"the service did not answer /health in {timeout}s; see {self.log_path}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def setup_project(self, name: str, lab: SshLab, hosts: int) -> tuple[int, list[int], int]:
        """A fresh project with `hosts` hosts and the lab's account: (project id, host ids, account id)."""
        pid = self.api.post("/projects", {"name": name})["id"]

        def create(n: int) -> int:
            body = {"name": f"h{n:05d}", "address": lab.address(n), "port": lab.port}
            return self.api.post(f"/projects/{pid}/hosts", body)["id"]

        with ThreadPoolExecutor(SETUP_THREADS) as pool:
            host_ids = list(pool.map(create, range(hosts)))
        account = {"name": "lab", "username": lab.user, "private_key": lab.private_key}
        account_id = self.api.post(f"/projects/{pid}/accounts", account)["id"]
        return pid, host_ids, account_id

    def launch(self, pid: int, host_ids: list[int], account_id: int, forks: int) -> dict:
        body = {
            "script": {"content": SCRIPT, "language": "shell"},
            "targets": {"hosts": host_ids},
            "account_id": account_id,
            "forks": forks,
        }
        # No retry here: a retried POST could start a second job.
        return self.api.call("POST", f"/projects/{pid}/script-executions", body, retries=0)[1]

    def wait(self, pid: int, jid: int, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            job = self.api.get(f"/projects/{pid}/jobs/{jid}")
            if job["status"] in FINAL or time.monotonic() > deadline:
                return job
            time.sleep(POLL_SECONDS)

    def host_results(self, pid: int, jid: int) -> list[dict]:
        results, page = [], 1
        while True:
            chunk = self.api.get(f"/projects/{pid}/jobs/{jid}/host-results?page={page}&page_size=100")
            results.extend(chunk)
            if len(chunk) < 100:
                return results
            page += 1

    def redis(self):
        from redis import Redis

        return Redis.from_url(os.environ.get("REDIS_URL") or embedded_redis_urls(self.data_dir)[0])

    def rq_jobs(self) -> set[str]:
        from rq.registry import FinishedJobRegistry

        queue = Settings.__dataclass_fields__["queue_name"].default
        return set(FinishedJobRegistry(queue, connection=self.redis()).get_job_ids())

    def slice_trace(self, before: set[str], t0: float) -> list[dict[str, float | None]]:
        """Per slice of the last run: RQ timestamps and ansible-runner artifact mtimes, relative to t0."""
        from rq.job import Job

        connection = self.redis()
        traces = []
        for job_id in sorted(self.rq_jobs() - before, key=lambda name: int(name.rsplit("-", 1)[1])):
            job = Job.fetch(job_id, connection=connection)
            slice_id = job.args[0]
            moments = {
                "enqueued": job.enqueued_at,
                "rq_start": job.started_at,
                "rq_end": job.ended_at,
            }
            row: dict[str, float | None] = {
                name: None if moment is None else aware(moment).timestamp() - t0
                for name, moment in moments.items()
            }
            artifacts = next(iter(self.data_dir.glob(f"runs/{slice_id}-*/artifacts/run")), None)
            for name in ("command", "rc"):
                path = artifacts / name if artifacts else None
                row[name] = path.stat().st_mtime - t0 if path and path.exists() else None
            traces.append(row)
        return traces

    def cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of each long-lived process of the service, with the children it reaped (a
        worker's work horses and their ansible-playbook trees), keyed by what the process is."""
        seconds: dict[str, float] = {}
        for proc in [psutil.Process(self.process.pid), *psutil.Process(self.process.pid).children(True)]:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                spent = times.user + times.system + times.children_user + times.children_system
                seconds[f"{proc.pid} {role(proc.cmdline())}"] = spent
        return seconds

    def run(self, pid: int, host_ids: list[int], account_id: int, forks: int) -> ServiceRun:
        before = self.rq_jobs() if self.trace else set()
        cpu_before = self.cpu_seconds()
        machine_before = machine_cpu_now()
        t0 = time.time()
        start = time.monotonic()
        job = self.launch(pid, host_ids, account_id, forks)
        posted = time.monotonic()
        job = self.wait(pid, job["id"], timeout=300 + len(host_ids))
        seen = time.monotonic() - start
        machine_cpu = machine_cpu_now() - machine_before
        slices = job["steps"][0]["slices"] if job.get("steps") else []
        results = self.host_results(pid, job["id"])
        starts = [t for t in (parse_ts(r["started_at"]) for r in results) if t is not None]
        ends = [t for t in (parse_ts(r["ended_at"]) for r in results) if t is not None]

        def rel(value: float | None) -> float | None:
            return None if value is None else value - t0

        timeline = {
            "post": posted - start,
            "claim": rel(min((parse_ts(s["started_at"]) or 1e20 for s in slices), default=None)),
            "first_host": rel(min(starts, default=None)),
            "last_host": rel(max(ends, default=None)),
            "slice_end": rel(max((parse_ts(s["ended_at"]) or 0 for s in slices), default=None)),
            "job_end": rel(parse_ts(job.get("ended_at"))),
            "seen": seen,
        }
        for piece in slices:
            piece["rel"] = (rel(parse_ts(piece["started_at"])), rel(parse_ts(piece["ended_at"])))
        counts = {k: v for k, v in job["counts"].items() if v}
        cpu: dict[str, float] = {}
        for key, spent in self.cpu_seconds().items():
            name = key.split(" ", 1)[1]
            cpu[name] = cpu.get(name, 0.0) + spent - cpu_before.get(key, 0.0)
        run = ServiceRun(
            timeline["job_end"] or seen, job["status"], counts, slices, timeline, cpu, machine_cpu
        )
        if self.trace:
            # RQ writes a job's end after run_slice returns: give it a moment.
            time.sleep(1.0)
            for piece, row in zip(slices, self.slice_trace(before, t0), strict=False):
                piece["trace"] = row
        return run


class Plain:
    """Plain ansible-playbook runs against the lab, each in a directory of its own."""

    def __init__(self, lab: SshLab, workdir: Path) -> None:
        self.lab = lab
        self.workdir = workdir
        self.workdir.mkdir(parents=True)
        self.ansible_playbook = str(Path(sys.executable).with_name("ansible-playbook"))
        self.runs = 0
        (workdir / "play.yml").write_text(PLAYBOOK)

    def version(self) -> str:
        out = subprocess.run([self.ansible_playbook, "--version"], capture_output=True, text=True)
        first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else "?"
        return first.replace("ansible-playbook ", "ansible-core ").replace("[core ", "").rstrip("]")

    def inventory(self, hosts: int) -> Path:
        path = self.workdir / f"inventory-{hosts}.json"
        if not path.exists():
            path.write_text(json.dumps(self.lab.inventory(hosts)))
        return path

    def run(self, hosts: int, forks: int) -> tuple[float, int, Path, float, float, float]:
        """(wall seconds, rc, log, seconds spent closing the ControlPersist masters afterwards, CPU seconds
        of ansible-playbook and everything it started, CPU seconds of the whole machine meanwhile)."""
        self.runs += 1
        rundir = self.workdir / f"run-{self.runs:03d}"
        control_dir = rundir / "cp"
        control_dir.mkdir(parents=True)
        env = {
            **os.environ,
            "ANSIBLE_HOST_KEY_CHECKING": "False",
            "ANSIBLE_SSH_ARGS": SSH_ARGS,
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control_dir),
            "ANSIBLE_NOCOLOR": "1",
        }
        command = [self.ansible_playbook, "-i", str(self.inventory(hosts)), "-f", str(forks), "../play.yml"]
        log = rundir / "ansible.log"
        with log.open("wb") as out:
            cpu_before, machine_before = children_cpu_seconds(), machine_cpu_now()
            start = time.monotonic()
            proc = subprocess.run(command, cwd=rundir, env=env, stdout=out, stderr=subprocess.STDOUT)
            seconds = time.monotonic() - start
            cpu, machine_cpu = children_cpu_seconds() - cpu_before, machine_cpu_now() - machine_before
        start = time.monotonic()
        close_masters(control_dir)
        return seconds, proc.returncode, log, time.monotonic() - start, cpu, machine_cpu


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def role(cmdline: list[str]) -> str:
    """What a process of the service is, from its command line."""
    text = " ".join(cmdline)
    for word in ("gunicorn", "redis-server", "worker", "ingest", "engine", "scheduler", "app.cli run"):
        if word in text:
            return word
    return cmdline[0] if cmdline else "?"


def close_masters(control_dir: Path) -> None:
    """End the ControlPersist masters of one plain run, so runs never share connections."""
    mark = str(control_dir)
    masters = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if mark in " ".join(proc.info["cmdline"] or []):
                masters.append(proc)
    for proc in masters:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.terminate()
    psutil.wait_procs(masters, timeout=5)


def show_accounting(path: Path) -> dict[str, accounting.Command]:
    commands = accounting.by_command(path)
    top = sorted(commands.items(), key=lambda item: -item[1].cpu)[:8]
    total = sum(command.cpu for command in commands.values())
    listed = ", ".join(f"{name} {command.processes}x {command.cpu:.2f}s" for name, command in top)
    print(f"        accounted {total:.2f}s in ended processes: {listed}", flush=True)
    return commands


def median_cpu(runs: list[dict[str, accounting.Command]], name: str) -> float:
    return statistics.median(run[name].cpu if name in run else 0.0 for run in runs)


def median_count(runs: list[dict[str, accounting.Command]], name: str) -> int:
    return int(statistics.median(run[name].processes if name in run else 0 for run in runs))


def aware(moment: datetime) -> datetime:
    """RQ's datetimes are UTC, with or without a zone depending on the version."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def describe(run: ServiceRun, hosts: int) -> str:
    t = run.timeline
    ok = run.counts.get("success", 0) == hosts and run.status == "success"
    check = "all success" if ok else f"CHECK: status={run.status} counts={run.counts}"
    parts = [
        f"post {fmt(t['post'])}",
        f"claim {fmt(t['claim'])}",
        f"1st host {fmt(t['first_host'])}",
        f"last host {fmt(t['last_host'])}",
        f"slice end {fmt(t['slice_end'])}",
        f"job end {fmt(t['job_end'])}",
        f"seen {fmt(t['seen'])}",
    ]
    slices = "; ".join(
        f"#{s['index']} {s['host_count']}h {fmt(s['rel'][0])}->{fmt(s['rel'][1])} {s.get('worker', '')}"
        for s in run.slices
    )
    cpu = ", ".join(f"{name} {spent:.2f}" for name, spent in sorted(run.cpu.items()) if spent >= 0.01)
    text = (
        f"{run.seconds:6.2f}s {check}\n"
        f"        timeline (s after POST): {', '.join(parts)}\n"
        f"        slices: {slices}\n"
        f"        cpu {sum(run.cpu.values()):.2f}s beside the run: {cpu}\n"
        f"        machine cpu {run.machine_cpu:.2f}s until seen"
    )
    for piece in run.slices:
        row = piece.get("trace")
        if row:
            steps = ", ".join(f"{name} {fmt(value)}" for name, value in row.items())
            text += f"\n        trace #{piece['index']} (s after POST): {steps}"
    return text


def machine() -> dict[str, str]:
    mem_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal")
    )
    return {
        "nproc": str(len(os.sched_getaffinity(0))),
        "memory": f"{mem_kib / 1024 / 1024:.1f} GiB",
        "python": platform.python_version(),
        "cpu": next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            platform.machine(),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--hosts", type=int, action="append", help="host count, repeatable (default 100 and 500)"
    )
    parser.add_argument("--forks", type=int, default=50, help="forks of both sides (default 50)")
    parser.add_argument(
        "--slice-size",
        type=int,
        default=None,
        help=f"OPSFLOW_SLICE_SIZE of the service (default: the service's, {DEFAULT_SLICE_SIZE})",
    )
    parser.add_argument(
        "--repeat", type=int, default=2, help="timed runs per side and host count (default 2)"
    )
    accounting.add_option(parser)
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also print per-slice RQ and ansible-runner timestamps (sets OPSFLOW_KEEP_RUN_DIRS=1)",
    )
    options = parser.parse_args()
    accounting.prepare(parser, options.accounting)
    counts = options.hosts or [100, 500]
    slice_size = options.slice_size or int(os.environ.get("OPSFLOW_SLICE_SIZE") or DEFAULT_SLICE_SIZE)
    load = os.getloadavg()
    info = machine()

    rows = []
    # Per host count: each plain run's and each service run's commands, from process accounting.
    accounted: dict[int, tuple[list, list]] = {}
    with tempfile.TemporaryDirectory(prefix="opsflow-fanout-") as tmp, SshLab(Path(tmp) / "lab") as lab:
        plain = Plain(lab, Path(tmp) / "plain")
        service = Service(Path(tmp), options.slice_size, options.forks, options.trace)
        print(
            f"nproc={info['nproc']}  memory={info['memory']}  cpu={info['cpu']}\n"
            f"python {info['python']}  {plain.version()}\n"
            f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n"
            f"redis: {'REDIS_URL from the environment' if os.environ.get('REDIS_URL') else 'embedded'}; "
            f"sshd port {lab.port}; forks {options.forks}; slice size {slice_size}",
            flush=True,
        )
        try:
            print(f"service up in {service.start():.1f}s on port {service.port}", flush=True)
            pid, hids, aid = service.setup_project("fanout-warmup", lab, 2)
            start = time.monotonic()
            jobs = [service.launch(pid, [hid], aid, 1) for hid in hids]
            warm = [service.wait(pid, job["id"], 120)["status"] for job in jobs]
            print(f"warm-up: two 1-host jobs {warm} in {time.monotonic() - start:.2f}s", flush=True)
            plain.run(1, options.forks)

            for hosts in counts:
                pid, hids, aid = service.setup_project(f"fanout-{hosts}", lab, hosts)
                print(f"\n== {hosts} hosts ==", flush=True)
                plains, services = [], []
                plain_commands, service_commands = [], []
                for attempt in range(1, options.repeat + 1):
                    with accounting.recorded_in(options.accounting, f"plain-{hosts}-{attempt}") as record:
                        seconds, rc, log, closing, cpu, machine_cpu = plain.run(hosts, options.forks)
                    plains.append(seconds)
                    print(
                        f"  plain   #{attempt}: {seconds:6.2f}s  rc={rc}  cpu {cpu:.2f}s"
                        f"  machine cpu {machine_cpu:.2f}s  (then "
                        f"{closing:.2f}s, not timed, to close its ControlPersist masters; log {log})",
                        flush=True,
                    )
                    if record:
                        plain_commands.append(show_accounting(record))
                    with accounting.recorded_in(options.accounting, f"service-{hosts}-{attempt}") as record:
                        run = service.run(pid, hids, aid, options.forks)
                    services.append(run)
                    print(f"  service #{attempt}: {describe(run, hosts)}", flush=True)
                    if record:
                        service_commands.append(show_accounting(record))
                if options.accounting:
                    accounted[hosts] = (plain_commands, service_commands)
                rows.append((hosts, len(services[0].slices), plains, [run.seconds for run in services]))
        finally:
            service.stop()

    print(
        f"\nfan-out of `{SCRIPT}` (nproc {info['nproc']}, python {info['python']}, {plain.version()}, "
        f"load average at start {load[0]:.2f})"
    )
    header = (
        f"{'N':>5} {'forks':>5} {'slice':>5} {'slices':>6} {'plain s':>8} {'service s':>9} {'ratio':>6}"
        f" {'pair ratio':>10}   raw plain / raw service"
    )
    print(header)
    for hosts, slices, plains, services in rows:
        best_plain, best_service = min(plains), min(services)
        raw = f"{' '.join(f'{s:.2f}' for s in plains)} / {' '.join(f'{s:.2f}' for s in services)}"
        print(
            f"{hosts:>5} {options.forks:>5} {slice_size:>5} {slices:>6} {best_plain:>8.2f} "
            f"{best_service:>9.2f} {best_service / best_plain:>6.2f}"
            f" {statistics.median(s / p for p, s in zip(plains, services, strict=True)):>10.2f}   {raw}"
        )
    for hosts, (plain_runs, service_runs) in accounted.items():
        print(f"\nprocess accounting at {hosts} hosts, median CPU s per run: plain / service (processes)")
        for name in sorted(
            {name for run in plain_runs + service_runs for name in run},
            key=lambda name: -max(median_cpu(plain_runs, name), median_cpu(service_runs, name)),
        ):
            plain_cpu, service_cpu = median_cpu(plain_runs, name), median_cpu(service_runs, name)
            if max(plain_cpu, service_cpu) >= 0.05:
                print(
                    f"  {name:<16} {plain_cpu:7.2f} / {service_cpu:7.2f}  {service_cpu - plain_cpu:+7.2f}"
                    f"   ({median_count(plain_runs, name)} / {median_count(service_runs, name)})"
                )


if __name__ == "__main__":
    main()
