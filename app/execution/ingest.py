"""The ingester: reads the event stream with a consumer group and writes it to the database.

Events are applied in bulk, one transaction per read, and acknowledged only
after the commit. Applying the same events twice changes nothing: task and file
results are inserted with ON CONFLICT DO NOTHING, and a host's status only moves
forward (waiting → running → final).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy import Boolean, Integer, String, Text, func, or_, select

from app.execution.bulk import BulkUpdate, insert_rows
from app.execution.events import genuine
from app.extensions import db
from app.models import (
    FileResult,
    FileStatus,
    HostResult,
    HostStatus,
    RunStatus,
    Slice,
    StepInstance,
    TaskResult,
)
from app.models.base import UTCDateTime
from app.models.job import AD_HOC, PLAYBOOK_TASKS, digest_of
from app.secrets import Cipher
from app.services.dispatch import after_commit
from app.services.progress import finish_slice
from app.status import HOST_PENDING

log = logging.getLogger(__name__)

GROUP = "ingest"
AUTH_FAILURE = re.compile(
    r"Permission denied \(|Authentication failed|[Ii]ncorrect (sudo )?password|Missing sudo password"
)
# Ansible reports a file it could not send to a host it had just run a command on as a connection
# failure; the host was reached, and what failed is the transfer.
TRANSFER_FAILURE = re.compile(r"Failed to connect to the host via (scp|sftp): ")
# A read takes about this many events (one transaction), whatever the size of the entries: runs push many
# small ones when their hosts report slowly, entries of the plugin's full batch when they report fast.
# The more of a host's results one read holds, the fewer times its row is written.
READ_EVENTS = 50_000
READ_ENTRIES_MAX = 5_000
# A rescued failure is no host's failure: the block's rescue took it.
OK_OUTCOMES = frozenset({"ok", "changed", "skipped", "rescued"})


# What ssh says when a host's key differs from the one recorded for it.
HOST_KEY_CHANGE = re.compile(r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for \S+ has changed")


def connection_failure(msg: str, otherwise: HostStatus) -> HostStatus:
    """The status of a host whose connection failed with `msg`: a changed host key, refused
    credentials, or `otherwise`."""
    if HOST_KEY_CHANGE.search(msg):
        return HostStatus.HOST_KEY_CHANGED
    if AUTH_FAILURE.search(msg):
        return HostStatus.AUTH_FAILED
    return otherwise


def timestamp(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def host_status(outcome: str, msg: str, task_count: int) -> HostStatus:
    """A host's status after one task result; RUNNING while more tasks may follow."""
    if outcome == "unreachable":
        if TRANSFER_FAILURE.search(msg):
            return HostStatus.FAILED
        return connection_failure(msg, HostStatus.UNREACHABLE)
    if outcome == "failed" and task_count == PLAYBOOK_TASKS:
        # A user's playbook may rescue a failed task (block/rescue): its recap decides.
        return HostStatus.RUNNING
    single_task = task_count == 1
    if outcome == "failed":
        return connection_failure(msg, HostStatus.FAILED)
    if not single_task:
        return HostStatus.RUNNING
    return HostStatus.FAILED if outcome == "ignored" else HostStatus.SUCCESS


def error_of(outcome: str, msg: str) -> str | None:
    """What a task result tells of a host's failure: nothing when the task went well."""
    if outcome in OK_OUTCOMES or not msg:
        return None
    return TRANSFER_FAILURE.sub(lambda match: f"sending a file with {match.group(1)} failed: ", msg)


def recap_status(summary: dict[str, int]) -> HostStatus:
    if summary.get("unreachable"):
        return HostStatus.UNREACHABLE
    if summary.get("failures"):
        return HostStatus.FAILED
    return HostStatus.SUCCESS


# Core statements on the table, with no ORM session bookkeeping.
_table = HostResult.__table__
_hosts = _table.c
# Spelled out rather than IN (...): an expanding IN cannot go through executemany.
_pending = or_(*(_hosts.status == status for status in HOST_PENDING))

