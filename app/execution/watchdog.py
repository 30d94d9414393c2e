"""Ends a run's processes when the worker that started them dies.

The runner starts this in a session of its own with a pipe on stdin and keeps
the other end. A runner that cleaned up after its run writes "done" before it
closes the pipe. When the worker dies instead, however it dies (RQ's kill of the
work horse, kill -9), the pipe closes with nothing written, and this kills every
process that carries the run's marker.

Usage: python -m app.execution.watchdog MARKER
"""

from __future__ import annotations

import sys

from app.execution.process import kill_marked

DONE = b"done"


def main(marker: str) -> None:
    if sys.stdin.buffer.read() != DONE:
        kill_marked(marker)


if __name__ == "__main__":
    main(sys.argv[1])
