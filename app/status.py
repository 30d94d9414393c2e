"""Every status value of the service, in one place.

Job instances, step instances and slices share `RunStatus`; each host of a step
has a `HostStatus`. The API documents both from here.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """The status of a job instance, a step instance or a slice."""

    WAITING = "waiting"
    RUNNING = "running"
    # A manual step, or a rolling step between batches, waits for someone to confirm it.
    WAITING_USER = "waiting_user"
    STOPPING = "stopping"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    TERMINATED = "terminated"
    ABNORMAL = "abnormal"
    SKIPPED = "skipped"
    # A step that failed and was told (or set) to let the job go on.
    IGNORED_ERROR = "ignored_error"

    @property
    def final(self) -> bool:
        return self in RUN_FINAL

    @property
    def failing(self) -> bool:
        return self in RUN_FAILING


# A job instance can leave a failing status again: retry, ignore or skip its failed step.
RUN_FAILING = frozenset({RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.TERMINATED, RunStatus.ABNORMAL})
RUN_FINAL = RUN_FAILING | {RunStatus.SUCCESS, RunStatus.SKIPPED, RunStatus.IGNORED_ERROR}


class HostStatus(StrEnum):
    """The status of one host in one step."""

    WAITING = "waiting"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth_failed"
    # The host answered with another SSH host key than the one its project recorded for it.
    HOST_KEY_CHANGED = "host_key_changed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ABNORMAL = "abnormal"
    # Its step was skipped before the host ran it.
    SKIPPED = "skipped"

    @property
    def final(self) -> bool:
        return self in HOST_FINAL


HOST_FINAL = frozenset(set(HostStatus) - {HostStatus.WAITING, HostStatus.RUNNING})
HOST_PENDING = frozenset({HostStatus.WAITING, HostStatus.RUNNING})

# What a host still pending becomes when its slice ends without a result for it.
HOST_STATUS_FOR_UNFINISHED = {
    RunStatus.TERMINATED: HostStatus.CANCELLED,
    RunStatus.TIMEOUT: HostStatus.TIMEOUT,
    RunStatus.ABNORMAL: HostStatus.ABNORMAL,
    RunStatus.FAILED: HostStatus.ABNORMAL,
    RunStatus.SUCCESS: HostStatus.ABNORMAL,
}


class TaskStatus(StrEnum):
    """How one task of a playbook (or an ad-hoc command) ended on one host."""

    OK = "ok"
    CHANGED = "changed"
    FAILED = "failed"
    SKIPPED = "skipped"
    UNREACHABLE = "unreachable"
    # Failed, with ignore_errors: the host went on.
    IGNORED = "ignored"
    # Failed inside a block whose rescue section then ran.
    RESCUED = "rescued"


class FileStatus(StrEnum):
    """What happened to one file on one target host of a transfer."""

    COPIED = "copied"
    # The host already held the identical file: nothing was sent.
    UNCHANGED = "unchanged"
    FAILED = "failed"


class VersionState(StrEnum):
    """The state of a script version: at most one version of a script is online."""

    DRAFT = "draft"
    ONLINE = "online"
    OFFLINE = "offline"
    DISABLED = "disabled"


class FlowTaskStatus(StrEnum):
    """The state of a flow task (one run of one flow version)."""

    CREATED = "created"
    RUNNING = "running"
    # No new node starts; running nodes finish.
    PAUSED = "paused"
    SUCCESS = "success"
    # A node failed and nothing else runs: retry or skip it, or revoke the task.
    FAILED = "failed"
    REVOKED = "revoked"

    @property
    def final(self) -> bool:
        return self in (FlowTaskStatus.SUCCESS, FlowTaskStatus.REVOKED)


# A failed task can go on again (retry or skip its failed node); until then it has ended, as a failed job
# instance has.
FLOW_TASK_FAILING = frozenset({FlowTaskStatus.FAILED, FlowTaskStatus.REVOKED})
FLOW_TASK_ENDED = FLOW_TASK_FAILING | {FlowTaskStatus.SUCCESS}


class NodeStatus(StrEnum):
    """The state of one node of a flow task."""

    WAITING = "waiting"
    READY = "ready"
    RUNNING = "running"
    # Held before it starts, by an operator's pause_before.
    PAUSED = "paused"
    # An approval waits for its approvers, a callback node for an outside system.
    WAITING_USER = "waiting_user"
    WAITING_CALLBACK = "waiting_callback"
    SUCCESS = "success"
    FAILED = "failed"
    SKIPPED = "skipped"
    REVOKED = "revoked"

    @property
    def done(self) -> bool:
        """The node has ended in a way that lets the flow go on past it."""
        return self in (NodeStatus.SUCCESS, NodeStatus.SKIPPED)

    @property
    def live(self) -> bool:
        """The node is running or waiting for something outside the engine."""
        return self in NODE_LIVE


NODE_LIVE = frozenset({NodeStatus.RUNNING, NodeStatus.WAITING_USER, NodeStatus.WAITING_CALLBACK})


class TimedRunStatus(StrEnum):
    """What became of one fire of a timed job."""

    # Claimed by a scheduler, being launched.
    FIRING = "firing"
    # Waits for the timed job's previous run to end (overlap: queue).
    QUEUED = "queued"
    LAUNCHED = "launched"
    # The previous run was still running (overlap: skip), or one run already waited.
    SKIPPED = "skipped"
    # Its time passed beyond the misfire grace (the schedulers were down or late).
    MISSED = "missed"
    FAILED_TO_LAUNCH = "failed_to_launch"
