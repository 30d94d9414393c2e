"""The RQ worker the service runs."""

from __future__ import annotations

from redis.client import Pipeline
from rq import Worker

from app.config import WORKER_HEARTBEAT_SECONDS, WORKER_TTL_SECONDS


class OpsflowWorker(Worker):
    """RQ's worker with a heartbeat often enough for /health, which registers itself again when Redis
    has lost its record (a Redis restarted empty), so that RQ and /health see it again."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("worker_ttl", WORKER_TTL_SECONDS)
        kwargs.setdefault("job_monitoring_interval", WORKER_HEARTBEAT_SECONDS)
        super().__init__(*args, **kwargs)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        if pipeline is None and self.birth_date is not None and not self.connection.exists(self.key):
            self.register_birth()
        super().heartbeat(timeout, pipeline)
