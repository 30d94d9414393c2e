"""Ends a run's processes when the worker that started them dies.

The runner starts this in a session of its own with a pipe on stdin and keeps
the other end. When the worker exits, however it exits (RQ's kill of the work
horse, kill -9), the pipe closes, this reads end-of-file, and kills every
process that carries the run's marker.

Usage: python -m app.execution.watchdog MARKER
"""

from __future__ import annotations

import sys

from app.execution.process import kill_marked


def main(marker: str) -> None:
    sys.stdin.buffer.read()
    kill_marked(marker)


if __name__ == "__main__":
    main(sys.argv[1])
