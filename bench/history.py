"""Benchmark: history queries on a project with 100,000 job instances.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.history                         # SQLite in a temporary data dir
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.history

With DATABASE_URL it creates a fresh database next to the one named (same server), and drops it
afterwards. It fills one project with --jobs job instances (one step each, --hosts-per-job host results
each, host names drawn from a pool of 5,000), spread over a year, with a realistic mix of statuses,
launchers and launch types, written in bulk (not timed). Then it times GET /projects/{pid}/jobs through
the application (the Flask test client with a bearer token: routing, authentication, validation, the
query with its COUNT, serialization) for each filter below, --repeat times, and prints the median and
the worst, with the number of matching job instances. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import insert, select

from bench.app import HEADERS, application, machine

STATUSES = ["success"] * 90 + ["failed"] * 8 + ["timeout", "terminated"]
LAUNCH_TYPES = ["api"] * 95 + ["timed"] * 4 + ["relaunch"]
NAMES = [f"{verb} {thing}" for verb in ("deploy", "restart", "check", "backup", "rotate") for thing in
         ("web", "db", "cache", "queue", "logs", "certs", "disk", "kernel", "agent", "dns")]  # fmt: skip


def fill(project_id: int, jobs: int, hosts_per_job: int, seed: int = 7) -> None:
    from app.extensions import db
    from app.models import HostResult, JobInstance, Slice, StepInstance

    rng = random.Random(seed)
    now = datetime.now(UTC)
    batch = 5_000
    for start in range(0, jobs, batch):
        count = min(batch, jobs - start)
        job_rows = []
        for n in range(start, start + count):
            created = now - timedelta(seconds=(jobs - n) * 365 * 86400 / jobs)
            job_rows.append(
                {
                    "project_id": project_id,
                    "name": f"{rng.choice(NAMES)} #{n}",
                    "kind": "script_execution",
                    "status": rng.choice(STATUSES),
                    "host_count": hosts_per_job,
                    "launched_by": f"user{rng.randrange(20):02d}",
                    "launch_type": rng.choice(LAUNCH_TYPES),
                    "request": {},
                    "created_at": created,
                    "dispatched_at": created,
                    "started_at": created,
                    "ended_at": created + timedelta(seconds=30),
                }
            )
        job_ids = db.session.scalars(insert(JobInstance).returning(JobInstance.id), job_rows).all()
        step_rows = [
            {"job_instance_id": jid, "name": "step", "kind": "script", "spec": {}} for jid in job_ids
        ]
        step_ids = db.session.scalars(insert(StepInstance).returning(StepInstance.id), step_rows).all()
        slice_rows = [{"step_instance_id": sid, "index": 0, "host_count": hosts_per_job} for sid in step_ids]
        slice_ids = db.session.scalars(insert(Slice).returning(Slice.id), slice_rows).all()
        result_rows = []
        for jid, sid, piece in zip(job_ids, step_ids, slice_ids, strict=True):
            for host in rng.sample(range(5_000), hosts_per_job):
                result_rows.append(
                    {
                        "job_instance_id": jid,
                        "step_instance_id": sid,
                        "slice_id": piece,
                        "host_name": f"host{host:04d}.example.com",
                        "address": f"10.{host // 250}.{host % 250}.1",
                        "status": "success",
                    }
                )
        db.session.execute(insert(HostResult), result_rows)
        db.session.commit()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--hosts-per-job", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from app.extensions import db
    from app.models import JobInstance, Project

    with application("history") as app:
        with app.app_context():
            project = Project(name="history")
            db.session.add(project)
            db.session.commit()
            began = time.perf_counter()
            fill(project.id, args.jobs, args.hosts_per_job)
            filled = time.perf_counter() - began
            if db.engine.dialect.name == "postgresql":
                with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                    connection.exec_driver_sql("VACUUM ANALYZE")
            else:
                with db.engine.connect() as connection:
                    connection.exec_driver_sql("ANALYZE")
            newest = db.session.scalar(select(JobInstance.created_at).order_by(JobInstance.created_at.desc()))
            pid, dialect = project.id, db.engine.dialect.name
        results = args.jobs * args.hosts_per_job
        print(f"database: {dialect}; {args.jobs} job instances, {results} host results,")
        print(f"filled in {filled:.1f} s (not timed)")
        print(machine())
        day = (newest - timedelta(days=30)).isoformat()
        next_day = (newest - timedelta(days=29)).isoformat()
        cases = [
            ("no filter, page 1", {}),
            ("no filter, page 200", {"page": 200}),
            ("status=timeout", {"status": "timeout"}),
            ("status=failed&status=timeout", {"status": ["failed", "timeout"]}),
            ("launched_by=user07", {"launched_by": "user07"}),
            ("launch_type=relaunch", {"launch_type": "relaunch"}),
            ("name contains 'rotate cer'", {"name": "rotate cer"}),
            ("name contains '#99999' (one match)", {"name": "#99999"}),
            ("host=<name>", {"host": "host0042.example.com"}),
            ("host=<address>", {"host": "10.0.42.1"}),
            ("a 1-day range", {"created_after": day, "created_before": next_day}),
            ("status=failed, user, 90 days", {"status": "failed", "launched_by": "user03",
                                              "created_after": (newest - timedelta(days=90)).isoformat()}),
        ]  # fmt: skip
        client = app.test_client()
        print(f"\n{'filter':<40} {'matches':>8} {'median ms':>10} {'worst ms':>9}")
        for label, query in cases:
            timings, total = [], None
            for _ in range(args.repeat):
                began = time.perf_counter()
                response = client.get(f"/api/v1/projects/{pid}/jobs", query_string=query, headers=HEADERS)
                timings.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.get_data(as_text=True)
                total = json.loads(response.headers["X-Pagination"])["total"]
            print(f"{label:<40} {total:>8} {statistics.median(timings):>10.1f} {max(timings):>9.1f}")


if __name__ == "__main__":
    main()