START = BulkUpdate(
    _table,
    _hosts.status == HostStatus.WAITING,
    lambda given: {
        "status": HostStatus.RUNNING,
        "started_at": func.coalesce(_hosts.started_at, given("ts")),
    },
    ts=UTCDateTime(),
)
RESULT = BulkUpdate(
    _table,
    _pending,
    lambda given: {
        "status": given("status"),
        "exit_code": given("rc"),
        "stdout": given("stdout"),
        "output_digest": given("digest"),
        "stderr": given("stderr"),
        "stdout_truncated": given("stdout_truncated"),
        "stderr_truncated": given("stderr_truncated"),
        "error": given("msg"),
        "started_at": func.coalesce(_hosts.started_at, given("start")),
        "ended_at": given("ended"),
    },
    status=String(),
    rc=Integer(),
    stdout=Text(),
    digest=String(),
    stderr=Text(),
    stdout_truncated=Boolean(),
    stderr_truncated=Boolean(),
    msg=Text(),
    start=UTCDateTime(),
    ended=UTCDateTime(),
)
RECAP = BulkUpdate(
    _table,
    _pending,
    lambda given: {"status": given("status"), "ended_at": given("ended")},
    status=String(),
    ended=UTCDateTime(),
)


def vouched_for(events: list[dict[str, Any]], key: bytes) -> list[dict[str, Any]]:
    """The events that carry their slice's token; the others were added by a run for a slice not its own."""
    kept = []
    for event in events:
        try:
            vouched = genuine(key, event)
        except (AttributeError, KeyError, TypeError, ValueError):
            vouched = False
        if vouched:
            kept.append(event)
        else:
            log.warning("event without its slice's token dropped: %.100r", event)
    return kept


@dataclass(frozen=True)
class SliceFacts:
    """What applying a slice's events needs to know of it: its step, and its hosts' rows by name."""

    task_count: int
    kind: str
    step_id: int
    job_instance_id: int
    hosts: dict[str, int]


