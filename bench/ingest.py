"""Benchmark: how many events per second the ingester writes, and exactly-once across a SIGKILL.

Run it from the repository root, with the project's virtualenv::

    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python -m bench.ingest           # SQLite
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test REDIS_URL=... .venv/bin/python -m bench.ingest
    REDIS_URL=... .venv/bin/python -m bench.ingest --kill                          # SIGKILL mid-stream

It needs a Redis (REDIS_URL, default redis://127.0.0.1:6379/3; that database is emptied before and after).
Through the application (Flask's test client) it imports --hosts hosts, saves a job template whose one
step is a playbook of --tasks tasks, and launches it: the job instance, its slices and host results are
written as for any launch. No worker runs: the benchmark claims each slice as a worker does (the slice
running, its heartbeat kept) and plays each slice's run through the callback plugin itself, loaded from
plugins/callback/opsflow.py with Ansible's own host and task objects: for each task and each host a
start and a result, then the play recap, each slice pushing to the event stream in the plugin's batches
(--batch events per XADD, the plugin's own size by default) and its `slice_done` last, as the worker
publishes it. All of it is in the stream before the ingester starts.

Then it starts the real ingester (`python -m app.cli ingest`) and times it from its first read until the
stream is drained (every entry delivered and acknowledged): events, seconds, events per second. With
--kill, the ingester is killed with SIGKILL once half of the stream has been read and a read is being
applied, started again (the same consumer name, as `make run` restarts it), and timed to the end. Either
way it then counts what the database holds: task results (each host's tasks once each), host results
final, the slices and the job instance. --profile FILE runs the ingester under cProfile (its stats are
written when it stops). Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis as redis_lib
from sqlalchemy import func, select

from bench.app import api_caller, application, emptied_redis, machine

PLUGIN = Path(__file__).resolve().parent.parent / "plugins" / "callback" / "opsflow.py"
POLL_SECONDS = 0.05


def load_plugin() -> Any:
    """The callback plugin's module, loaded as ansible-playbook loads it: a file, apart from the service."""
    spec = importlib.util.spec_from_file_location("opsflow_callback", PLUGIN)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Result:
    """What the plugin reads of Ansible's result for a callback: the host, the task and the result."""

    def __init__(self, host: Any, task: Any, data: dict[str, Any]) -> None:
        self._host, self._task, self._result = host, task, data


def playbook(tasks: int) -> str:
    lines = ["- hosts: all", "  gather_facts: false", "  tasks:"]
    for number in range(1, tasks + 1):
        lines += [f"    - name: step {number}", f"      command: echo step {number}"]
    return "\n".join(lines) + "\n"


def inventory(hosts: int) -> str:
    return f"[fleet]\nnode[{0:05d}:{hosts - 1:05d}].example.com\n"


def launch(call, hosts: int, tasks: int) -> dict:
    """A launched job instance whose one playbook step runs on every host."""
    pid = call("POST", "/projects", {"name": "ingest"}, 201)["id"]
    call("POST", f"/projects/{pid}/inventories/import", {"format": "ini", "content": inventory(hosts)})
    [group] = [group for group in call("GET", f"/projects/{pid}/groups") if group["name"] == "fleet"]
    account = call("POST", f"/projects/{pid}/accounts", {"name": "a", "username": "nobody"}, 201)["id"]
    step = {
        "key": "play",
        "name": "play",
        "type": "playbook",
        "playbook": {"content": playbook(tasks)},
        "targets": {"groups": [group["id"]]},
        "account_id": account,
        "timeout": 3600,
    }
    template = call("POST", f"/projects/{pid}/job-templates", {"name": "play", "steps": [step]}, 201)
    job = call("POST", f"/projects/{pid}/job-templates/{template['id']}/launch", {"variables": {}}, 202)
    return {"project": pid, **job}


