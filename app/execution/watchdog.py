"""Ends a run's processes when the worker that started them dies.

The runner starts this in a session of its own with a pipe on stdin and keeps
the other end. A runner that cleaned up after its run writes "done" before it
closes the pipe. When the worker dies instead, however it dies (RQ's kill of the
work horse, kill -9), the pipe closes with nothing written, and this kills every
process of the run (app.execution.process) and removes the run's secret files.

Usage: python -m app.execution.watchdog MARKER CONTROL_DIR [SECRET_FILE...]
"""

from __future__ import annotations

import sys
from pathlib import Path

from app.execution.process import kill_marked

DONE = b"done"


def main(marker: str, control_dir: str, secret_files: list[str]) -> None:
    if sys.stdin.buffer.read() != DONE:
        kill_marked(marker, control_dir)
        for path in secret_files:
            Path(path).unlink(missing_ok=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
