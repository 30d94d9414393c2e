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
    STOPPING = "stopping"
    SUCCESS = "success"
    FAILED = "failed"
    TIMEOUT = "timeout"
    TERMINATED = "terminated"
    ABNORMAL = "abnormal"

    @property
    def final(self) -> bool:
        return self in RUN_FINAL


RUN_FINAL = frozenset(
    {RunStatus.SUCCESS, RunStatus.FAILED, RunStatus.TIMEOUT, RunStatus.TERMINATED, RunStatus.ABNORMAL}
)


class HostStatus(StrEnum):
    """The status of one host in one step."""

    WAITING = "waiting"
    RUNNING = "running"
    SUCCESS = "success"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    AUTH_FAILED = "auth_failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    ABNORMAL = "abnormal"

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
