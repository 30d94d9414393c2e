"""playbook: a playbook run unchanged on targets, as a template's playbook step (inline, or a repository's
playbook), reading the flow's variables as extra vars. Saving a flow with one takes a project admin, since a
playbook runs Ansible code on the controller too."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import fields, validate

from app.config import TIMEOUT_DEFAULT, TIMEOUT_MAX, TIMEOUT_MIN
from app.execution.playbook import check_playbook
from app.flows.atoms import Context
from app.flows.atoms.script import JobAtom, launch_job
from app.models import JobInstance, StepInstance, StepType
from app.models.job import PLAYBOOK_TASKS
from app.schemas.job import TargetsSchema
from app.schemas.template import PlaybookBodySchema
from app.services import executions, playbook_runs


class PlaybookInputs(PlaybookBodySchema):
    name = fields.String(validate=validate.Length(min=1, max=255))
    targets = fields.Nested(TargetsSchema, required=True)
    account_id = fields.Integer(strict=True, allow_none=True, load_default=None)
    timeout = fields.Integer(
        strict=True, load_default=TIMEOUT_DEFAULT, validate=validate.Range(TIMEOUT_MIN, TIMEOUT_MAX)
    )
    forks = fields.Integer(strict=True, allow_none=True, load_default=None, validate=validate.Range(min=1))


class Playbook(JobAtom):
    name = "playbook"
    schema = PlaybookInputs
    unrendered = frozenset({"content"})
    admin_only = True

    def check_inputs(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        problems = super().check_inputs(inputs)
        if isinstance(inputs.get("content"), str):
            try:
                check_playbook(inputs["content"])
            except ValueError as exc:
                problems.append(("content", str(exc)))
        return problems

    def launch(self, context: Context, data: dict[str, Any]) -> JobInstance:
        project_id = context.task.project_id

        def build(hosts: list) -> tuple[list[tuple[StepInstance, list]], list]:
            common = {"account_id": data["account_id"], "timeout": data["timeout"], "forks": data["forks"]}
            if data.get("repository_id") is not None:
                return playbook_runs.repository_steps(project_id, {**data, **common}, hosts), []
            executions.require_account(project_id, data["account_id"], hosts, "account_id")
            body = {key: data[key] for key in ("content", "extra_vars", "tags", "skip_tags", "limit")}
            step = StepInstance(
                kind=StepType.PLAYBOOK,
                host_count=len(hosts),
                task_count=PLAYBOOK_TASKS,
                spec={**body, **common},
            )
            return [(step, hosts)], []

        return launch_job(context, data, "job", build)


ATOM = Playbook()
