"""Benchmark: bring a 10,000-host inventory in and launch a script on all of it.

Run it from the repository root, with the project's virtualenv::

    .venv/bin/python -m bench.launch                                    # SQLite in a temporary data dir
    .venv/bin/python -m bench.launch --hosts 20000
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test .venv/bin/python -m bench.launch

It needs a Redis (REDIS_URL, default redis://127.0.0.1:6379/11; that database is emptied before and
after), because a launch puts its slices on the queue; no worker runs, so no host is contacted. Through
the application (Flask's test client with a bearer token) it times:

  import      POST /inventories/import of an INI inventory of --hosts hosts in groups of 100 under one
              parent group, with a host variable each (written by a range per group)
  re-import   the same text again (nothing changes)
  preview     GET /dynamic-groups/{id}/hosts?page_size=100 of a dynamic group matching every host
  launch      POST /script-executions with targets {dynamic_groups: [id]}: resolution, rule checks, the job
              instance, its slices and one host result per host written, the slices queued; until the 202
  plan        POST /job-plans/{id}/launch of a four-step release (script, file transfer rolling in
              "1 10% 30% 100%", manual confirmation, script) whose steps target a host list variable of that
              dynamic group: values checked, three steps of host results written, the first step queued

Each launch is repeated --repeat times (fresh job instances). Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import redis as redis_lib

from bench.app import api_caller, application, machine


def inventory(hosts: int) -> str:
    lines = []
    for group in range(0, hosts, 100):
        last = min(group + 100, hosts) - 1
        lines += [
            f"[rack{group // 100:03d}]",
            f"node[{group:05d}:{last:05d}].example.com rack={group // 100}",
            "",
        ]
    lines += ["[site:children]", *(f"rack{group // 100:03d}" for group in range(0, hosts, 100))]
    return "\n".join(lines) + "\n"


def timed(call) -> tuple[float, object]:
    began = time.perf_counter()
    response = call()
    return time.perf_counter() - began, response


def release_plan(call, pid: int, group: int, account: int) -> int:
    """A plan of a four-step release template on every host of the dynamic group."""
    on_servers = {"targets": {"variable": "servers"}, "account_id": account}
    template = {
        "name": "release",
        "variables": [
            {"name": "v", "type": "string", "required": True},
            {"name": "servers", "type": "host_list", "default": {"dynamic_groups": [group]}},
        ],
        "steps": [
            {"name": "stop", "type": "script", "script": {"content": "echo stop $v"}, **on_servers},
            {
                "name": "push",
                "type": "file_transfer",
                "transfer": {"sources": [{"name": "v.txt", "content": "v"}], "target_path": "/tmp/v"},
                "rolling": {"expression": "1 10% 30% 100%"},
                **on_servers,
            },
            {"name": "check", "type": "manual"},
            {"name": "start", "type": "script", "script": {"content": "echo start $v"}, **on_servers},
        ],
    }
    template_id = call("POST", f"/projects/{pid}/job-templates", template, 201)["id"]
    return call("POST", f"/projects/{pid}/job-plans", {"name": "weekly", "template_id": template_id}, 201)[
        "id"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from app.extensions import db

    redis_url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/11"
    queue = redis_lib.Redis.from_url(redis_url)
    queue.flushdb()
    settings = {
        "REDIS_URL": redis_url,
        "OPSFLOW_IMPORT_HOSTS_MAX": str(args.hosts),
        "OPSFLOW_PROJECT_RUNNING_LIMIT": "0",
    }
    with application("launch", **settings) as app:
        with app.app_context():
            dialect = db.engine.dialect.name

        call = api_caller(app)

        pid = call("POST", "/projects", {"name": "launch"}, 201)["id"]
        text = inventory(args.hosts)
        body = {"format": "ini", "content": text}
        imported, report = timed(lambda: call("POST", f"/projects/{pid}/inventories/import", body))
        reimported, again = timed(lambda: call("POST", f"/projects/{pid}/inventories/import", body))
        assert not again["hosts"]["added"] and not again["hosts"]["updated"]
        nodes = {"name": "all-nodes", "filter": {"names": ["node*"]}}
        group = call("POST", f"/projects/{pid}/dynamic-groups", nodes, 201)["id"]
        preview, _ = timed(lambda: call("GET", f"/projects/{pid}/dynamic-groups/{group}/hosts?page_size=100"))
        account = call("POST", f"/projects/{pid}/accounts", {"name": "a", "username": "nobody"}, 201)["id"]
        launch = {
            "script": {"content": "uptime"},
            "targets": {"dynamic_groups": [group]},
            "account_id": account,
        }
        launches = []
        for _ in range(args.repeat):
            seconds, job = timed(lambda: call("POST", f"/projects/{pid}/script-executions", launch, 202))
            assert job["host_count"] == args.hosts, job["host_count"]
            launches.append(seconds)
        plan = release_plan(call, pid, group, account)
        plans = []
        for _ in range(args.repeat):
            seconds, released = timed(
                lambda: call(
                    "POST", f"/projects/{pid}/job-plans/{plan}/launch", {"variables": {"v": "2"}}, 202
                )
            )
            assert released["host_count"] == args.hosts, released["host_count"]
            plans.append(seconds)
        print(f"database: {dialect}; {args.hosts} hosts in {len(report['groups']['added'])} groups")
        print(machine())
        print(f"import      {imported:7.2f} s  ({len(report['hosts']['added'])} hosts added)")
        print(f"re-import   {reimported:7.2f} s  (nothing changed)")
        print(f"preview     {preview * 1000:7.1f} ms (first page of 100)")
        slices = len(job["steps"][0]["slices"])
        median = statistics.median(launches)
        worst = max(launches)
        print(f"launch      {median:7.2f} s  median of {args.repeat}, worst {worst:.2f} s; {slices} slices")
        rows = sum(step["host_count"] for step in released["steps"])
        median, worst = statistics.median(plans), max(plans)
        print(
            f"plan        {median:7.2f} s  median of {args.repeat}, worst {worst:.2f} s; {rows} host results"
        )
    queue.flushdb()


if __name__ == "__main__":
    main()
