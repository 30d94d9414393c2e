"""A job's callback URL: POSTed the job's final status when it ends."""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from app.extensions import db
from app.models import JobInstance
from app.services.progress import counts_by_step

TIMEOUT_SECONDS = 10


def payload(job: JobInstance, status: str) -> dict[str, Any]:
    counts: dict[str, int] = {}
    for step_counts in counts_by_step(job.id).values():
        for host_status, count in step_counts.items():
            counts[host_status] = counts.get(host_status, 0) + count
    return {
        "job_instance_id": job.id,
        "project_id": job.project_id,
        "name": job.name,
        "status": status,
        "launched_by": job.launched_by,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "ended_at": job.ended_at.isoformat() if job.ended_at else None,
        "counts": counts,
        "steps": [{"id": step.id, "name": step.name, "status": step.status} for step in job.steps],
    }


def post(job_id: int, status: str) -> int:
    """POST the job's final status to its callback URL; raises on a refusal or an error, so the queue
    retries it."""
    job = db.session.get(JobInstance, job_id)
    if job is None or not job.callback_url:
        return 0
    return post_json(job.callback_url, payload(job, status))


def post_json(url: str, body: dict[str, Any]) -> int:
    """POST `body` as JSON to a callback URL; the status it answered, or an exception."""
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "Opsflow"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        return response.status
