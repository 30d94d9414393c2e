"""approval: wait for one of its approvers (users or roles) to approve or reject, optionally with a
timeout that decides for them."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from marshmallow import Schema, fields, validate

from app.flows.atoms import Atom, Context, Failed, Finished, Outcome, Waiting
from app.models.base import utcnow
from app.schemas.template import ConfirmersSchema
from app.services.errors import Forbidden
from app.services.step_operations import describe, may_confirm
from app.status import NodeStatus

APPROVAL_TIMEOUT_MAX = 30 * 86400


class ApprovalInputs(Schema):
    message = fields.String(load_default="", validate=validate.Length(max=4096))
    approvers = fields.Nested(
        ConfirmersSchema,
        load_default=dict,
        metadata={"description": "who may decide: these users or roles; none listed: any operator"},
    )
    timeout = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(1, APPROVAL_TIMEOUT_MAX)
    )
    timeout_outcome = fields.String(load_default="reject", validate=validate.OneOf(["approve", "reject"]))


class Approval(Atom):
    name = "approval"
    schema = ApprovalInputs
    immediate = True
    outputs = frozenset({"approved", "by", "reason"})
    operations = frozenset({"approve", "reject"})

    def start(self, context: Context) -> Outcome:
        inputs = self.load(context.inputs)
        due = utcnow() + timedelta(seconds=inputs["timeout"]) if inputs["timeout"] else None
        kept = {"approvers": inputs["approvers"], "timeout_outcome": inputs["timeout_outcome"]}
        if due:
            kept["timeout_at"] = due.isoformat()
        return Waiting(NodeStatus.WAITING_USER, kept, due)

    def check(self, context: Context) -> Outcome | None:
        due = context.kept.get("timeout_at")
        if due is None or utcnow() < datetime.fromisoformat(due):
            return None
        return decided(context.kept["timeout_outcome"] == "approve", "", "no decision in time")

    def operate(self, context: Context, operation: str, data: Mapping[str, Any]) -> Outcome:
        approvers = context.kept.get("approvers") or {}
        if not may_confirm(context.actor, context.task.project_id, approvers):
            raise Forbidden(f"node {context.state.node_id!r} is decided by {describe(approvers)} only")
        return decided(operation == "approve", context.actor.username, data.get("reason", ""))


def decided(approved: bool, by: str, reason: str) -> Outcome:
    outputs = {"approved": approved, "by": by, "reason": reason}
    if approved:
        return Finished(outputs)
    return Failed(f"rejected{' by ' + by if by else ''}{': ' + reason if reason else ''}", outputs)


ATOM = Approval()
