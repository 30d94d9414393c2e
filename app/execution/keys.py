"""Names of the Redis keys that carry runs in flight."""

from __future__ import annotations


def cancel_key(job_id: int) -> str:
    """Set while a cancel of the job is requested; runners poll it."""
    return f"opsflow:cancel:{job_id}"


# The reaper's own record (its last pass, and since when heartbeats are to be believed).
REAPER_KEY = "opsflow:reaper"


def ingester_key(consumer: str) -> str:
    """Refreshed by each ingester while it runs; /health reads it."""
    return f"opsflow:ingester:{consumer}"


def heartbeat_key(slice_id: int) -> str:
    """Refreshed by the runner of a slice while it runs; the reaper watches it expire."""
    return f"opsflow:heartbeat:{slice_id}"
