"""Benchmark: the flow engine advancing tasks, and reading a finished task.

Run it from the repository root, with the project's virtualenv and a Redis::

    REDIS_URL=redis://127.0.0.1:6379/7 .venv/bin/python -m bench.flows --chain 100 300 1000
    DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test REDIS_URL=... .venv/bin/python -m bench.flows

It saves flows through the application (the Flask test client), creates their tasks, and times the
engine's `advance()` in this process (what one engine worker does with one "advance task N"): a chain of
`sleep 0` atoms of each --chain length, one parallel gateway of each --fan count of `sleep 0` branches, and
--flows flows of 17 nodes (a parallel gateway of 15 branches and its converge) advanced one after the
other. Then it times GET /flow-tasks/{id} and /flow-tasks/{id}/nodes/{node} of the longest finished chain,
--repeat times (median). Nothing passes or fails.
"""

from __future__ import annotations

import argparse
import statistics
import time
from itertools import pairwise

from bench.app import HEADERS, application, machine


def sleep(node_id: str) -> dict:
    return {"id": node_id, "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}}


def chain(length: int) -> dict:
    nodes = [
        {"id": "start", "type": "start"},
        *(sleep(f"n{index}") for index in range(length)),
        {"id": "end", "type": "end"},
    ]
    ids = [node["id"] for node in nodes]
    return {"nodes": nodes, "edges": [{"from": a, "to": b} for a, b in pairwise(ids)]}


def fan(branches: int) -> dict:
    nodes = [{"id": "start", "type": "start"}, {"id": "p", "type": "parallel"}]
    nodes += [sleep(f"b{index}") for index in range(branches)]
    nodes += [{"id": "j", "type": "converge"}, {"id": "end", "type": "end"}]
    edges = [{"from": "start", "to": "p"}, {"from": "j", "to": "end"}]
    for index in range(branches):
        edges += [{"from": "p", "to": f"b{index}"}, {"from": f"b{index}", "to": "j"}]
    return {"nodes": nodes, "edges": edges}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chain", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--fan", type=int, nargs="*", default=[], help="branches of one parallel gateway")
    parser.add_argument("--flows", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    with application("flows") as app:
        from app.extensions import redis
        from app.flows import engine
        from app.models import FlowTask

        client = app.test_client()
        with app.app_context():
            redis.client.delete("rq:queue:flows")
        pid = client.post("/api/v1/projects", json={"name": "bench"}, headers=HEADERS).get_json()["id"]

        def task_of(document: dict) -> int:
            flow = client.post(
                f"/api/v1/projects/{pid}/flows",
                json={"name": f"f{time.monotonic_ns()}", **document},
                headers=HEADERS,
            )
            assert flow.status_code == 201, flow.get_json()
            task = client.post(
                f"/api/v1/projects/{pid}/flows/{flow.get_json()['id']}/tasks", json={}, headers=HEADERS
            )
            return task.get_json()["id"]

        def run(task_ids: list[int]) -> float:
            with app.app_context():
                began = time.perf_counter()
                for task_id in task_ids:
                    engine.advance(task_id)
                elapsed = time.perf_counter() - began
                for task_id in task_ids:
                    status = app.extensions["sqlalchemy"].session.get(FlowTask, task_id).status
                    assert status == "success", (task_id, status)
            return elapsed

        print(machine())
        last = None
        for length in args.chain:
            last = task_of(chain(length))
            print(f"chain of {length} sleep 0 atoms: {run([last]):.2f} s")
        for branches in args.fan:
            print(
                f"one parallel gateway of {branches} sleep 0 branches: {run([task_of(fan(branches))]):.2f} s"
            )
        many = [task_of(fan(15)) for _ in range(args.flows)]
        print(f"{args.flows} flows of 17 nodes (parallel gateway of 15 branches): {run(many):.2f} s")
        for path in (f"/flow-tasks/{last}", f"/flow-tasks/{last}/nodes/n{args.chain[-1] // 2}"):
            times = []
            for _ in range(args.repeat):
                began = time.perf_counter()
                response = client.get(f"/api/v1/projects/{pid}{path}", headers=HEADERS)
                times.append(time.perf_counter() - began)
                assert response.status_code == 200
            what = "one node of" if "nodes" in path else "the whole"
            median = statistics.median(times) * 1000
            print(f"GET {what} finished {args.chain[-1]}-node task: median {median:.1f} ms")


if __name__ == "__main__":
    main()
