"""Benchmark: how long a launch takes while many clients launch at once and the workers are busy.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.launch_load                              # SQLite, embedded Redis
    .venv/bin/python -m bench.launch_load --closed                     # saturation throughput
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/postgres REDIS_URL=redis://127.0.0.1:6379/4 \\
        .venv/bin/python -m bench.launch_load

It starts the whole service as `make run` does (``python -m app.cli run``, its default settings, a
temporary data dir, a free port; with DATABASE_URL set, a fresh database on that server, dropped
afterwards; with REDIS_URL set, that Redis database, emptied before and after). It creates a project
with --hosts hosts on the local connection, then --clients threads, each with its own keep-alive HTTP
connection, launch ``echo hi`` (or --script) on those hosts (POST /script-executions) for --seconds seconds:

  open loop  (default) each client launches --rate times per second at fixed times (a random phase
             per client); latency counts from the time a launch was due, so waiting behind a slow
             answer counts too
  --closed   each client launches again as soon as its previous answer came: the saturation rate

The runs queue up behind the RQ workers, which run ansible-playbook meanwhile; that is the point: the
API's latency while the workers are busy. It prints launches, launches/s, p50/p95/p99/max latency of
the answers (from the time each launch was due, and from the time it was sent: the difference is the
client's own lateness), the count of each status other than 202, and how many job instances ended
during the run; with --timeline, the same for each stretch of the run. Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.app import drop_postgres, fresh_postgres, machine, percentile
from bench.fanout import ADMIN_TOKEN, FINAL, Service

# What each launch runs; --script "sleep 100" keeps the workers' runs off the CPU (the API's share alone).
SCRIPT = "echo hi"
# A launch left unanswered this long counts as failed (status 0) rather than stalling the run.
ANSWER_TIMEOUT_SECONDS = 60
# How a request on a connection the server has closed fails (http.client.RemoteDisconnected is a reset).
CLOSED_WHILE_IDLE = (BrokenPipeError, ConnectionResetError)


@dataclass
class Tally:
    """What one client saw: each launch's latency (ms) from the time it was due and from the time it was
    sent, when it was due (seconds into the run), and the statuses other than 202."""

    latencies: list[float] = field(default_factory=list)
    answers: list[float] = field(default_factory=list)
    due_at: list[float] = field(default_factory=list)
    statuses: Counter = field(default_factory=Counter)


def post(
    connection: http.client.HTTPConnection,
    path: str,
    body: bytes,
    headers: dict[str, str],
    again: bool = True,
) -> int:
    """The launch's status, or 0 when it got none. A keep-alive connection the server closed while it
    was idle (gunicorn closes them after its keep-alive timeout, 2 s) is opened again once, as HTTP
    clients do."""
    try:
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException) as exc:
        connection.close()
        if again and isinstance(exc, CLOSED_WHILE_IDLE):
            return post(connection, path, body, headers, again=False)
        return 0


def launcher(
    port: int, path: str, body: bytes, began: float, stop_at: float, interval: float | None, tally: Tally
) -> None:
    """One client: launches over its own keep-alive connection until `stop_at`, every `interval`
    seconds from a random phase (open loop), or back to back when `interval` is None."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_TOKEN}"}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=ANSWER_TIMEOUT_SECONDS)
    due = time.monotonic() + (random.uniform(0, interval) if interval else 0)
    while due < stop_at:
        if interval:
            time.sleep(max(due - time.monotonic(), 0))
        else:
            due = time.monotonic()
        sent = time.monotonic()
        status = post(connection, path, body, headers)
        answered = time.monotonic()
        tally.latencies.append((answered - due) * 1000)
        tally.answers.append((answered - sent) * 1000)
        tally.due_at.append(due - began)
        if status != 202:
            tally.statuses[status] += 1
        if interval:
            due += interval
    connection.close()


