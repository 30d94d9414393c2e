"""Launching file transfers, compiling their slices, and reading their per-file results.

A transfer is one job instance: a fetch step per source path on hosts (all queued at once), then
one push step to the targets, queued when the fetch steps have ended (app/services/dispatch.py).
"""

from __future__ import annotations

import functools
import hashlib
import os
import subprocess
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Select, select

from app.config import INLINE_FILE_MAX_BYTES
from app.config import current as settings
from app.execution.bulk import insert_ignoring_duplicates
from app.execution.compiler import Target
from app.execution.runner import RunRequest
from app.execution.transfer import (
    Origin,
    PushFile,
    PushPlan,
    SpeedLimit,
    compile_fetch,
    compile_push,
    destinations,
    fetch_tasks,
    push_task_count,
)
from app.extensions import db
from app.models import (
    Connection,
    FileResult,
    FileStatus,
    Host,
    HostResult,
    HostStatus,
    JobInstance,
    LaunchType,
    OnFailure,
    Slice,
    StepInstance,
    StoredFile,
)
from app.models.base import utcnow
from app.services import executions, files, jobs, progress, records
from app.services.access import Action, Actor, require
from app.services.errors import Invalid, TooLarge, fields_under
from app.services.inventory import resolve_targets

FETCH, PUSH = "file_fetch", "file_push"
HASH_CHUNK_BYTES = 1024 * 1024
# Step names quote a path, which may be longer than a name column holds.
NAME_MAX_CHARS = 255


def checked_hosts(project_id: int, targets: dict[str, list[int]], field: str) -> list[Host]:
    """The hosts a transfer reaches through `targets` (as a script run's); errors name `field`."""
    hosts = resolve_targets(project_id, targets, field)
    refuse_winrm(hosts, field)
    return hosts


def refuse_winrm(hosts: list[Host], field: str) -> None:
    if any(host.connection == Connection.WINRM for host in hosts):
        raise Invalid("file transfers reach ssh and local hosts", field)


