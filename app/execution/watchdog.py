"""Ends a run's processes when the worker that started them dies, and reports the slice lost.

The runner starts this in a session of its own with a pipe on stdin and keeps
the other end. A runner that cleaned up after its run writes "done" before it
closes the pipe. When the worker dies instead, however it dies (RQ's kill of the
work horse, kill -9), the pipe closes with nothing written, and this kills every
process of the run (app.execution.process), removes the run's secret files, and
ends the slice as abnormal on the event stream, behind whatever the run sent: the
ingester marks its hosts at once instead of when the reaper finds the heartbeat
gone. The reaper still covers a watchdog that could not report; a slice ends once.

Usage: python -m app.execution.watchdog MARKER CONTROL_DIR [SECRET_FILE...]
with the stream named by OPSFLOW_REDIS_URL, OPSFLOW_EVENT_STREAM, OPSFLOW_SLICE_ID and OPSFLOW_SLICE_TOKEN.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from app.execution.process import kill_marked
from app.status import RunStatus

DONE = b"done"
WORKER_DIED = "the worker process running this slice died"


def report_lost(environ: dict[str, str]) -> None:
    # Loaded only when a worker has died: redis-py takes 80 ms of CPU to import, at the moment every
    # run's ansible-playbook starts on the same cores.
    from redis import Redis
    from redis.exceptions import RedisError

    from app.execution import events

    try:
        redis = Redis.from_url(environ["OPSFLOW_REDIS_URL"])
        slice_done = events.slice_done(int(environ["OPSFLOW_SLICE_ID"]), RunStatus.ABNORMAL, WORKER_DIED)
        slice_done["token"] = environ["OPSFLOW_SLICE_TOKEN"]
        events.publish(redis, environ["OPSFLOW_EVENT_STREAM"], [slice_done])
    except (KeyError, ValueError, RedisError) as exc:
        print(f"watchdog: the slice could not be reported lost ({exc}); the reaper will", file=sys.stderr)


def main(marker: str, control_dir: str, secret_files: list[str]) -> None:
    if sys.stdin.buffer.read() != DONE:
        kill_marked(marker, control_dir)
        shutil.rmtree(control_dir, ignore_errors=True)
        for path in secret_files:
            Path(path).unlink(missing_ok=True)
        report_lost(dict(os.environ))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