def load(service: Service, pid: int, body: dict, args: argparse.Namespace) -> tuple[Tally, float]:
    """Run the clients; everything they saw, and the seconds they ran."""
    path = f"/api/v1/projects/{pid}/script-executions"
    encoded = json.dumps(body).encode()
    interval = None if args.closed else 1 / args.rate
    tallies = [Tally() for _ in range(args.clients)]
    began = time.monotonic()
    stop_at = began + args.seconds
    threads = [
        threading.Thread(target=launcher, args=(service.port, path, encoded, began, stop_at, interval, tally))
        for tally in tallies
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    total = Tally()
    for tally in tallies:
        total.latencies += tally.latencies
        total.answers += tally.answers
        total.due_at += tally.due_at
        total.statuses += tally.statuses
    return total, time.monotonic() - began


def figures(latencies: list[float]) -> str:
    shares = ", ".join(f"p{share} {percentile(latencies, share):.0f}" for share in (50, 95, 99))
    return f"{shares}, max {max(latencies):.0f}"


def ended_jobs(service: Service, pid: int) -> int:
    """Job instances of the project that have ended (the total of a filtered history list)."""
    statuses = "&".join(f"status={status}" for status in sorted(FINAL))
    request_path = f"/api/v1/projects/{pid}/jobs?page_size=1&{statuses}"
    connection = http.client.HTTPConnection("127.0.0.1", service.port, timeout=ANSWER_TIMEOUT_SECONDS)
    connection.request("GET", request_path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    response = connection.getresponse()
    response.read()
    connection.close()
    pagination = json.loads(response.headers.get("X-Pagination") or "{}")
    return int(pagination.get("total", -1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=1.0, help="launches per second of each client")
    parser.add_argument("--closed", action="store_true", help="launch again as soon as the answer came")
    parser.add_argument("--hosts", type=int, default=3)
    parser.add_argument("--script", default=SCRIPT, help=f"what each launch runs (default: {SCRIPT})")
    parser.add_argument(
        "--project-limit", type=int, help="the project's running limit (default: the service's setting)"
    )
    parser.add_argument(
        "--timeline", type=float, metavar="SECONDS", help="also print p50/p99 for each stretch of this long"
    )
    args = parser.parse_args()

    redis_url = os.environ.get("REDIS_URL")
    if redis_url:
        import redis as redis_lib

        redis_lib.Redis.from_url(redis_url).flushdb()
    database = fresh_postgres(os.environ["DATABASE_URL"]) if os.environ.get("DATABASE_URL") else None
    if database:
        os.environ["DATABASE_URL"] = database
    service = Service(Path(tempfile.mkdtemp(prefix="opsflow-bench-load-")), None, 0)
    # The service as `make run` starts it: each project's limit of running jobs as configured.
    service.env.pop("OPSFLOW_PROJECT_RUNNING_LIMIT")
    if args.project_limit is not None:
        service.env["OPSFLOW_PROJECT_RUNNING_LIMIT"] = str(args.project_limit)
    try:
        service.start()
        pid = service.api.post("/projects", {"name": "load"})["id"]
        hosts = [
            service.api.post(
                f"/projects/{pid}/hosts", {"name": f"local{n}", "address": "127.0.0.1", "connection": "local"}
            )["id"]
            for n in range(args.hosts)
        ]
        body = {"script": {"content": args.script, "language": "shell"}, "targets": {"hosts": hosts}}
        loads_before = os.getloadavg()
        tally, seconds = load(service, pid, body, args)
        loads_after = os.getloadavg()
        ended = ended_jobs(service, pid)
    finally:
        service.stop()
        if database:
            drop_postgres(database)
        if redis_url:
            redis_lib.Redis.from_url(redis_url).flushdb()
    latencies = tally.latencies
    mode = "closed loop" if args.closed else f"open loop, {args.rate:g} launches/s per client"
    print(
        f"database: {'postgresql' if database else 'sqlite'}; {args.clients} clients, {mode}, {seconds:.0f} s"
    )
    print(machine())
    print(f"load average before: {loads_before[0]:.2f} {loads_before[1]:.2f} {loads_before[2]:.2f}")
    print(f"load average after:  {loads_after[0]:.2f} {loads_after[1]:.2f} {loads_after[2]:.2f}")
    print(f"launches    {len(latencies)} ({len(latencies) / seconds:.1f}/s); {ended} job instances ended")
    if latencies:
        print(f"latency     {figures(latencies)} ms (from the time each launch was due)")
        print(f"answer      {figures(tally.answers)} ms (from the time each was sent)")
    if latencies and args.timeline:
        stretches: dict[int, list[float]] = {}
        for due, latency in zip(tally.due_at, latencies, strict=True):
            stretches.setdefault(int(due // args.timeline), []).append(latency)
        for index, stretch in sorted(stretches.items()):
            start = index * args.timeline
            print(f"  {start:6.1f}-{start + args.timeline:<6.1f} s  {len(stretch):5d}  {figures(stretch)} ms")
    print(f"not 202     {dict(sorted(tally.statuses.items())) or 'none'}")


if __name__ == "__main__":
    main()
