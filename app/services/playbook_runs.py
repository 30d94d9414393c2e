"""Running a repository's playbook: launched on its own (playbook-runs), as a template's playbook step, or
by a flow's playbook atom. The job records the revision it runs; a relaunch runs the same one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert

from app.extensions import db
from app.models import (
    Connection,
    CredentialKind,
    Host,
    HostResult,
    HostStatus,
    JobInstance,
    LaunchType,
    Repository,
    RepositoryRevision,
    StepInstance,
    StepType,
)
from app.models.job import PLAYBOOK_TASKS
from app.services import credentials, executions, records
from app.services.access import Action, Actor, require
from app.services.errors import Invalid
from app.services.inventory import resolve_targets
from app.services.repositories import revision_of
from app.services.repository_sync import fresh_enough, sync_step

JOB_KIND = "playbook_run"
# What a run names besides the repository and the playbook; copied into its step's spec.
RUN_FIELDS = (
    "inventory_file", "extra_vars", "tags", "skip_tags", "limit", "check", "diff", "verbosity", "become",
    "vault_credential_id", "account_id", "timeout", "forks",
)  # fmt: skip


@dataclass(frozen=True)
class InventoryHost:
    """A host of a repository's inventory file: it has a result row, but no host of the project."""

    name: str
    address: str
    id: None = None
    connection: str = Connection.SSH


def mode_of(body: dict[str, Any]) -> str:
    return next((mode for mode in ("syntax_check", "list_tasks", "list_hosts") if body.get(mode)), "run")


def check_playbook_of(row: RepositoryRevision, playbook: str, field: str = "playbook") -> None:
    """The revision has this playbook, or Invalid saying why the file is not one."""
    found = row.discovery
    if any(entry["path"] == playbook for entry in found.get("playbooks", [])):
        return
    reason = next(
        (entry["reason"] for entry in found.get("not_playbooks", []) if entry["path"] == playbook), None
    )
    why = f"it is not a playbook: {reason}" if reason else "there is no such playbook"
    raise Invalid(f"{playbook!r} in revision {row.revision[:12]}: {why}", field)


def inventory_hosts(
    row: RepositoryRevision, inventory_file: str, field: str = "inventory_file"
) -> list[InventoryHost]:
    entry = next(
        (entry for entry in row.discovery.get("inventories", []) if entry["path"] == inventory_file), None
    )
    if entry is None:
        raise Invalid(f"revision {row.revision[:12]} has no inventory file {inventory_file!r}", field)
    if entry["error"]:
        raise Invalid(f"Ansible cannot read {inventory_file!r}: {entry['error']}", field)
    return [InventoryHost(host["name"], host["address"]) for host in entry["hosts"]]


def check_repository_playbook(project_id: int, body: dict[str, Any]) -> None:
    """What a saved step can check of a repository's playbook: the repository and the vault credential
    exist, and the revision it runs (when synced already) has the playbook."""
    [repository] = records.get_many(Repository, [body["repository_id"]], project_id, "repository_id")
    if body.get("vault_credential_id") is not None:
        credentials.of_kind(
            project_id, body["vault_credential_id"], CredentialKind.VAULT, "vault_credential_id"
        )
    if body.get("revision") is not None or repository.current_revision is not None:
        check_playbook_of(revision_of(repository, body.get("revision")), body["playbook"])


def repository_steps(
    project_id: int, body: dict[str, Any], hosts: list[Host], seq: int = 1
) -> list[tuple[StepInstance, list]]:
    """The steps that run a repository playbook on `hosts` (or its inventory file's hosts): a sync first
    when the repository syncs on launch and its revision is older than its cache time."""
    repository = records.get_many(Repository, [body["repository_id"]], project_id, "repository_id")[0]
    steps: list[tuple[StepInstance, list]] = []
    row = None
    if (
        body.get("revision") is None
        and repository.sync_on_launch
        and fresh_enough(repository, repository.sync_cache_seconds) is None
    ):
        sync = sync_step(repository, if_older_than=repository.sync_cache_seconds)
        sync.seq = seq
        steps.append((sync, []))
    else:
        row = revision_of(repository, body.get("revision"))
        check_playbook_of(row, body["playbook"])
    if body.get("vault_credential_id") is not None:
        credentials.of_kind(
            project_id, body["vault_credential_id"], CredentialKind.VAULT, "vault_credential_id"
        )
    inventory_file = body.get("inventory_file")
    if inventory_file is None:
        executions.require_account(project_id, body.get("account_id"), hosts, "account_id")
    elif body.get("account_id") is not None:
        executions.require_account(project_id, body["account_id"], [], "account_id")
    members = inventory_hosts(row, inventory_file) if row is not None and inventory_file else hosts
    mode = mode_of(body)
    spec = {
        "repository_id": repository.id,
        "revision": row.revision if row else None,
        "playbook": body["playbook"],
        "mode": mode,
        **{name: body.get(name) for name in RUN_FIELDS},
        "extra_vars": body.get("extra_vars") or {},
        "tags": body.get("tags") or [],
        "skip_tags": body.get("skip_tags") or [],
        # A check or a listing touches no host: it runs once, and its answer is Ansible's output.
        "hostless": mode != "run",
        "host_ids": [host.id for host in hosts],
        # A repository's inventory is one inventory: its hosts run in one ansible-playbook.
        "whole": inventory_file is not None,
    }
    step_hosts = [] if mode != "run" else members
    step = StepInstance(
        seq=seq + len(steps),
        name=f"{repository.name}: {body['playbook']}"[:255],
        kind=StepType.PLAYBOOK,
        host_count=len(step_hosts),
        task_count=PLAYBOOK_TASKS,
        spec=spec,
    )
    steps.append((step, step_hosts))
    return steps


def launch_playbook_run(
    actor: Actor,
    project_id: int,
    data: dict[str, Any],
    launch_type: LaunchType = LaunchType.API,
    relaunch_of: int | None = None,
    timed_job_id: int | None = None,
) -> JobInstance:
    """Create the job instance of a repository playbook's run and queue it; returns at once."""
    require(actor, project_id, Action.OPERATE)
    executions.refuse_over_limit(project_id)
    hosts = resolve_targets(project_id, data["targets"]) if data.get("targets") else []
    planned = repository_steps(project_id, data, hosts)
    step = planned[-1][0]
    request = {key: value for key, value in data.items() if key != "idempotency"}
    request["revision"] = step.spec["revision"]
    job = JobInstance(
        project_id=project_id,
        name=data.get("name") or step.name,
        kind=JOB_KIND,
        host_count=step.host_count,
        launched_by=actor.username,
        launch_type=launch_type,
        relaunch_of_id=relaunch_of,
        timed_job_id=timed_job_id,
        request=request,
        idempotency=data.get("idempotency"),
    )
    job.steps.extend(instance for instance, _ in planned)
    return executions.enqueue(job, [members for _, members in planned])


def add_inventory_hosts(step: StepInstance, row: RepositoryRevision) -> None:
    """The result rows of a step whose repository inventory was not known at launch (a sync ran first)."""
    hosts = inventory_hosts(row, step.spec["inventory_file"])
    [piece] = step.slices
    db.session.execute(
        insert(HostResult),
        [
            {
                "job_instance_id": step.job_instance_id,
                "step_instance_id": step.id,
                "slice_id": piece.id,
                "host_name": host.name,
                "address": host.address,
                "status": HostStatus.WAITING,
            }
            for host in hosts
        ],
    )
    step.host_count = piece.host_count = len(hosts)


executions.RELAUNCHABLE[JOB_KIND] = launch_playbook_run
