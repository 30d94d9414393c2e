"""file_transfer: the body of a file transfer, run as an ordinary job instance (launch type flow);
outputs as for script."""

from __future__ import annotations

from typing import Any

from marshmallow import fields

from app.flows.atoms import Context
from app.flows.atoms.script import JobAtom
from app.models import JobInstance, LaunchType
from app.schemas.transfer import FileTransferSchema
from app.services import transfers


class FileTransferInputs(FileTransferSchema):
    class Meta:
        exclude = ("idempotency_key",)

    name = fields.String()


class FileTransfer(JobAtom):
    name = "file_transfer"
    schema = FileTransferInputs

    def launch(self, context: Context, data: dict[str, Any]) -> JobInstance:
        body = {**data, "name": data.get("name") or context.state.node_id}
        return transfers.launch_transfer(context.actor, context.task.project_id, body, LaunchType.FLOW)


ATOM = FileTransfer()