def feed(
    client: redis_lib.Redis, stream: str, claimed: dict[int, Any], tasks: int, batch: int, stdout: int
) -> int:
    """Play every slice's run through the callback plugin into the stream; returns the events pushed."""
    from ansible.executor.stats import AggregateStats
    from ansible.inventory.host import Host
    from ansible.playbook.task import Task

    from app.extensions import db
    from app.models import HostResult, RunStatus
    from app.services.executions import publish_slice_done

    plugin = load_plugin()
    runs = []
    for slice_id, request in claimed.items():
        os.environ.update(
            OPSFLOW_SLICE_ID=str(slice_id),
            OPSFLOW_SLICE_TOKEN=request.event_token,
            OPSFLOW_EVENT_STREAM=stream,
        )
        callback = plugin.CallbackModule()
        callback.redis = client
        names = db.session.scalars(select(HostResult.host_name).where(HostResult.slice_id == slice_id)).all()
        runs.append((slice_id, callback, [Host(name) for name in names], AggregateStats()))
    steps = [Task.load({"name": f"step {n}", "command": f"echo step {n}"}) for n in range(1, tasks + 1)]
    for number, task in enumerate(steps, 1):
        for _, callback, hosts, stats in runs:
            for host in hosts:
                callback.v2_runner_on_start(host, task)
                text = f"{host.name} step {number}\n".ljust(stdout, ".")
                data = {"changed": True, "rc": 0, "stdout": text, "stderr": "", "cmd": task.args}
                stats.increment("ok", host.name)
                stats.increment("changed", host.name)
                callback.v2_runner_on_ok(Result(host, task, data))
                if len(callback.buffer) >= batch:
                    callback._push()
    for slice_id, callback, _, stats in runs:
        callback.v2_playbook_on_stats(stats)
        publish_slice_done(slice_id, RunStatus.SUCCESS)
    # A start and a result per host and task; a recap and a slice_done per slice.
    return 2 * sum(len(hosts) for _, _, hosts, _ in runs) * tasks + 2 * len(runs)


