"""Launching reachability checks: a job of one step that logs in to each host and runs a no-op."""

from __future__ import annotations

from typing import Any

from app.execution.compiler import compile_connection_test
from app.execution.runner import RunRequest
from app.models import JobInstance, Slice, StepInstance
from app.services import executions
from app.services.access import Action, Actor, require
from app.services.inventory import resolve_targets
from app.services.reachability import CHECK_JOB, CHECK_STEP


def launch_check(actor: Actor, project_id: int, data: dict[str, Any]) -> JobInstance:
    """Queue a check of the targets with the account; each host's verdict is written when it ends."""
    require(actor, project_id, Action.OPERATE)
    executions.refuse_over_limit(project_id)
    hosts = resolve_targets(project_id, data["targets"])
    account_id = data.get("account_id")
    executions.require_account(project_id, account_id, hosts, "account_id")
    job = JobInstance(
        project_id=project_id,
        name=data.get("name") or "reachability check",
        kind=CHECK_JOB,
        host_count=len(hosts),
        launched_by=actor.username,
    )
    job.steps.append(
        StepInstance(
            name=job.name,
            kind=CHECK_STEP,
            host_count=len(hosts),
            spec={"account_id": account_id, "timeout": data["timeout"], "forks": data.get("forks")},
        )
    )
    return executions.enqueue(job, [hosts])


def compile_check_slice(piece: Slice) -> RunRequest:
    targets = executions.slice_targets(piece)
    account = executions.step_account(piece.step.spec)
    compiled = compile_connection_test(targets, executions.login_of(account))
    return executions.run_request(piece, compiled, len(targets), account, [])


executions.STEP_COMPILERS[CHECK_STEP] = compile_check_slice
