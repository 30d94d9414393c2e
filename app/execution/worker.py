"""The RQ workers the service runs: the job workers, and the flow engines."""

from __future__ import annotations

import os

from redis.client import Pipeline
from redis.exceptions import RedisError
from rq import Queue, SimpleWorker, Worker
from rq.job import Job

from app.config import WORKER_HEARTBEAT_SECONDS, WORKER_TTL_SECONDS
from app.execution.beat import every


class Heartbeating:
    """A heartbeat often enough for /health, and a worker that registers itself again when Redis has lost
    its record (a Redis restarted empty), so that RQ and /health see it again."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        kwargs.setdefault("job_monitoring_interval", WORKER_HEARTBEAT_SECONDS)
        super().__init__(*args, **kwargs)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and self.birth_date is not None and not self.connection.exists(self.key):
            self.register_birth()
        super().heartbeat(timeout, pipeline)


class OpsflowWorker(Heartbeating, Worker):
    """A job worker: each slice runs in a work horse of its own, `nice` added to its niceness."""

    def __init__(self, *args, nice: int = 0, **kwargs) -> None:
        self.nice = nice
        super().__init__(*args, **kwargs)

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        # ansible-playbook and its forks inherit this: while runs take every core, the API, the ingester
        # and the engines still get the CPU at once, so launches and results do not wait behind runs.
        os.nice(self.nice)
        super().main_work_horse(job, queue)


class EngineWorker(Heartbeating, SimpleWorker):
    """A flow engine: it advances tasks in its own process, since an advance is short and never runs
    Ansible. RQ's simple worker beats only between jobs; this one also beats from a thread while an
    advance runs, as a forking worker's monitor does, so that a long advance on a busy machine does not
    read as a dead engine."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        with every(self.job_monitoring_interval, self.beat_while_busy, f"heartbeat-{self.name}"):
            super().execute_job(job, queue)

    def beat_while_busy(self) -> None:
        try:
            self.heartbeat()
        except RedisError:
            self.log.warning("Worker %s: no heartbeat while an advance runs", self.name, exc_info=True)
