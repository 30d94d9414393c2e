"""Benchmark: the CPU and the database round trips of one launch, in this process.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.launch_cpu                                  # SQLite in a temporary data dir
    .venv/bin/python -m bench.launch_cpu --limit 1                        # every launch held
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python -m bench.launch_cpu

It needs a Redis (REDIS_URL, default redis://127.0.0.1:6379/11; that database is emptied before and
after), because a launch puts its slices on the queue; no worker runs. Through the application (Flask's
test client with a bearer token, one thread) it launches ``echo hi`` on --hosts local hosts --warm
times, counts the statements and commits of one launch (each a round trip to the database), then runs
--rounds rounds of --launches launches and prints the round that took the least CPU (the machine may
be shared: the others lost time to other processes): this process's CPU per launch, the wall time per
launch, and, on a PostgreSQL server on this machine, the CPU its processes serving the benchmark's
database took per launch. --limit is the project's limit of running job instances: by default every
launch finds room; with 1, every launch after the first is held. ``--profile FILE`` writes
cProfile's statistics of the rounds (in CPU time, so a launch's waits for the database are left
out; profiling slows each call several times over). Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import time
from pathlib import Path

from flask import Flask
from sqlalchemy import event, text

from app.extensions import db
from bench.app import api_caller, application, emptied_redis, machine

SCRIPT = "echo hi"


def server_cpu_seconds(app: Flask) -> float:
    """CPU seconds the PostgreSQL processes serving the application's database have taken (read from
    /proc: the server must run on this machine)."""
    with app.app_context():
        pids = db.session.scalars(
            text("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
        ).all()
        db.session.rollback()
    ticks = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        if stat.exists():
            fields = stat.read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--warm", type=int, default=200)
    parser.add_argument("--launches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=1_000_000)
    parser.add_argument("--profile", metavar="FILE", help="write cProfile's statistics of the rounds here")
    args = parser.parse_args()

    with emptied_redis("redis://127.0.0.1:6379/11") as redis_url:
        settings = {"REDIS_URL": redis_url, "OPSFLOW_PROJECT_RUNNING_LIMIT": str(args.limit)}
        with application("launch-cpu", **settings) as app:
            with app.app_context():
                engine = db.engine
            postgres = engine.dialect.name == "postgresql"
            call = api_caller(app)
            pid = call("POST", "/projects", {"name": "launch-cpu"}, 201)["id"]
            hosts = [
                call("POST", f"/projects/{pid}/hosts", host, 201)["id"]
                for host in (
                    {"name": f"local{n}", "address": "127.0.0.1", "connection": "local"}
                    for n in range(args.hosts)
                )
            ]
            body = {"script": {"content": SCRIPT, "language": "shell"}, "targets": {"hosts": hosts}}

            def launch() -> None:
                call("POST", f"/projects/{pid}/script-executions", body, 202)

            for _ in range(args.warm):
                launch()
            round_trips = []

            def count(*_) -> None:
                round_trips.append(1)

            event.listen(engine, "before_cursor_execute", count)
            event.listen(engine, "commit", count)
            launch()
            event.remove(engine, "before_cursor_execute", count)
            event.remove(engine, "commit", count)

            profile = cProfile.Profile(time.process_time) if args.profile else None
            best = None
            for _ in range(args.rounds):
                server_before = server_cpu_seconds(app) if postgres else 0.0
                cpu_before, wall_before = time.process_time(), time.perf_counter()
                if profile:
                    profile.enable()
                for _ in range(args.launches):
                    launch()
                if profile:
                    profile.disable()
                cpu, wall = time.process_time() - cpu_before, time.perf_counter() - wall_before
                server = server_cpu_seconds(app) - server_before if postgres else 0.0
                if best is None or cpu < best[0]:
                    best = (cpu, wall, server)
    if profile:
        profile.dump_stats(args.profile)
    cpu, wall, server = (seconds * 1000 / args.launches for seconds in best)
    print(f"database: {engine.dialect.name}; {args.hosts} hosts, project limit {args.limit}")
    print(machine())
    print(f"load average after: {' '.join(f'{load:.2f}' for load in os.getloadavg())}")
    print(f"round trips {len(round_trips)} per launch")
    print(f"CPU         {cpu:.1f} ms per launch (wall {wall:.1f} ms)")
    if postgres:
        print(f"server CPU  {server:.1f} ms per launch")


if __name__ == "__main__":
    main()