def start_ingester(log_dir: Path, profile: str | None = None) -> subprocess.Popen:
    log = open(log_dir / "ingester.log", "ab")  # noqa: SIM115 - kept open for the process
    profiler = ["-m", "cProfile", "-o", profile] if profile else []
    return subprocess.Popen(
        [sys.executable, *profiler, "-m", "app.cli", "ingest"],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def first_read(client: redis_lib.Redis, stream: str, group: str) -> float:
    """When the ingester's first read of the stream happened (its consumer appears in the group)."""
    while True:
        with contextlib.suppress(redis_lib.ResponseError):
            if client.xinfo_consumers(stream, group):
                return time.perf_counter()
        time.sleep(POLL_SECONDS / 5)


def group_info(client: redis_lib.Redis, stream: str) -> dict[str, Any]:
    from app.execution.ingest import GROUP

    return next(info for info in client.xinfo_groups(stream) if info["name"].decode() == GROUP)


def drained(client: redis_lib.Redis, stream: str) -> bool:
    """Every entry of the stream delivered to the ingester and acknowledged."""
    info = group_info(client, stream)
    return (
        info["last-delivered-id"] == client.xinfo_stream(stream)["last-generated-id"] and not info["pending"]
    )


def mid_stream(client: redis_lib.Redis, stream: str, entries: int) -> bool:
    """Half of the stream's entries or more have been read, and a read is being applied: a kill now lands
    in the middle of a batch."""
    info = group_info(client, stream)
    return info["entries-read"] >= entries // 2 and info["pending"] > 0


def wait_until(check, process: subprocess.Popen) -> float:
    while not check():
        if process.poll() is not None:
            raise SystemExit(f"the ingester exited with status {process.returncode}")
        time.sleep(POLL_SECONDS)
    return time.perf_counter()


def counted(job_id: int) -> dict[str, Any]:
    """What the database holds of the job: task results per host, host and slice statuses."""
    from app.extensions import db
    from app.models import HostResult, JobInstance, Slice, StepInstance, TaskResult

    db.session.rollback()
    per_host = (
        select(
            HostResult.id, func.count(TaskResult.id).label("tasks"), func.count(func.distinct(TaskResult.seq))
        )
        .outerjoin(TaskResult, TaskResult.host_result_id == HostResult.id)
        .where(HostResult.job_instance_id == job_id)
        .group_by(HostResult.id)
        .subquery()
    )
    rows, least, most, distinct = db.session.execute(
        select(func.sum(per_host.c.tasks), func.min(per_host.c.tasks), func.max(per_host.c.tasks),
               func.sum(per_host.c[2]))
    ).one()  # fmt: skip
    hosts = dict(
        db.session.execute(
            select(HostResult.status, func.count())
            .where(HostResult.job_instance_id == job_id)
            .group_by(HostResult.status)
        ).all()
    )
    slices = dict(
        db.session.execute(
            select(Slice.status, func.count())
            .join(StepInstance, Slice.step_instance_id == StepInstance.id)
            .where(StepInstance.job_instance_id == job_id)
            .group_by(Slice.status)
        ).all()
    )
    job = db.session.get(JobInstance, job_id)
    return {
        "task_rows": rows or 0,
        "distinct": distinct or 0,
        "least": least,
        "most": most,
        "hosts": hosts,
        "slices": slices,
        "job": job.status,
    }


def load(averages: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in averages)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--batch", type=int, default=None, help="events per XADD (the plugin's by default)")
    parser.add_argument("--stdout", type=int, default=64, help="bytes of stdout per task result")
    parser.add_argument("--kill", action="store_true", help="SIGKILL the ingester mid-stream, start it again")
    parser.add_argument(
        "--profile", metavar="FILE", help="run the ingester under cProfile, its stats to FILE"
    )
    args = parser.parse_args()

    from app.execution.keys import heartbeat_key
    from app.extensions import db
    from app.models import Slice, StepInstance
    from app.services.executions import claim

    unlimited = {"OPSFLOW_IMPORT_HOSTS_MAX": str(args.hosts), "OPSFLOW_PROJECT_RUNNING_LIMIT": "0"}
    with (
        emptied_redis("redis://127.0.0.1:6379/3") as redis_url,
        application("ingest", REDIS_URL=redis_url, **unlimited) as app,
    ):
        client = redis_lib.Redis.from_url(redis_url)
        from app.execution.ingest import GROUP

        config = app.config["OPSFLOW"]
        stream = config.event_stream
        log_dir = Path(os.environ["OPSFLOW_DATA_DIR"])
        batch = args.batch or load_plugin().BATCH_SIZE
        with app.app_context():
            dialect = db.engine.dialect.name
            job = launch(api_caller(app), args.hosts, args.tasks)
            slice_ids = db.session.scalars(
                select(Slice.id).join(StepInstance).where(StepInstance.job_instance_id == job["id"])
            ).all()
            claimed = {slice_id: claim(slice_id, f"bench:{os.getpid()}") for slice_id in slice_ids}
            for slice_id in slice_ids:
                # The slices' worker is this process: their heartbeats outlast the run.
                client.set(heartbeat_key(slice_id), "1", ex=3600)
            began = time.perf_counter()
            events = feed(client, stream, claimed, args.tasks, batch, args.stdout)
            fed = time.perf_counter() - began
            entries = client.xlen(stream)
            load_before = os.getloadavg()
            process = start_ingester(log_dir, args.profile)
            try:
                first = first_read(client, stream, GROUP)
                killed_at = None
                if args.kill:
                    wait_until(lambda: mid_stream(client, stream, entries), process)
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                    killed_at = time.perf_counter()
                    pending = client.xpending(stream, GROUP)["pending"]
                    process = start_ingester(log_dir)
                ended = wait_until(lambda: drained(client, stream), process)
                load_after = os.getloadavg()
                found = counted(job["id"])
            finally:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                process.wait()
            db.session.remove()
        print(f"database: {dialect}; {args.hosts} hosts in {len(slice_ids)} slices, {args.tasks} tasks each")
        print(machine())
        print(f"load average before: {load(load_before)}, after: {load(load_after)}")
        print(f"stream: {entries} entries of up to {batch} events, written in {fed:.1f} s")
        if killed_at is not None:
            print(
                f"ingester killed (SIGKILL) {killed_at - first:.1f} s after its first read, "
                f"{pending} entries read and not acknowledged; started again (its start-up counts below)"
            )
        seconds = ended - first
        print(f"events {events}, seconds {seconds:.2f}, events/s {events / seconds:,.0f}")
        expected = args.hosts * args.tasks
        twice = found["task_rows"] - found["distinct"]
        print(
            f"task results: {found['task_rows']} of {expected} expected, {twice} twice, "
            f"per host {found['least']}..{found['most']}"
        )
        print(f"host results: {found['hosts']}; slices: {found['slices']}; job instance: {found['job']}")


if __name__ == "__main__":
    main()
