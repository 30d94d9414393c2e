"""The event stream between runs and the ingester.

Each stream entry holds one field, `events`: a JSON list of event dicts, every
one carrying the `slice` it belongs to and a `type`. The callback plugin writes
`task_start`, `task_result`, `file_result` (a transfer's files) and `stats` events
(plugins/callback/opsflow.py); the worker and the reaper write `slice_done` once a slice has ended.
"""

from __future__ import annotations

import json
from typing import Any

from redis import Redis

from app.models.status import RunStatus


def publish(redis: Redis, stream: str, events: list[dict[str, Any]]) -> None:
    redis.xadd(stream, {"events": json.dumps(events)})


def slice_done(slice_id: int, status: RunStatus, error: str | None = None) -> dict[str, Any]:
    """The last event of a slice: every event of its run is in the stream before it."""
    return {"type": "slice_done", "slice": slice_id, "status": str(status), "error": error}
