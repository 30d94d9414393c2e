"""Finding and ending every process of one run.

ansible-playbook runs in its own session (ansible-runner spawns it under a pty),
its forks and their ssh children may start sessions of their own, and ssh
ControlPersist masters detach from the tree entirely. Each run carries a marker
variable in its environment, which every process keeps, except ssh masters: ssh
writes its process title ("ssh: <control path> [mux]") over its environment. Those
are known by the run's own control directory in their title instead. Ending a run
means killing every process that carries its marker or names its control directory.
"""

from __future__ import annotations

import os
import signal
import time

import psutil

MARKER_VAR = "OPSFLOW_RUN_MARKER"


def marked(marker: str, control_dir: str | None = None) -> list[psutil.Process]:
    """The live processes of the run: its marker in their environment, or its control directory in
    their title."""
    found = []
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            titled = control_dir is not None and control_dir + os.sep in " ".join(process.cmdline())
            if titled or process.environ().get(MARKER_VAR) == marker:
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


def kill_marked(marker: str, control_dir: str | None = None, attempts: int = 5, wait: float = 2.0) -> int:
    """SIGKILL every process of the run, until none is left; returns how many were killed."""
    killed = 0
    for _ in range(attempts):
        processes = marked(marker, control_dir)
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
