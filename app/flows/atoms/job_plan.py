"""job_plan: launch a plan (or a template) with variable values and wait for its job instance; outputs
as for script."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.flows.atoms import Atom, Context, Outcome, Waiting
from app.flows.atoms.script import cancel_job, job_outcome
from app.models import LaunchType
from app.services import executions, launches


class JobPlanInputs(Schema):
    plan_id = fields.Integer(strict=True)
    template_id = fields.Integer(strict=True)
    name = fields.String(validate=validate.Length(min=1, max=255))
    variables = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"description": "values by name"}
    )

    @validates_schema
    def one_of(self, data, partial=(), **kwargs) -> None:
        given = ("plan_id" in data) + ("template_id" in data)
        if given != 1 and not set(partial or ()) & {"plan_id", "template_id"}:
            raise ValidationError("name a plan_id or a template_id", "plan_id")


class JobPlan(Atom):
    name = "job_plan"
    schema = JobPlanInputs
    outputs = None

    def start(self, context: Context) -> Outcome:
        data = self.load(context.inputs)
        project_id = context.task.project_id
        job = executions.replayed(project_id, context.launch_key)
        if job is None:
            body = {
                "variables": data["variables"],
                "name": data.get("name"),
                "idempotency_key": context.launch_key,
            }
            body = {key: value for key, value in body.items() if value is not None}
            if "plan_id" in data:
                job = launches.launch_plan(
                    context.actor, project_id, data["plan_id"], body, launch_type=LaunchType.FLOW
                )
            else:
                job = launches.launch_template(
                    context.actor, project_id, data["template_id"], body, launch_type=LaunchType.FLOW
                )
        return Waiting(kept={"job_id": job.id}, job_instance_id=job.id)

    def check(self, context: Context) -> Outcome | None:
        return job_outcome(context.kept["job_id"])

    def cancel(self, context: Context) -> None:
        cancel_job(context, context.kept.get("job_id"))


ATOM = JobPlan()
