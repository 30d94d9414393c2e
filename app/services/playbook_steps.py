"""Compiling the slices of playbook steps: the user's playbook, unchanged, on the step's hosts."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select

from app.execution.playbook import PlaybookStep, compile_playbook
from app.execution.runner import RunRequest
from app.extensions import db
from app.models import Host, Slice, StepType
from app.services import executions
from app.services.inventory import group_members
from app.services.step_values import step_values


def compile_playbook_slice(piece: Slice) -> RunRequest:
    step = piece.step
    spec = step.spec
    targets = executions.slice_targets(piece)
    names = [target.name for target in targets]
    hosts = db.session.scalars(
        select(Host).where(Host.project_id == step.job.project_id, Host.name.in_(names))
    ).all()
    name_of = {host.id: host.name for host in hosts}
    # The project's groups, so that a playbook written for the same inventory finds its hosts.
    groups = {group: [name_of[id] for id in ids] for group, ids in group_members(list(hosts)).items()}
    values = step_values(step, names)
    targets = [
        replace(target, variables={**target.variables, **values.per_host.get(target.name, {})})
        for target in targets
    ]
    playbook = PlaybookStep(
        spec["content"],
        # The step's own extra vars are the more specific: they win over global variables of the same name.
        {**values.extra_vars, **spec.get("extra_vars", {})},
        spec.get("tags", []),
        spec.get("skip_tags", []),
        spec.get("limit"),
    )
    account = executions.step_account(spec)
    compiled = compile_playbook(playbook, targets, groups, executions.login_of(account))
    return executions.run_request(piece, compiled, len(targets), account, values.secrets)


executions.STEP_COMPILERS[StepType.PLAYBOOK] = compile_playbook_slice