class KnownSlices:
    """The facts of the slices whose events are being read, kept between reads: a slice's step and its
    hosts' rows are written before its run starts and never change, so a run's many small reads need not
    read its hosts again each time (at 500 hosts that was most of a read's work). A finished slice is
    forgotten; the least recently used go beyond `limit`."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = limit
        self._facts: OrderedDict[int, SliceFacts] = OrderedDict()

    def of(self, slice_ids: Iterable[int]) -> dict[int, SliceFacts]:
        """The facts of those of `slice_ids` that exist."""
        wanted = set(slice_ids)
        self._facts.update(read_slices(wanted - self._facts.keys()))
        found = {slice_id: self._facts[slice_id] for slice_id in wanted if slice_id in self._facts}
        for slice_id in found:
            self._facts.move_to_end(slice_id)
        while len(self._facts) > self.limit:
            self._facts.popitem(last=False)
        return found

    def forget(self, slice_id: int) -> None:
        self._facts.pop(slice_id, None)


def read_slices(slice_ids: set[int]) -> dict[int, SliceFacts]:
    if not slice_ids:
        return {}
    hosts: dict[int, dict[str, int]] = {slice_id: {} for slice_id in slice_ids}
    for id, slice_id, name in db.session.execute(
        select(HostResult.id, HostResult.slice_id, HostResult.host_name).where(
            HostResult.slice_id.in_(slice_ids)
        )
    ):
        hosts[slice_id][name] = id
    return {
        row.id: SliceFacts(row.task_count, row.kind, row.step_id, row.job_instance_id, hosts[row.id])
        for row in db.session.execute(
            select(
                Slice.id,
                StepInstance.task_count,
                StepInstance.kind,
                StepInstance.id.label("step_id"),
                StepInstance.job_instance_id,
            )
            .join(StepInstance, Slice.step_instance_id == StepInstance.id)
            .where(Slice.id.in_(slice_ids))
        )
    }


def apply_events(events: list[dict[str, Any]], known: KnownSlices | None = None) -> None:
    """Write a batch of events in the current transaction; `known` keeps what it read of their slices
    for the next batch."""
    known = KnownSlices() if known is None else known
    slices = known.of(event["slice"] for event in events)
    starts: dict[int, dict] = {}
    # Each host's results of the batch come down to one row, the first final one or else the last: a host
    # whose row is final takes no other result.
    results: dict[int, tuple[dict[str, Any], HostStatus, float]] = {}
    recaps: dict[int, dict[str, Any]] = {}
    tasks, done, files = [], [], []
    for event in events:
        kind, slice_id = event["type"], event["slice"]
        piece = slices.get(slice_id)
        if piece is None:
            log.warning("event for unknown slice %s dropped", slice_id)
            continue
        if kind == "slice_done":
            done.append(event)
        elif kind == "stats":
            ended = timestamp(event["ts"])
            for name, summary in event["hosts"].items():
                hid = piece.hosts.get(name)
                # A host's first recap ends it; any other would change nothing.
                if hid is not None and hid not in recaps:
                    recaps[hid] = {"target": hid, "status": recap_status(summary), "ended": ended}
        elif (hid := piece.hosts.get(event["host"])) is None:
            log.warning("event for unknown host %r of slice %s dropped", event["host"], slice_id)
        elif kind == "file_result":
            files.append(file_row(piece, hid, event))
        elif kind == "task_start":
            starts.setdefault(hid, {"ts": timestamp(event["ts"])})
        elif kind == "task_result":
            # A one-task step's result is its host's result; an ad-hoc command's is shown as a task too.
            keep_task = piece.task_count != 1 or piece.kind == AD_HOC
            earlier = results.get(hid)
            if earlier is None or not earlier[1].final:
                status = host_status(event["outcome"], event["msg"], piece.task_count)
                # The host's start is its first result's, as when each result was written in turn.
                results[hid] = (event, status, event["start"] if earlier is None else earlier[2])
            if keep_task:
                tasks.append(task_row(hid, event))
    START.execute([{"target": hid, **values} for hid, values in starts.items()])
    insert_rows(TaskResult, tasks)
    RESULT.execute([result_row(hid, *result) for hid, result in results.items()])
    RECAP.execute(list(recaps.values()))
    insert_rows(FileResult, files)
    for event in done:
        finish_slice(event["slice"], RunStatus(event["status"]), event.get("error"))
        known.forget(event["slice"])


def result_row(
    host_result_id: int, event: dict[str, Any], status: HostStatus, start: float
) -> dict[str, Any]:
    """A host's row after its task result `event`."""
    return {
        "target": host_result_id,
        "status": status,
        "rc": event["rc"],
        "stdout": event["stdout"],
        "digest": digest_of(event["stdout"]),
        "stderr": event["stderr"],
        "stdout_truncated": event["stdout_truncated"],
        "stderr_truncated": event["stderr_truncated"],
        "msg": error_of(event["outcome"], event["msg"]),
        "start": timestamp(start),
        "ended": timestamp(event["end"]) if status.final else None,
    }


def file_row(piece: SliceFacts, host_result_id: int, event: dict[str, Any]) -> dict[str, Any]:
    """A transfer's file on one host, from the loop item that pushed it."""
    failed = event["outcome"] == "failed"
    status = FileStatus.FAILED if failed else FileStatus.COPIED if event["changed"] else FileStatus.UNCHANGED
    return {
        "job_instance_id": piece.job_instance_id,
        "step_instance_id": piece.step_id,
        "host_result_id": host_result_id,
        "host_name": event["host"],
        "seq": event["seq"],
        "path": event["path"],
        "source": event["source"],
        "size": event["size"],
        "status": status,
        "error": (error_of(event["outcome"], event["msg"]) or "failed") if failed else None,
        "checksum_verified": checksum_verified(failed, event["msg"]),
        "started_at": timestamp(event["start"]),
        "ended_at": timestamp(event["end"]),
    }


def checksum_verified(failed: bool, msg: str) -> bool | None:
    """A file pushed or left unchanged matched the source's checksum on the target; a failure says
    whether the checksum was the reason."""
    if not failed:
        return True
    return False if "checksum" in (msg or "").lower() else None


