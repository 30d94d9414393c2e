"""Calls to other systems that flow nodes make, on threads beside the engine.

An API may take minutes to answer; an engine waiting for it would hold every other task it serves. A
node's call runs on a thread of the process that started the node, once the node is recorded as waiting
for it. Its answer is written to the node as its outcome, unless the node moved meanwhile (force-failed,
revoked, given up on), and the task is advanced again. A process that dies mid-call leaves the node
waiting until its `give_up_at`, when the node fails (and is retried if it retries automatically).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from flask import Flask, current_app

from app.flows.atoms import Failed, Outcome
from app.models.base import utcnow

log = logging.getLogger(__name__)

# Calls one process makes at once; more wait for a free thread (their node waits all the same).
CALLS_AT_ONCE = 32
# Beyond a call's own timeouts and pauses: how long its answer may take to be written.
ANSWER_GRACE_SECONDS = 10
NO_ANSWER = "no answer was recorded in time: the process making the call stopped"

_pool = ThreadPoolExecutor(max_workers=CALLS_AT_ONCE, thread_name_prefix="flow-call")


def give_up_at(seconds: float) -> datetime:
    """When a node whose call may take `seconds` fails for want of an answer."""
    return utcnow() + timedelta(seconds=seconds + ANSWER_GRACE_SECONDS)


def after_recorded(
    task_id: int, node_id: str, attempt: int, call: Callable[[], Outcome]
) -> Callable[[], None]:
    """What to run once the node is recorded as waiting: the call, on a thread of this process."""
    app = current_app._get_current_object()
    return lambda: _pool.submit(_answer, app, task_id, node_id, attempt, call)


def _answer(app: Flask, task_id: int, node_id: str, attempt: int, call: Callable[[], Outcome]) -> None:
    from app.flows import engine

    try:
        outcome = call()
    except Exception as exc:
        log.exception("task %s: the call of node %s failed", task_id, node_id)
        outcome = Failed(f"the call failed: {exc}")
    with app.app_context():
        engine.record_answer(task_id, node_id, attempt, outcome)
