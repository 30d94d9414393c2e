"""Syncing repositories: a job instance of kind repository_sync, with one step that acts on no host, run by
a job worker (never by the API). A sync that fails leaves the current revision as it was; one that works
makes its revision current, keeps the newest revisions (and any a job not ended yet uses) and removes
the others."""

from __future__ import annotations

import secrets
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.config import REPOSITORY_REVISIONS_KEPT, SYNC_TIMEOUT
from app.config import current as settings
from app.execution import discovery, sync
from app.execution.keys import cancel_key
from app.execution.runner import RunOutcome
from app.extensions import db, redis
from app.models import (
    Credential,
    JobInstance,
    LaunchType,
    Repository,
    RepositoryRevision,
    RunStatus,
    Slice,
    SourceType,
    StepInstance,
)
from app.models.base import utcnow
from app.services import executions, records
from app.services.access import Action, Actor, require
from app.services.errors import Conflict
from app.services.repositories import (
    ARCHIVE_FILE,
    REQUIREMENTS_DIR,
    REVISIONS_DIR,
    SYNC_KIND,
    directory_of,
    revision_dir,
)
from app.status import RUN_FINAL


def sync_step(
    repository: Repository, refresh: bool = False, if_older_than: int | None = None
) -> StepInstance:
    """The step that syncs a repository; with `if_older_than`, it does nothing when the current revision
    is younger than that many seconds by the time it runs."""
    return StepInstance(
        name=f"sync {repository.name}",
        kind=SYNC_KIND,
        host_count=0,
        spec={
            "repository_id": repository.id,
            "refresh_requirements": refresh,
            "if_older_than": if_older_than,
            "timeout": SYNC_TIMEOUT,
            "hostless": True,
        },
    )


def launch_sync(actor: Actor, project_id: int, repository_id: int, data: dict[str, Any]) -> JobInstance:
    """A job instance that syncs the repository on a worker; returns at once."""
    require(actor, project_id, Action.OPERATE)
    repository = records.get(Repository, repository_id, project_id)
    if repository.source_type == SourceType.ARCHIVE and repository.archive_sha256 is None:
        raise Conflict(f"repository {repository.name!r} has no archive yet: upload one first", "archive")
    executions.refuse_over_limit(project_id)
    job = JobInstance(
        project_id=project_id,
        name=f"sync {repository.name}",
        kind=SYNC_KIND,
        launched_by=actor.username,
        launch_type=LaunchType.API,
        request={"repository_id": repository.id, **data},
    )
    job.steps.append(sync_step(repository, data.get("refresh_requirements", False)))
    executions.enqueue(job, [[]])
    repository.last_sync_job_id = job.id
    db.session.commit()
    return job


class Beat:
    """Stops the sync on a cancel or past its deadline."""

    def __init__(self, piece: Slice, timeout: int) -> None:
        self.job_id = piece.step.job_instance_id
        self.deadline = time.monotonic() + timeout

    def __call__(self) -> None:
        now = time.monotonic()
        if redis.client.exists(cancel_key(self.job_id)):
            raise sync.Stopped(RunStatus.TERMINATED, "cancelled")
        if now > self.deadline:
            raise sync.Stopped(RunStatus.TIMEOUT, "the sync took longer than its timeout")


def compile_sync_slice(piece: Slice) -> executions.LocalWork:
    return executions.LocalWork(piece.step.job_instance_id, lambda: run_sync(piece))


def run_sync(piece: Slice) -> RunOutcome:
    """Sync the step's repository: its log goes to the step's output, its revision becomes current."""
    step = piece.step
    spec = step.spec
    repository = db.session.get(Repository, spec["repository_id"])
    if repository is None:
        return RunOutcome(RunStatus.FAILED, f"repository {spec['repository_id']} no longer exists")
    beat = Beat(piece, spec["timeout"])
    credential = db.session.get(Credential, repository.credential_id) if repository.credential_id else None
    log = sync.Log(secrets=credential.secrets if credential else [])
    lock = redis.client.lock(f"opsflow:repository:{repository.id}:sync", timeout=SYNC_TIMEOUT + 60)
    outcome = RunOutcome(RunStatus.SUCCESS)
    try:
        while not lock.acquire(blocking_timeout=1):
            beat()
        fresh = fresh_enough(repository, spec.get("if_older_than"))
        if fresh is not None:
            log.add(f"revision {fresh.revision} was synced at {fresh.synced_at.isoformat()}: fresh enough")
            row = fresh
        else:
            row = sync_now(repository, step, credential, spec.get("refresh_requirements", False), beat, log)
        resolve_pending(step.job, row)
    except sync.SyncFailed as exc:
        log.add(f"sync failed: {exc}")
        outcome = RunOutcome(RunStatus.FAILED, str(exc))
    except sync.Stopped as exc:
        outcome = RunOutcome(RunStatus(exc.status), str(exc))
    finally:
        if lock.owned():
            lock.release()
    db.session.rollback()
    db.session.get(StepInstance, step.id).output = log.text[-settings().output_cap_bytes :]
    db.session.commit()
    return outcome


