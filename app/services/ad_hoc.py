"""Launching ad-hoc commands (`ansible -m`) and compiling their slices.

An ad-hoc command is a job instance of kind `ad_hoc` with one step of the same kind: queued, sliced, run,
ingested, cancelled and relaunched as a script execution is, under the same rules (operators launch; an
account unless every host is local; local hosts, and modules that read the controller's files, only in a
sandbox; the dangerous-command rules read a free-form module's command line).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from app.config import current as settings
from app.execution.ad_hoc import (
    FREE_FORM,
    AdHocCommand,
    allowed,
    command_text,
    compile_ad_hoc,
    controller_use,
    parse_args,
    short_name,
)
from app.execution.isolation import isolation
from app.execution.runner import RunRequest
from app.models import JobInstance, LaunchType, Slice, StepInstance
from app.models.job import AD_HOC
from app.services import danger, executions
from app.services.access import Action, Actor, require
from app.services.errors import Invalid
from app.services.inventory import resolve_targets

SPEC_KEYS = ("module", "args", "become", "check", "diff", "account_id", "timeout", "forks")


def checked_module(module: str) -> None:
    modules = settings().ad_hoc_modules
    if not allowed(module, modules):
        raise Invalid(
            f"{module!r} is not a module ad-hoc commands may run; allowed: {', '.join(modules)} "
            "(OPSFLOW_AD_HOC_MODULES)",
            "module",
        )


def checked_args(module: str, args: Any) -> dict[str, Any]:
    try:
        return parse_args(module, args)
    except ValueError as exc:
        raise Invalid(str(exc), "args") from None


def launch_ad_hoc(
    actor: Actor,
    project_id: int,
    data: dict[str, Any],
    launch_type: LaunchType = LaunchType.API,
    relaunch_of: int | None = None,
) -> JobInstance:
    """Create the job instance of an ad-hoc command and queue its slices; returns at once."""
    require(actor, project_id, Action.OPERATE)
    executions.refuse_over_limit(project_id)
    module = data["module"]
    checked_module(module)
    args = checked_args(module, data.get("args"))
    hosts = resolve_targets(project_id, data["targets"])
    executions.require_account(project_id, data.get("account_id"), hosts, "account_id")
    if data.get("become") and data.get("account_id") is None:
        raise Invalid("become needs an account: its become method, user and password", "become")
    warnings: list = []
    command = command_text(args) if short_name(module) in FREE_FORM else None
    if command is not None:
        danger.refuse_oversized(command, "args")
        verdict = danger.check(project_id, command, "shell")
        danger.refuse_intercepted(verdict, "args")
        warnings = verdict.warnings
    isolation(settings()).refuse(controller_use(module, args), "args")
    step = StepInstance(
        name=module,
        kind=AD_HOC,
        host_count=len(hosts),
        spec={key: data.get(key) for key in SPEC_KEYS},
    )
    job = JobInstance(
        project_id=project_id,
        name=data.get("name") or f"ad-hoc {module}",
        kind=AD_HOC,
        host_count=len(hosts),
        launched_by=actor.username,
        launch_type=launch_type,
        relaunch_of_id=relaunch_of,
        request={key: value for key, value in data.items() if key != "idempotency"},
        warnings=warnings,
        idempotency=data.get("idempotency"),
    )
    job.steps.append(step)
    return executions.enqueue(job, [hosts])


def compile_ad_hoc_slice(piece: Slice) -> RunRequest:
    spec = piece.step.spec
    targets = executions.slice_targets(piece)
    account = executions.step_account(spec)
    login = executions.login_of(account)
    if login is not None and spec.get("become") is not None:
        login = replace(login, become=spec["become"])
    module = spec["module"]
    command = AdHocCommand(
        module, parse_args(module, spec.get("args")), bool(spec.get("check")), bool(spec.get("diff"))
    )
    return executions.run_request(piece, compile_ad_hoc(command, targets, login), len(targets), account, [])


executions.RELAUNCHABLE[AD_HOC] = launch_ad_hoc
executions.STEP_COMPILERS[AD_HOC] = compile_ad_hoc_slice
