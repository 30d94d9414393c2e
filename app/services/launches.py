"""Launching a job template or a plan: values checked, steps built, the job instance queued."""

from __future__ import annotations

import json
from typing import Any

from app.models import (
    Host,
    JobInstance,
    JobPlan,
    JobTemplate,
    LaunchType,
    OnFailure,
    RollingMode,
    StepInstance,
    StepType,
    VariableType,
)
from app.models.base import utcnow
from app.models.job import PLAYBOOK_TASKS

# playbook_steps registers how workers compile playbook steps.
from app.services import (
    executions,
    playbook_runs,
    playbook_steps,  # noqa: F401
    records,
    rolling,
    templates,
    transfers,
    variables,
)
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, fields_under
from app.services.inventory import resolve_targets

JOB_KIND = "job"


def launch_template(
    actor: Actor, project_id: int, template_id: int, data: dict[str, Any], **launched: Any
) -> JobInstance:
    """Run every step of a template with its defaults and the launch's values."""
    require(actor, project_id, Action.OPERATE)
    template = records.get(JobTemplate, template_id, project_id)
    return launch(actor, project_id, data, template, templates.expand(template), **launched)


def launch_plan(
    actor: Actor, project_id: int, plan_id: int, data: dict[str, Any], **launched: Any
) -> JobInstance:
    """Run a plan's enabled steps with its values and the launch's."""
    require(actor, project_id, Action.OPERATE)
    plan = records.get(JobPlan, plan_id, project_id)
    return launch(actor, project_id, data, plan.template, plan_steps(plan), plan, **launched)


def plan_steps(plan: JobPlan) -> templates.Expanded:
    """The steps a plan runs and the variables they read, with its values as secret defaults."""
    enabled = set(plan.enabled_steps)
    return templates.Expanded(
        [step for step in plan.steps if step["key"] in enabled],
        plan.variables,
        {**plan.secret_default_values, **plan.own_secret_values},
        plan.template_versions,
    )


def checked_values(
    project_id: int, expanded: templates.Expanded, plan: JobPlan | None, overrides: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, list[Host]]]:
    """The variables' values a launch with these overrides runs with, and the hosts of each host list;
    Invalid naming `variables.<name>` when one is wrong."""
    definitions = expanded.variables
    defaults = {definition["name"]: definition.get("default") for definition in definitions}
    defaults.update(plan.values if plan else {})
    values = variables.launch_values(definitions, defaults, expanded.secret_defaults, overrides)
    kinds = {definition["name"]: definition["type"] for definition in definitions}
    host_lists = {
        name: resolve_targets(project_id, value, f"variables.{name}")
        for name, value in values.items()
        if kinds[name] == VariableType.HOST_LIST
    }
    return values, host_lists


def launch(
    actor: Actor,
    project_id: int,
    data: dict[str, Any],
    template: JobTemplate,
    expanded: templates.Expanded,
    plan: JobPlan | None = None,
    launch_type: LaunchType = LaunchType.API,
    relaunch_of: int | None = None,
    timed_job_id: int | None = None,
) -> JobInstance:
    """Launch these steps with these variables: the launch's values, else the plan's, else the defaults."""
    definitions = expanded.variables
    executions.refuse_over_limit(project_id)
    values, host_lists = checked_values(project_id, expanded, plan, data["variables"])
    kinds = {definition["name"]: definition["type"] for definition in definitions}
    now = utcnow()
    job = JobInstance(
        project_id=project_id,
        name=data.get("name") or (plan.name if plan else template.name),
        kind=JOB_KIND,
        launched_by=actor.username,
        launch_type=launch_type,
        relaunch_of_id=relaunch_of,
        timed_job_id=timed_job_id,
        template_id=template.id,
        plan_id=plan.id if plan else None,
        callback_url=data.get("callback_url"),
        idempotency=data.get("idempotency"),
        # Secret values stay out of the request, which is shown; they are kept encrypted below.
        request={
            "template_id": template.id,
            "plan_id": plan.id if plan else None,
            "name": data.get("name"),
            "variables": {
                name: value for name, value in data["variables"].items() if kinds[name] != VariableType.SECRET
            },
        },
        created_at=now,
    )
    namespaces = [name for name, kind in kinds.items() if kind == VariableType.NAMESPACE]
    planned: list[tuple[StepInstance, list[Host]]] = []
    warnings: list[dict[str, Any]] = []
    seq = 1
    for index, step in enumerate(expanded.steps):
        with fields_under(f"steps.{index}"):
            built, step_warnings = build_step(project_id, step, host_lists, now, seq, namespaces)
        warnings.extend(step_warnings)
        planned.extend(built)
        seq = max(instance.seq for instance, _ in built) + 1
    public, secret = variables.split_secrets(definitions, values)
    job.variables = {
        name: {"type": kinds[name], "value": shown_value(kinds[name], value, host_lists.get(name))}
        for name, value in public.items()
    }
    job.secret_variables = json.dumps(secret) if secret else None
    job.warnings = warnings
    job.host_count = len({host.id for _, hosts in planned for host in hosts})
    job.steps.extend(instance for instance, _ in planned)
    return executions.enqueue(job, [hosts for _, hosts in planned])