def task_row(host_result_id: int, event: dict[str, Any]) -> dict[str, Any]:
    role = event.get("role")
    return {
        "host_result_id": host_result_id,
        "seq": event["seq"],
        "task": event["task"][:255],
        "role": role[:255] if role else None,
        "action": event["action"][:128],
        "outcome": event["outcome"],
        "changed": bool(event.get("changed")),
        "exit_code": event["rc"],
        "stdout": event["stdout"],
        "stderr": event["stderr"],
        "msg": event["msg"],
        "diff": event.get("diff") or None,
        "started_at": timestamp(event["start"]),
        "ended_at": timestamp(event["end"]),
    }


class Ingester:
    """Consumes the event stream as one member of the `ingest` consumer group."""

    def __init__(
        self,
        redis: Redis,
        stream: str,
        consumer: str,
        batch: int = 200,
        block_ms: int = 500,
        read_events: int = READ_EVENTS,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.consumer = consumer
        # Entries per read: `batch` at first, then as many as hold about `read_events` events.
        self.batch = batch
        self.read_events = read_events
        self.block_ms = block_ms
        # Entries read before a crash and never acknowledged come first.
        self.cursor = "0"
        self.known = KnownSlices()

    def ensure_group(self) -> None:
        try:
            self.redis.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def consume(self) -> int:
        """Read, apply and acknowledge one batch; returns how many entries it took."""
        try:
            reply = self.redis.xreadgroup(
                GROUP, self.consumer, {self.stream: self.cursor}, count=self.batch, block=self.block_ms
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            # Redis restarted without the stream: make the group again and read from its start.
            self.ensure_group()
            self.cursor = "0"
            return 0
        entries = reply[0][1] if reply else []
        if not entries and self.cursor == "0":
            self.cursor = ">"
        if entries:
            try:
                events = self.apply(entries)
            except Exception:
                # Unacknowledged entries are re-read before anything newer, so order is kept.
                self.cursor = "0"
                raise
            self.batch = max(1, min(READ_ENTRIES_MAX, self.read_events * len(entries) // max(events, 1)))
        return len(entries)

    def claim_abandoned(self, min_idle_ms: int = 60_000) -> int:
        """Take over entries another consumer read but never acknowledged."""
        # Redis 6.2 answers [cursor, entries]; 7 adds the ids of deleted entries.
        reply = self.redis.xautoclaim(self.stream, GROUP, self.consumer, min_idle_ms, count=self.batch)
        entries = [entry for entry in reply[1] if entry[1]]
        if entries:
            self.apply(entries)
        return len(entries)

    def apply(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> int:
        """Write the entries' events in one transaction, then acknowledge them; returns how many events
        they held."""
        ids = [entry_id for entry_id, _ in entries]
        events = []
        for entry_id, fields in entries:
            try:
                events.extend(json.loads(fields[b"events"]))
            except (KeyError, ValueError):
                log.error("malformed stream entry %s dropped", entry_id)
        try:
            apply_events(vouched_for(events, Cipher.configured_key()), self.known)
            db.session.commit()
        except Exception:
            db.session.rollback()
            raise
        pipe = self.redis.pipeline(transaction=False)
        pipe.xack(self.stream, GROUP, *ids)
        pipe.xdel(self.stream, *ids)
        pipe.execute()
        after_commit()
        return len(events)

    def run(self, should_stop: Callable[[], bool], every: Callable[[], None], interval: float) -> None:
        """Consume until told to stop, calling `every` (the reaper) each `interval` seconds."""
        last = 0.0
        while not should_stop():
            try:
                self.consume()
                if time.monotonic() - last >= interval:
                    last = time.monotonic()
                    self.claim_abandoned()
                    every()
            except (RedisConnectionError, RedisTimeoutError) as exc:
                log.warning("Redis cannot be reached (%s); retrying", exc)
                time.sleep(1)
            except Exception:
                log.exception("ingestion failed; retrying")
                time.sleep(1)
