"""The scheduler process: every enabled timed job in APScheduler's in-memory store, rebuilt from the
database at start and updated one timed job at a time by the Redis message each change sends.

APScheduler's thread only hands due times to a pool; a pool thread inserts the run row and launches (which
writes rows and enqueues: no Ansible ever runs here). Several schedulers may run at once: the unique run row
decides which one launches each fire.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from apscheduler.executors.base import BaseExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from flask import Flask
from redis.exceptions import ConnectionError as RedisConnectionError

from app.config import MISSED_LOOKBACK, Settings
from app.extensions import db, redis
from app.models import TimedJob
from app.models.base import utcnow
from app.scheduler.fire_times import ScheduleTrigger, next_fire
from app.services import timed_jobs

log = logging.getLogger("opsflow.scheduler")
FIRING_THREADS = 8
# How often queued runs (overlap: queue) and runs whose scheduler died before launching them are looked at.
RELEASE_INTERVAL = 1.0
RECONNECT_DELAY = 1.0


class FiringExecutor(BaseExecutor):
    """Runs a job's function on a pool with every due time at once, so that the function decides which of
    them still fire (within the misfire grace) and which were missed."""

    def __init__(self, threads: int) -> None:
        super().__init__()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="fire")

    def _do_submit_job(self, job, run_times: list[datetime]) -> None:
        # Fired when APScheduler's thread hands the due times over; the pool may take a moment to claim them.
        self.pool.submit(self.run, job, run_times, utcnow())

    def run(self, job, run_times: list[datetime], fired_at: datetime) -> None:
        try:
            job.func(*job.args, run_times=run_times, fired_at=fired_at)
        except Exception:
            log.exception("firing timed job %s failed", job.id)
        finally:
            self._run_job_success(job.id, [])

    def shutdown(self, wait: bool = True) -> None:
        self.pool.shutdown(wait)


class Scheduler:
    def __init__(self, app: Flask, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.store = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": FiringExecutor(FIRING_THREADS)},
            job_defaults={"coalesce": False, "misfire_grace_time": None, "max_instances": 1000},
            timezone="UTC",
        )

    def run(self, stopping: Callable[[], bool]) -> None:
        # Subscribed before the rebuild, so that no change made meanwhile is lost.
        pubsub = self.subscribe()
        self.rebuild()
        self.store.start()
        threading.Thread(target=self.listen, args=(pubsub, stopping), daemon=True, name="changes").start()
        log.info("scheduler started with %d timed jobs", len(self.store.get_jobs()))
        try:
            while not stopping():
                time.sleep(RELEASE_INTERVAL)
                with self.app.app_context():
                    timed_jobs.release_waiting()
        finally:
            self.store.shutdown(wait=True)

    def subscribe(self):
        pubsub = redis.client.pubsub(ignore_subscribe_messages=True)
        pubsub.subscribe(self.settings.timed_job_channel)
        return pubsub

    def listen(self, pubsub, stopping: Callable[[], bool]) -> None:
        while not stopping():
            try:
                message = pubsub.get_message(timeout=1.0)
            except RedisConnectionError:
                log.warning("lost the Redis connection; subscribing again and rebuilding every schedule")
                time.sleep(RECONNECT_DELAY)
                try:
                    pubsub = self.subscribe()
                    self.rebuild()
                except RedisConnectionError:
                    continue
                continue
            if message is None:
                continue
            try:
                self.refresh(int(message["data"]))
            except Exception:
                log.exception("could not take the change of timed job %s", message["data"])

    def rebuild(self) -> None:
        with self.app.app_context():
            ids = [timed_job.id for timed_job in timed_jobs.enabled_timed_jobs()]
        for timed_job_id in ids:
            self.refresh(timed_job_id)

    def refresh(self, timed_job_id: int) -> None:
        """Take this timed job's schedule as the database has it now, or drop it when it is gone or paused.
        Fires after the last recorded one (and after the schedule was set) are due; the firing decides
        which of them are still in the grace."""
        key = str(timed_job_id)
        with self.app.app_context():
            timed_job = db.session.get(TimedJob, timed_job_id)
            if timed_job is None or not timed_job.enabled:
                self.drop(key)
                return
            schedule = timed_jobs.schedule_of(timed_job)
            now = utcnow()
            lookback = timedelta(seconds=max(timed_job.misfire_grace, MISSED_LOOKBACK))
            since = timed_job.schedule_since - timedelta(microseconds=1)
            after = max(since, timed_jobs.last_scheduled(timed_job_id) or since, now - lookback)
            first = next_fire(schedule, after)
            grace = timed_job.misfire_grace
            if first is None:
                timed_jobs.disable_if_done(timed_job_id, after)
                self.drop(key)
                return
        self.store.add_job(
            self.fire,
            ScheduleTrigger(schedule),
            args=(timed_job_id, grace),
            id=key,
            replace_existing=True,
            next_run_time=first,
        )

    def drop(self, key: str) -> None:
        with contextlib.suppress(JobLookupError):
            self.store.remove_job(key)

    def fire(
        self,
        timed_job_id: int,
        grace: int,
        run_times: Sequence[datetime] = (),
        fired_at: datetime | None = None,
    ) -> None:
        """Fire the latest due time still within the grace (at most one catch-up after an outage); record
        the others as missed."""
        now = fired_at or utcnow()
        in_grace = [at for at in run_times if (now - at).total_seconds() <= grace]
        late = [at for at in run_times if at not in in_grace]
        with self.app.app_context():
            if late:
                reason = f"later than the misfire grace ({grace} s)"
                recorded = timed_jobs.record_missed(timed_job_id, late, now, reason)
                log.warning(
                    "timed job %s missed %d fire times (%d recorded)", timed_job_id, len(late), recorded
                )
            if len(in_grace) > 1:
                reason = f"one catch-up run only: {in_grace[-1].isoformat()} ran"
                timed_jobs.record_missed(timed_job_id, in_grace[:-1], now, reason)
            for at in in_grace[-1:]:
                timed_jobs.fire(timed_job_id, at, now)
