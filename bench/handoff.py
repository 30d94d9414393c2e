"""Benchmark: the handoff between two script atoms of a flow, from one job instance's end to the next's start.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.handoff                                  # SQLite in a temporary data dir
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.handoff

It needs a Redis (REDIS_URL, default redis://127.0.0.1:6379/13; that database is emptied before and after).
It starts real processes: the ingester, --workers RQ workers and one flow engine, and saves through the
application (Flask's test client) a flow that is a chain of --handoffs + 1 script atoms, each running
`true` on the controller through the local connection. Once its task has ended it reads every pair of
consecutive job instances: the first one's end (`ended_at`, written by the ingester's settle path) to the
next one's creation (the engine launched it), to its start on a worker (which claimed it), and to its
host's start (ansible-playbook's own start-up included). Milliseconds, p50, p95 and max. Nothing passes
or fails.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import datetime
from itertools import pairwise
from pathlib import Path

from sqlalchemy import func, select

from bench.app import api_caller, application, controller_host, emptied_redis, machine, percentile, processes


def chain_of_scripts(length: int, host_id: int) -> dict:
    script = {
        "script": {"language": "bash", "content": "true"},
        "targets": {"hosts": [host_id]},
    }
    nodes = [
        {"id": "start", "type": "start"},
        *({"id": f"s{n}", "type": "activity", "atom": "script", "inputs": script} for n in range(length)),
        {"id": "end", "type": "end"},
    ]
    ids = [node["id"] for node in nodes]
    return {"nodes": nodes, "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}


def wait_ended(call, path: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = call("GET", path)
        if task["status"] not in ("created", "running"):
            return task
        time.sleep(0.5)
    raise SystemExit(f"the task is still {task['status']} after {timeout} s")


def handoffs(job_ids: list[int]) -> dict[str, list[float]]:
    """End of each job instance to each mark of the next one's way to its host, in ms: created (the engine
    launched it), dispatched (admitted), queued (its slice on the workers' queue), started (a worker
    claimed its slice) and its host's start."""
    from app.extensions import db
    from app.models import HostResult, JobInstance, Slice, StepInstance

    jobs = {
        row.id: row
        for row in db.session.execute(
            select(
                JobInstance.id,
                JobInstance.created_at,
                JobInstance.dispatched_at,
                JobInstance.started_at,
                JobInstance.ended_at,
            ).where(JobInstance.id.in_(job_ids))
        )
    }

    def first(column, owner, *joins) -> dict[int, datetime]:
        query = select(owner, func.min(column))
        for target, on in joins:
            query = query.join(target, on)
        return dict(db.session.execute(query.where(owner.in_(job_ids)).group_by(owner)).all())

    queued = first(
        Slice.queued_at,
        StepInstance.job_instance_id,
        (StepInstance, Slice.step_instance_id == StepInstance.id),
    )
    first_host = first(HostResult.started_at, HostResult.job_instance_id)

    def ms(later: datetime, earlier: datetime) -> float:
        return (later - earlier).total_seconds() * 1000

    pairs = list(pairwise(job_ids))
    marks = {
        "next job instance created": lambda b: jobs[b].created_at,
        "next job dispatched": lambda b: jobs[b].dispatched_at,
        "next job's slice queued": lambda b: queued[b],
        "next job started on a worker": lambda b: jobs[b].started_at,
        "next job's host started": lambda b: first_host[b],
    }
    return {
        f"job ended -> {name}": [ms(mark(b), jobs[a].ended_at) for a, b in pairs]
        for name, mark in marks.items()
    }


def line(name: str, values: list[float]) -> str:
    figures = ", ".join(f"p{share} {percentile(values, share):7.1f}" for share in (50, 95))
    return f"  {name:42} {figures}, max {max(values):7.1f} ms  ({len(values)} handoffs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--handoffs", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with emptied_redis("redis://127.0.0.1:6379/13") as redis_url:
        measure(args, redis_url)


def measure(args: argparse.Namespace, redis_url: str) -> None:
    from app.extensions import db

    with application("handoff", REDIS_URL=redis_url) as app:
        with app.app_context():
            dialect = db.engine.dialect.name
        log_dir = Path(os.environ["OPSFLOW_DATA_DIR"])
        call = api_caller(app)
        commands = {"ingester": "ingest", "engine": "engine"}
        commands.update({f"worker-{n}": "worker" for n in range(args.workers)})
        with processes(log_dir, commands):
            pid = call("POST", "/projects", {"name": "handoff"}, 201)["id"]
            host = controller_host(call, pid)
            flow = call(
                "POST",
                f"/projects/{pid}/flows",
                {"name": "chain", **chain_of_scripts(args.handoffs + 1, host["id"])},
                201,
            )
            task = call("POST", f"/projects/{pid}/flows/{flow['id']}/tasks", {"name": "handoff"}, 201)
            ended = wait_ended(call, f"/projects/{pid}/flow-tasks/{task['id']}", args.handoffs * 30 + 120)
        if ended["status"] != "success":
            raise SystemExit(f"the task ended {ended['status']}: {ended.get('error')}")
        scripts = sorted(
            (node for node in ended["nodes"] if node["atom"] == "script"), key=lambda n: int(n["id"][1:])
        )
        job_ids = [node["job_instance_id"] for node in scripts]
        with app.app_context():
            figures = handoffs(job_ids)
        print(f"database: {dialect}; {args.workers} workers, one engine")
        print(machine())
        with open("/proc/loadavg") as load:
            print(f"load average: {load.read().split()[:3]}")
        print(f"a chain of {args.handoffs + 1} script atoms on the local host:")
        for name, values in figures.items():
            print(line(name, values))


if __name__ == "__main__":
    main()