def fresh_enough(repository: Repository, seconds: int | None) -> RepositoryRevision | None:
    current = repository.current_revision
    if seconds is None or current is None:
        return None
    return current if (utcnow() - current.synced_at).total_seconds() <= seconds else None


def sync_now(
    repository: Repository, step: StepInstance, credential: Credential | None, refresh: bool,
    beat: Any, log: sync.Log,
) -> RepositoryRevision:  # fmt: skip
    """Fetch or unpack, install requirements, discover; the new revision is made current."""
    config = settings()
    root = directory_of(repository.id)
    (root / REVISIONS_DIR).mkdir(parents=True, exist_ok=True)
    watch = sync.Watch(beat)
    with tempfile.TemporaryDirectory(prefix="opsflow-sync-") as scratch:
        home = Path(scratch)
        home.chmod(0o700)
        if repository.source_type == SourceType.GIT:
            login = sync.GitLogin(
                url=repository.url, branch=repository.branch,
                private_key=credential.private_key if credential else None,
                username=credential.username if credential else None,
                token=credential.token if credential else None,
                allow_file=config.git_allow_file,
            )  # fmt: skip
            revision, summary = sync.fetch(login, root / "git", home, watch, log)
        else:
            revision = repository.archive_sha256
            summary = (
                f"archive of {repository.archive_size} bytes uploaded by {repository.archive_uploaded_by}"
            )
        existing = db.session.scalar(
            select(RepositoryRevision).where(
                RepositoryRevision.repository_id == repository.id, RepositoryRevision.revision == revision
            )
        )
        target = revision_dir(repository.id, revision)
        if existing is not None and target.is_dir() and not refresh:
            log.add(f"revision {revision} is kept already: it is current again")
            existing.synced_at, existing.synced_by, existing.job_instance_id = (
                utcnow(),
                step.job.launched_by,
                step.job_instance_id,
            )
            row = existing
        else:
            staging = root / REVISIONS_DIR / f".{revision}-{secrets.token_hex(4)}"
            staging.mkdir()
            try:
                if repository.source_type == SourceType.GIT:
                    count = sync.checkout(
                        root / "git", revision, staging, home, watch, log, config.unpacked_max_bytes
                    )
                else:
                    count = sync.unpack_archive(root / ARCHIVE_FILE, staging, config.unpacked_max_bytes)
                log.add(f"{count} entries of revision {revision}")
                keys = sync.install_requirements(
                    staging, root / REQUIREMENTS_DIR, home, config.galaxy_server, config.git_allow_file,
                    refresh, watch, log,
                )  # fmt: skip
                found = discovery.discover(staging)
                log.add(
                    f"{len(found['playbooks'])} playbooks, {len(found['not_playbooks'])} other YAML files, "
                    f"{len(found['inventories'])} inventories"
                )
                sync.make_read_only(staging)
                sync.remove_tree(target)
                staging.rename(target)
            finally:
                sync.remove_tree(staging)
            if existing is not None:
                db.session.delete(existing)
                db.session.flush()
            row = RepositoryRevision(
                repository_id=repository.id, revision=revision, summary=summary,
                synced_by=step.job.launched_by, job_instance_id=step.job_instance_id,
                discovery=found, requirements=keys, file_count=count,
            )  # fmt: skip
            db.session.add(row)
        row.log = log.text[-config.output_cap_bytes :]
        db.session.flush()
        repository.current_revision_id = row.id
        db.session.commit()
    prune(repository)
    return row


def used_revisions(repository: Repository) -> set[str]:
    """Revisions named by steps of job instances not ended yet."""
    steps = db.session.scalars(
        select(StepInstance)
        .join(JobInstance, StepInstance.job_instance_id == JobInstance.id)
        .where(JobInstance.project_id == repository.project_id, JobInstance.status.not_in(RUN_FINAL))
    ).all()
    return {
        step.spec["revision"]
        for step in steps
        if step.spec.get("repository_id") == repository.id and step.spec.get("revision")
    }


def prune(repository: Repository) -> None:
    """Remove revisions beyond the newest ones kept, but those a job not ended yet uses, and the installed
    requirements no kept revision uses."""
    rows = repository.revisions
    used = used_revisions(repository)
    kept = rows[:REPOSITORY_REVISIONS_KEPT] + [
        row for row in rows[REPOSITORY_REVISIONS_KEPT:] if row.revision in used
    ]
    for row in rows:
        if row not in kept:
            sync.remove_tree(revision_dir(repository.id, row.revision))
            db.session.delete(row)
    db.session.commit()
    keys = {key for row in kept for key in row.requirements.values()}
    cache = directory_of(repository.id) / REQUIREMENTS_DIR
    if cache.is_dir():
        for path in cache.iterdir():
            if path.name not in keys and not path.name.startswith("."):
                sync.remove_tree(path)


def resolve_pending(job: JobInstance, row: RepositoryRevision) -> None:
    """Later steps of the job that run this repository's current revision run the one just synced."""
    for step in job.steps:
        spec = step.spec
        if (
            step.kind != SYNC_KIND
            and spec.get("repository_id") == row.repository_id
            and spec.get("revision") is None
        ):
            step.spec = {**spec, "revision": row.revision}
    db.session.commit()


executions.STEP_COMPILERS[SYNC_KIND] = compile_sync_slice