def shown_value(kind: str, value: Any, hosts: list[Host] | None) -> Any:
    """A value as the job instance keeps it: a host list with the hosts it named at launch."""
    if kind != VariableType.HOST_LIST:
        return value
    return {
        "targets": value,
        "hosts": [host.name for host in hosts or []],
        "addresses": [host.address for host in hosts or []],
    }


def build_step(
    project_id: int,
    step: dict[str, Any],
    host_lists: dict[str, list[Host]],
    now: Any,
    seq: int,
    namespaces: list[str],
) -> tuple[list[tuple[StepInstance, list[Host]]], list[dict[str, Any]]]:
    """The step instances of one template step (a transfer makes fetch steps and a push) and their hosts."""
    kind = StepType(step["type"])
    on_failure = OnFailure.IGNORE if step["ignore_error"] else OnFailure.STOP
    common = {"account_id": step.get("account_id"), "timeout": step["timeout"], "forks": step.get("forks")}
    hosts = step_hosts(project_id, step, host_lists)
    warnings: list[dict[str, Any]] = []
    if kind == StepType.SCRIPT:
        body = step["script"]
        source = {key: body[key] for key in ("content", "language", "script_id", "version_id") if key in body}
        instance, warnings = executions.script_step(
            project_id, {"script": source, "params": body["params"], **common}, hosts
        )
        built = [(instance, hosts)]
    elif kind == StepType.FILE_TRANSFER:
        body = {**step["transfer"], **common}
        built = transfers.transfer_steps(project_id, body, hosts, now, on_failure, seq, "transfer")
    elif kind == StepType.PLAYBOOK and "repository_id" in step["playbook"]:
        built = playbook_runs.repository_steps(project_id, {**step["playbook"], **common}, hosts, seq)
    elif kind == StepType.PLAYBOOK:
        executions.require_account(project_id, common["account_id"], hosts, "account_id")
        instance = StepInstance(
            kind=kind, host_count=len(hosts), task_count=PLAYBOOK_TASKS, spec={**step["playbook"], **common}
        )
        built = [(instance, hosts)]
    else:
        manual = step.get("manual") or {}
        instance = StepInstance(
            kind=kind,
            host_count=0,
            spec={
                "message": manual.get("message", ""),
                "confirmers": manual.get("confirmers") or {"users": [], "roles": []},
                "timeout": step["timeout"],
            },
        )
        built = [(instance, [])]
    for instance, members in built:
        instance.seq = instance.seq or seq
        instance.template_step = step["key"]
        instance.on_failure = instance.on_failure or on_failure
        instance.name = step["name"] if len(built) == 1 else f"{step['name']}: {instance.name}"[:255]
        instance.spec = {**instance.spec, "namespaces": namespaces} if members else instance.spec
    last, targets = built[-1]
    if step.get("rolling") and targets:
        last.batches = rolling.batch_sizes(step["rolling"]["expression"], len(targets))
        last.rolling_mode = step["rolling"].get("mode", RollingMode.PAUSE)
    return built, warnings


def step_hosts(project_id: int, step: dict[str, Any], host_lists: dict[str, list[Host]]) -> list[Host]:
    targets = step.get("targets")
    if not targets:
        return []
    if "variable" in targets:
        name = targets["variable"]
        if name not in host_lists:
            raise Invalid(f"host list variable {name!r} has no value", "targets.variable")
        return host_lists[name]
    return resolve_targets(project_id, targets)


def relaunch_job(
    actor: Actor, project_id: int, data: dict[str, Any], launch_type: LaunchType, relaunch_of: int
) -> JobInstance:
    """Launch a template's job again with the values it was launched with; secret values come from the
    defaults again, as the launch's own are not kept for this."""
    if "targets" in data:
        raise Conflict(
            "a job relaunches whole: retry its failed step on its failed hosts instead", "failed_only"
        )
    launched = {"launch_type": launch_type, "relaunch_of": relaunch_of}
    if data.get("plan_id"):
        return launch_plan(actor, project_id, data["plan_id"], data, **launched)
    return launch_template(actor, project_id, data["template_id"], data, **launched)


executions.RELAUNCHABLE[JOB_KIND] = relaunch_job
