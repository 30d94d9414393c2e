"""Finding and ending every process of one run.

ansible-playbook runs in its own session (ansible-runner spawns it under a pty),
its forks and their ssh children may start sessions of their own, and ssh
ControlPersist masters detach from the tree entirely. What they all keep is the
environment, so each run carries a marker variable, and ending a run means
killing every process that carries its marker.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

MARKER_VAR = "OPSFLOW_RUN_MARKER"


def marked(marker: str) -> list[psutil.Process]:
    """The live processes whose environment carries this run's marker."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.environ().get(MARKER_VAR) == marker:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def gone(process: psutil.Process) -> bool:
    """Dead: exited, or a zombie. A killed ControlPersist master belongs to init, which reaps
    it when it gets round to it; waiting for that would only add seconds to every run."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def kill_marked(marker: str, attempts: int = 5, wait: float = 2.0) -> int:
    """SIGKILL every process of the run, until none is left; returns how many were killed."""
    killed = 0
    for _ in range(attempts):
        processes = marked(marker)
        if not processes:
            break
        for process in processes:
            try:
                process.send_signal(signal.SIGKILL)
                killed += 1
            except psutil.NoSuchProcess:
                continue
        deadline = time.monotonic() + wait
        while not all(gone(process) for process in processes) and time.monotonic() < deadline:
            time.sleep(0.01)
    return killed
