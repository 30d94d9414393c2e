"""A run's session takes the run's niceness.

A work horse adds OPSFLOW_WORKER_NICE to its niceness so that its runs take the CPU only when the API,
the ingester and the engines leave it. But where Linux schedules by session (autogroup, on by default),
niceness only orders processes within their session, and sessions share the CPU evenly: each run starts
in a session of its own (its pseudo-terminal), and Ansible starts each of its forks in another, so every
one of them took as much of the CPU as the whole service, whatever its niceness. Giving the run's
session, and each fork's, the run's niceness puts the run back behind the service.

Imports nothing from the Opsflow service.
"""

from __future__ import annotations

import errno
import os
import time

AUTOGROUP = "/proc/self/autogroup"
# Linux lets a process without CAP_SYS_ADMIN change a session's niceness once every 100 ms, machine-wide.
RETRY_SECONDS = 0.11


def take_niceness(path: str = AUTOGROUP, retry: bool = True) -> bool:
    """Give this process's session its niceness, trying once more 100 ms later if Linux asked to wait
    and `retry`; False where there is nothing to do or it cannot be done."""
    niceness = os.nice(0)
    if niceness <= 0:
        return False
    for pause in (0.0, RETRY_SECONDS) if retry else (0.0,):
        time.sleep(pause)
        try:
            with open(path, "w") as handle:
                handle.write(str(niceness))
            return True
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                return False
    return False


def nice_forks() -> None:
    """Each of Ansible's forks gives the session it starts the same niceness, at once or not at all: a
    fork does not wait for Linux's next 100 ms (a process with CAP_SYS_ADMIN never has to)."""
    from ansible.executor.process.worker import WorkerProcess

    # Where Ansible's forks do not detach, they stay in the run's session.
    detach = getattr(WorkerProcess, "_detach", None)
    if detach is None:
        return

    def detach_at_niceness(worker: WorkerProcess) -> None:
        detach(worker)
        take_niceness(retry=False)

    WorkerProcess._detach = detach_at_niceness
