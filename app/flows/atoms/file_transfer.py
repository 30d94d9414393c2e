"""file_transfer: the body of a file transfer, run as an ordinary job instance (launch type flow);
outputs as for script."""

from __future__ import annotations

from marshmallow import fields

from app.flows.atoms import Atom, Context, Outcome, Waiting
from app.flows.atoms.script import cancel_job, job_outcome
from app.models import LaunchType
from app.schemas.transfer import FileTransferSchema
from app.services import executions, transfers


class FileTransferInputs(FileTransferSchema):
    class Meta:
        exclude = ("idempotency_key",)

    name = fields.String()


class FileTransfer(Atom):
    name = "file_transfer"
    schema = FileTransferInputs
    outputs = None

    def start(self, context: Context) -> Outcome:
        data = self.load(context.inputs)
        job = executions.replayed(context.task.project_id, context.launch_key) or transfers.launch_transfer(
            context.actor,
            context.task.project_id,
            {
                **data,
                "name": data.get("name") or context.state.node_id,
                "idempotency_key": context.launch_key,
            },
            LaunchType.FLOW,
        )
        return Waiting(kept={"job_id": job.id}, job_instance_id=job.id)

    def check(self, context: Context) -> Outcome | None:
        return job_outcome(context.kept["job_id"])

    def cancel(self, context: Context) -> None:
        cancel_job(context, context.kept.get("job_id"))


ATOM = FileTransfer()