def controller_files(project_id: int, sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The uploaded and inline files of a launch, as the push step's spec records them."""
    chosen, names = [], {}
    for index, source in enumerate(sources):
        if "file_id" in source:
            [row] = records.get_many(StoredFile, [source["file_id"]], project_id, f"sources.{index}.file_id")
            entry = {
                "file_id": row.id,
                "name": row.name,
                "size": row.size,
                "sha256": row.sha256,
                "sha1": row.sha1,
            }
        elif "content" in source:
            content = source["content"].encode()
            if len(content) > INLINE_FILE_MAX_BYTES:
                raise TooLarge(
                    f"an inline file is at most {INLINE_FILE_MAX_BYTES} bytes: upload larger ones",
                    f"sources.{index}.content",
                )
            entry = {
                "name": files.checked_name(source["name"], f"sources.{index}.name"),
                "content": source["content"],
                "size": len(content),
                "sha256": hashlib.sha256(content).hexdigest(),
                "sha1": hashlib.sha1(content).hexdigest(),
            }
        else:
            continue
        if entry["name"] in names:
            raise Invalid(
                f"sources {names[entry['name']]} and {index} both write {entry['name']!r}",
                f"sources.{index}",
            )
        names[entry["name"]] = index
        chosen.append(entry)
    return chosen


def launch_transfer(
    actor: Actor,
    project_id: int,
    data: dict[str, Any],
    launch_type: LaunchType = LaunchType.API,
    relaunch_of: int | None = None,
) -> JobInstance:
    """Create the job instance of a file transfer and queue its first steps; returns at once."""
    require(actor, project_id, Action.OPERATE)
    executions.refuse_over_limit(project_id)
    targets = resolve_targets(project_id, data["targets"])
    now = utcnow()
    job = JobInstance(
        project_id=project_id,
        name=data.get("name") or "file transfer",
        kind="file_transfer",
        host_count=len(targets),
        launched_by=actor.username,
        launch_type=launch_type,
        relaunch_of_id=relaunch_of,
        request={key: value for key, value in data.items() if key != "idempotency"},
        created_at=now,
        idempotency=data.get("idempotency"),
    )
    planned = transfer_steps(project_id, data, targets, now, OnFailure.CONTINUE)
    job.steps.extend(step for step, _ in planned)
    return executions.enqueue(job, [hosts for _, hosts in planned])


def transfer_steps(
    project_id: int,
    data: dict[str, Any],
    targets: list[Host],
    now: datetime,
    fetch_failure: OnFailure,
    seq: int = 1,
    sources_under: str = "",
) -> list[tuple[StepInstance, list[Host]]]:
    """The steps of a transfer and the hosts of each: a fetch step per source path on hosts (seq `seq`),
    then the push to `targets`. A failed fetch does to the job what `fetch_failure` says; errors about
    sources name them under `sources_under`."""
    refuse_winrm(targets, "targets")
    executions.require_account(project_id, data.get("account_id"), targets, "account_id")
    fetches = []
    with fields_under(sources_under):
        stored = controller_files(project_id, data["sources"])
        for index, source in enumerate(data["sources"]):
            if "path" in source:
                field = f"sources.{index}"
                hosts = checked_hosts(project_id, source["source_hosts"], f"{field}.source_hosts")
                executions.require_account(project_id, source.get("account_id"), hosts, f"{field}.account_id")
                fetches.append((source, hosts))

    common = {"timeout": data["timeout"], "forks": data.get("forks"), "speed_limit": data.get("speed_limit")}
    planned: list[tuple[StepInstance, list[Host]]] = []
    for source, hosts in fetches:
        step = StepInstance(
            seq=seq,
            name=f"fetch {source['path']}"[:NAME_MAX_CHARS],
            kind=FETCH,
            host_count=len(hosts),
            task_count=len(fetch_tasks(source["path"], "")[0]),
            on_failure=fetch_failure,
            spec={"path": source["path"], "account_id": source.get("account_id"), **common},
        )
        planned.append((step, hosts))
    push = StepInstance(
        seq=seq + 1 if fetches else seq,
        name=f"push to {data['target_path']}"[:NAME_MAX_CHARS],
        kind=PUSH,
        host_count=len(targets),
        task_count=push_task_count(PushPlan(data["target_path"], data["mode"])),
        spec={
            "files": stored,
            "fetched": bool(fetches),
            "target_path": data["target_path"],
            "mode": data["mode"],
            "safe_layout": data["safe_layout"],
            "date": now.strftime(data["date_format"]),
            "account_id": data.get("account_id"),
            **common,
        },
    )
    planned.append((push, targets))
    return planned


def staging_of(job_id: int) -> Path:
    return settings().staging_dir / str(job_id)


def sha1_of(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as handle:
        while chunk := handle.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def fetched_files(step: StepInstance, hashed: bool = True) -> list[PushFile]:
    """What the fetch steps just before this push brought into staging, a directory per source host;
    unless `hashed`, without their SHA-1."""
    fetch_seq = step.seq - 1
    staging = staging_of(step.job_instance_id) / str(fetch_seq)
    sources = db.session.execute(
        select(HostResult.host_name, HostResult.address)
        .join(StepInstance, HostResult.step_instance_id == StepInstance.id)
        .where(
            StepInstance.job_instance_id == step.job_instance_id,
            StepInstance.kind == FETCH,
            StepInstance.seq == fetch_seq,
        )
        .distinct()
        .order_by(HostResult.host_name)
    ).all()
    found = []
    for name, address in sources:
        root = staging / name
        for directory, _, names in sorted(os.walk(root)):
            for filename in sorted(names):
                path = Path(directory) / filename
                found.append(
                    PushFile(
                        str(path),
                        str(path.relative_to(root)),
                        path.stat().st_size,
                        sha1_of(path) if hashed else "",
                        Origin(name, address),
                    )
                )
    return found


def files_to_push(step: StepInstance, to_send: bool = True) -> tuple[list[PushFile], dict[str, bytes]]:
    """The push step's files in their order, and the inline ones' bytes by their `src`; unless `to_send`,
    only what names them: no stored file looked up, no fetched file hashed."""
    spec = step.spec
    pushed, inline = [], {}
    for index, entry in enumerate(spec["files"]):
        if "file_id" not in entry:
            src = f"inline-{index}"
            inline[src] = entry["content"].encode()
        elif to_send:
            row = db.session.get(StoredFile, entry["file_id"])
            if row is None:
                raise Invalid(f"stored file {entry['file_id']} ({entry['name']}) was deleted before the push")
            src = str(files.path_of(row))
        else:
            src = entry["name"]
        pushed.append(PushFile(src, entry["name"], entry["size"], entry["sha1"], Origin()))
    if spec["fetched"]:
        pushed.extend(fetched_files(step, hashed=to_send))
    return pushed, inline


def push_plan(spec: dict[str, Any]) -> PushPlan:
    return PushPlan(
        spec["target_path"], spec["mode"], spec["safe_layout"], spec["date"], speed_limit_of(spec)
    )


def compile_push_slice(piece: Slice) -> RunRequest:
    step = piece.step
    pushed, inline = files_to_push(step)
    targets = executions.slice_targets(piece)
    account = executions.step_account(step.spec)
    compiled = compile_push(pushed, push_plan(step.spec), targets, executions.login_of(account), inline)
    # The run sees the stored files it sends and the files fetched for it, nothing else of the store.
    named = step.spec["files"]
    sent = zip(pushed[: len(named)], named, strict=True)
    stored = [Path(file.src) for file, entry in sent if "file_id" in entry]
    fetched = [staging_of(step.job_instance_id) / str(step.seq - 1)] if step.spec["fetched"] else []
    return executions.run_request(piece, compiled, len(targets), account, [], readable=stored + fetched)


def record_unsent_files(piece: Slice) -> None:
    """A push slice has ended: every file a host did not get because it failed before the file was sent
    gets a failed result with the host's reason, so each host lists each file."""
    failed = db.session.execute(
        select(HostResult.id, HostResult.host_name, HostResult.error).where(
            HostResult.slice_id == piece.id, HostResult.status != HostStatus.SUCCESS
        )
    ).all()
    if not failed:
        return
    step = piece.step
    pushed, _ = files_to_push(step, to_send=False)
    placed = destinations(pushed, push_plan(step.spec))
    rows = [
        {
            "job_instance_id": step.job_instance_id,
            "step_instance_id": step.id,
            "host_result_id": host.id,
            "host_name": host.host_name,
            "seq": seq,
            "path": path,
            "source": file.origin.name,
            "size": file.size,
            "status": FileStatus.FAILED,
            "error": f"not sent: {host.error or 'the host failed before this file'}",
        }
        for host in failed
        for seq, (file, _, path) in enumerate(placed, start=1)
    ]
    if rows:
        # Files the host did report keep their own result.
        db.session.execute(insert_ignoring_duplicates(FileResult), rows)


def compile_fetch_slice(piece: Slice) -> RunRequest:
    spec = piece.step.spec
    sources: list[Target] = executions.slice_targets(piece)
    account = executions.step_account(spec)
    # A job of several transfer steps keeps each one's fetched files apart.
    staging = staging_of(piece.step.job_instance_id) / str(piece.step.seq)
    staging.mkdir(parents=True, exist_ok=True)
    compiled = compile_fetch(
        spec["path"], str(staging), sources, executions.login_of(account), speed_limit_of(spec)
    )
    return executions.run_request(piece, compiled, len(sources), account, [], writable=[staging])


def speed_limit_of(spec: dict[str, Any]) -> SpeedLimit | None:
    """The speed limit (given in KB/s), for the scp of this controller."""
    if not spec.get("speed_limit"):
        return None
    return SpeedLimit(spec["speed_limit"] * 1000, scp_has_legacy_flag())


@functools.cache
def scp_has_legacy_flag() -> bool:
    """Whether the controller's scp takes -O (OpenSSH 8.7 and later); earlier ones refuse it."""
    try:
        probe = subprocess.run(["scp", "-O"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return True
    return "unknown option" not in probe.stderr


def file_results_query(job: JobInstance, filters: dict[str, Any]) -> Select:
    query = (
        select(FileResult)
        .join(HostResult, FileResult.host_result_id == HostResult.id)
        .where(FileResult.job_instance_id == job.id, jobs.attempt_filter(filters.get("attempt")))
    )
    if "step" in filters:
        query = query.where(FileResult.step_instance_id == filters["step"])
    if "host" in filters:
        query = query.where(FileResult.host_name == filters["host"])
    if "status" in filters:
        query = query.where(FileResult.status == filters["status"])
    return query.order_by(FileResult.step_instance_id, FileResult.host_name, FileResult.seq)


executions.RELAUNCHABLE["file_transfer"] = launch_transfer
executions.STEP_COMPILERS.update({FETCH: compile_fetch_slice, PUSH: compile_push_slice})
progress.AFTER_SLICE[PUSH] = record_unsent_files
