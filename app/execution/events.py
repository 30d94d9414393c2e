"""The event stream between runs and the ingester.

Each stream entry holds one field, `events`: a JSON list of event dicts, every
one carrying the `slice` it belongs to and a `type`. The callback plugin writes
`task_start`, `task_result`, `file_result` (a transfer's files) and `stats` events
(plugins/callback/opsflow.py); the worker and the reaper write `slice_done` once a slice has ended.

Every event carries its slice's `token`, an HMAC of the slice id under the service's key: a run knows its own
slice's token alone, so the ingester drops what a run (a script on a local host, with the runs' Redis user)
adds for any other slice.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

if TYPE_CHECKING:
    from app.status import RunStatus

log = logging.getLogger(__name__)
PUBLISH_RETRY_SECONDS = 1.0


def publish(redis: Redis, stream: str, events: list[dict[str, Any]], patience: float = 0) -> None:
    """Add the events to the stream; while Redis cannot be reached, try again for `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            redis.xadd(stream, {"events": json.dumps(events)})
            return
        except (RedisConnectionError, RedisTimeoutError) as exc:
            if time.monotonic() >= deadline:
                raise
            log.warning("events not published yet, Redis cannot be reached: %s", exc)
            time.sleep(PUBLISH_RETRY_SECONDS)


# The ingester checks every event's token: one HMAC per slice, not one per event.
@functools.lru_cache(maxsize=4096)
def slice_token(key: bytes, slice_id: int) -> str:
    """What vouches for an event of `slice_id`: known to the service, which holds the key, and to that
    slice's run."""
    return hmac.new(key, f"opsflow slice {slice_id}".encode(), hashlib.sha256).hexdigest()


def vouched(key: bytes, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The service's own events, each with its slice's token."""
    return [{**event, "token": slice_token(key, event["slice"])} for event in events]


def genuine(key: bytes, event: dict[str, Any]) -> bool:
    """Whether the event carries the token of the slice it names."""
    return hmac.compare_digest(str(event.get("token", "")), slice_token(key, int(event["slice"])))


def slice_done(slice_id: int, status: RunStatus, error: str | None = None) -> dict[str, Any]:
    """The last event of a slice: every event of its run is in the stream before it."""
    return {"type": "slice_done", "slice": slice_id, "status": str(status), "error": error}
