"""Benchmark: how late timed jobs fire, and how soon a fire becomes a job instance and a running host.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.timers                                   # SQLite in a temporary data dir
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.timers

It needs a Redis (REDIS_URL, default redis://127.0.0.1:6379/12; that database is emptied before and after).
It starts real processes with the same settings: --schedulers schedulers, --workers RQ workers and the
ingester, and creates timed jobs through the application (Flask's test client):

  same second   --timers timed jobs, each a one-shot at the same second, launching a plan whose one step
                waits for a confirmation (launching writes the job instance; no host runs)
  every second  one timed job every --interval seconds (default 1) for --seconds seconds, running `true`
                on the controller through the local connection (a real ansible-playbook per fire, on the
                workers)

For each fire it reads the run row and its job instance: lateness (fired minus scheduled), fire to job
instance created, and, for the second case, fire to the first host started. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from bench.app import api_caller, application, controller_host, emptied_redis, machine, percentile, processes

READY = b"scheduler started"


def summary(name: str, values: list[float]) -> str:
    if not values:
        return f"{name:32} no samples"
    figures = ", ".join(f"p{share} {percentile(values, share):7.1f}" for share in (50, 95, 99))
    return f"{name:32} {figures}, max {max(values):7.1f} ms  ({len(values)} fires)"


def wait_ready(log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while READY not in (log.read_bytes() if log.exists() else b""):
        if time.monotonic() > deadline:
            raise SystemExit(f"{log} shows no started scheduler")
        time.sleep(0.2)


def whole_second(ahead: float) -> datetime:
    return datetime.fromtimestamp(int(time.time() + ahead), UTC)


def measured(
    timed_job_ids: list[int], expected: int, with_hosts: bool, timeout: float
) -> dict[str, list[float]]:
    """Wait for `expected` launched runs of these timed jobs (and, with hosts, their first host started);
    their lateness and delays in milliseconds."""
    from app.extensions import db
    from app.models import HostResult, JobInstance, TimedJobRun

    deadline = time.monotonic() + timeout
    while True:
        db.session.rollback()
        rows = db.session.execute(
            select(TimedJobRun.scheduled_at, TimedJobRun.fired_at, JobInstance.created_at, JobInstance.id)
            .join(JobInstance, JobInstance.id == TimedJobRun.job_instance_id)
            .where(TimedJobRun.timed_job_id.in_(timed_job_ids))
        ).all()
        first_hosts = {}
        if with_hosts:
            first_hosts = dict(
                db.session.execute(
                    select(HostResult.job_instance_id, func.min(HostResult.started_at))
                    .where(HostResult.job_instance_id.in_([row[3] for row in rows]))
                    .group_by(HostResult.job_instance_id)
                ).all()
            )
        started = [at for at in first_hosts.values() if at is not None]
        if (
            len(rows) >= expected and (not with_hosts or len(started) >= expected)
        ) or time.monotonic() > deadline:
            break
        time.sleep(1)

    def ms(later: datetime, earlier: datetime) -> float:
        return (later - earlier).total_seconds() * 1000

    figures = {
        "lateness (fired - scheduled)": [ms(fired, due) for due, fired, _, _ in rows],
        "fire -> job instance created": [ms(created, fired) for _, fired, created, _ in rows],
    }
    if with_hosts:
        figures["fire -> first host started"] = [
            ms(first_hosts[job_id], fired) for _, fired, _, job_id in rows if first_hosts.get(job_id)
        ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timers", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--interval", type=int, default=1, help="seconds between the script's fires")
    parser.add_argument("--schedulers", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with emptied_redis("redis://127.0.0.1:6379/12") as redis_url:
        measure(args, redis_url)


def measure(args: argparse.Namespace, redis_url: str) -> None:
    from app.extensions import db

    settings = {"REDIS_URL": redis_url, "OPSFLOW_PROJECT_RUNNING_LIMIT": "0"}
    with application("timers", **settings) as app:
        with app.app_context():
            dialect = db.engine.dialect.name
        log_dir = Path(os.environ["OPSFLOW_DATA_DIR"])

        call = api_caller(app)

        commands = {
            "ingester": "ingest",
            **{f"worker-{n}": "worker" for n in range(args.workers)},
            **{f"scheduler-{n}": "scheduler" for n in range(args.schedulers)},
        }
        with processes(log_dir, commands):
            for n in range(args.schedulers):
                wait_ready(log_dir / f"scheduler-{n}.log")
            pid = call("POST", "/projects", {"name": "timers"}, 201)["id"]
            host = controller_host(call, pid)
            manual = {"key": "ok", "name": "ok", "type": "manual", "manual": {"message": "go?"}}
            template = call(
                "POST", f"/projects/{pid}/job-templates", {"name": "wait", "steps": [manual]}, 201
            )
            plan = call(
                "POST", f"/projects/{pid}/job-plans", {"template_id": template["id"], "name": "wait"}, 201
            )

            at = whole_second(10 + args.timers * 0.1)
            same_second = [
                call(
                    "POST",
                    f"/projects/{pid}/timed-jobs",
                    {
                        "name": f"once-{n}",
                        "target": {"plan_id": plan["id"]},
                        "schedule": {"at": at.isoformat()},
                    },
                    201,
                )["id"]
                for n in range(args.timers)
            ]
            with app.app_context():
                first = measured(same_second, args.timers, False, timeout=120)

            begin = whole_second(3)
            fires = len(range(0, args.seconds, args.interval))
            script = {"script": {"language": "bash", "content": "true"}, "targets": {"hosts": [host["id"]]}}
            every = call(
                "POST",
                f"/projects/{pid}/timed-jobs",
                {
                    "name": "every-second",
                    "target": {"script_execution": script},
                    "schedule": {"every": args.interval},
                    "start_at": begin.isoformat(),
                    "end_at": (begin + timedelta(seconds=args.seconds - 1)).isoformat(),
                    "overlap": "allow",
                },
                201,
            )["id"]
            with app.app_context():
                second = measured([every], fires, True, timeout=args.seconds + 600)
        print(f"database: {dialect}; {args.schedulers} scheduler(s), {args.workers} workers")
        print(machine())
        with open("/proc/loadavg") as load:
            print(f"load average: {load.read().split()[:3]}")
        print(f"{args.timers} timed jobs on the same second:")
        for name, values in first.items():
            print("  " + summary(name, values))
        print(f"one timed job every {args.interval} s for {args.seconds} s:")
        for name, values in second.items():
            print("  " + summary(name, values))


if __name__ == "__main__":
    main()
