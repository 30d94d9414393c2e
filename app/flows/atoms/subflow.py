"""subflow: run another flow of the project as a task of its own, its newest version or a pinned one;
values in, the flow's outputs out."""

from __future__ import annotations

import contextlib

from marshmallow import Schema, fields, validate

from app.extensions import db
from app.flows.atoms import Atom, Context, Failed, Finished, Outcome, Waiting
from app.models import FlowTask
from app.services.errors import Conflict
from app.status import FlowTaskStatus


class SubflowInputs(Schema):
    flow_id = fields.Integer(required=True, strict=True)
    version = fields.Integer(
        strict=True,
        allow_none=True,
        load_default=None,
        validate=validate.Range(min=1),
        metadata={"description": "a pinned version; none: the newest"},
    )
    values = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"description": "the subflow's variables, by name"}
    )


class Subflow(Atom):
    name = "subflow"
    schema = SubflowInputs
    outputs = None

    def start(self, context: Context) -> Outcome:
        from app.services.flow_tasks import create_task

        inputs = self.load(context.inputs)
        child = create_task(
            context.actor,
            context.task.project_id,
            inputs["flow_id"],
            {
                "name": f"{context.task.name}: {context.state.node_id}"[:255],
                "variables": inputs["values"],
                "idempotency_key": context.launch_key,
            },
            parent=context.state,
            version_number=inputs["version"],
        )
        return Waiting(kept={"task_id": child.id}, child_task_id=child.id)

    def check(self, context: Context) -> Outcome | None:
        child = db.session.get(FlowTask, context.kept["task_id"])
        if child is None:
            return Failed("the subflow's task is gone")
        if child.status == FlowTaskStatus.SUCCESS:
            from app.services.flow_tasks import task_graph

            values = {**child.values, **child.secret_value_map}
            return Finished({name: values.get(name) for name in task_graph(child).outputs})
        if child.status in (FlowTaskStatus.FAILED, FlowTaskStatus.REVOKED):
            return Failed(f"subflow task {child.id} is {child.status}")
        return None

    def cancel(self, context: Context) -> None:
        from app.services.flow_tasks import operate_task

        task_id = context.kept.get("task_id")
        if task_id is None:
            return
        with contextlib.suppress(Conflict):
            operate_task(context.actor, context.task.project_id, task_id, "revoke", "its parent node stopped")


ATOM = Subflow()
