"""Benchmark: download every host's log of one big step as a .tar.gz, and the memory it takes.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.log_archive                          # 5,000 hosts x 64 KiB of stdout
    .venv/bin/python -m bench.log_archive --hosts 10000 --stdout-kib 256
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.log_archive

It writes one job instance with one step of --hosts host results, each with --stdout-kib of stdout
(random text per host, so gzip has work to do), in bulk (not timed), into SQLite in a temporary data
dir or a fresh database next to DATABASE_URL's. Then it reads GET .../steps/{sid}/logs through the
application (Flask's test client, not buffered) chunk by chunk, and prints the wall time, the bytes of
log and of archive, and the process's resident memory before the request and at its highest while the
archive streamed (sampled at every chunk). Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import random
import string
import time

import psutil
from sqlalchemy import insert

from bench.app import HEADERS, application, machine


def fill(project_id: int, hosts: int, stdout_bytes: int) -> tuple[int, int]:
    from app.extensions import db
    from app.models import HostResult, JobInstance, Slice, StepInstance

    job = JobInstance(project_id=project_id, name="big step", kind="script_execution", status="success")
    step = StepInstance(name="big step", kind="script", host_count=hosts)
    job.steps.append(step)
    step.slices.append(Slice(index=0, host_count=hosts))
    db.session.add(job)
    db.session.commit()
    rng = random.Random(3)
    alphabet = string.ascii_letters + string.digits + "      \n"
    for start in range(0, hosts, 500):
        rows = [
            {
                "job_instance_id": job.id,
                "step_instance_id": step.id,
                "slice_id": step.slices[0].id,
                "host_name": f"host{n:05d}.example.com",
                "address": f"10.{n // 250}.{n % 250}.1",
                "status": "success",
                "exit_code": 0,
                "stdout": "".join(rng.choices(alphabet, k=stdout_bytes)),
            }
            for n in range(start, min(start + 500, hosts))
        ]
        db.session.execute(insert(HostResult), rows)
        db.session.commit()
    return job.id, step.id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=5_000)
    parser.add_argument("--stdout-kib", type=int, default=64)
    args = parser.parse_args()

    from app.extensions import db
    from app.models import Project

    with application("archive") as app:
        with app.app_context():
            project = Project(name="archive")
            db.session.add(project)
            db.session.commit()
            pid, dialect = project.id, db.engine.dialect.name
            job_id, step_id = fill(pid, args.hosts, args.stdout_kib * 1024)
            db.session.remove()
        process = psutil.Process()
        before = process.memory_info().rss
        highest, archive_bytes = before, 0
        began = time.perf_counter()
        response = app.test_client().get(
            f"/api/v1/projects/{pid}/jobs/{job_id}/steps/{step_id}/logs",
            headers=HEADERS,
            buffered=False,
        )
        assert response.status_code == 200, response.status_code
        for chunk in response.response:
            archive_bytes += len(chunk)
            highest = max(highest, process.memory_info().rss)
        response.close()
        elapsed = time.perf_counter() - began
        log_mib = args.hosts * args.stdout_kib / 1024
        print(f"database: {dialect}; {args.hosts} hosts x {args.stdout_kib} KiB of stdout: {log_mib:.0f} MiB")
        print(machine())
        print(f"archive: {archive_bytes / 2**20:.1f} MiB in {elapsed:.1f} s")
        print(f"resident memory: {before / 2**20:.0f} MiB before, at most {highest / 2**20:.0f} MiB after")


if __name__ == "__main__":
    main()
