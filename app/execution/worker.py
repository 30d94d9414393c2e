"""The RQ workers the service runs: the job workers, and the flow engines."""

from __future__ import annotations

from redis.client import Pipeline
from rq import SimpleWorker, Worker

from app.config import WORKER_HEARTBEAT_SECONDS, WORKER_TTL_SECONDS


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
    """A job worker: each slice runs in a work horse of its own."""


class EngineWorker(Heartbeating, SimpleWorker):
    """A flow engine: it advances tasks in its own process, since an advance is short and never runs
    Ansible."""
