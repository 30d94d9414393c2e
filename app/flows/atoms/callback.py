"""callback: wait until an outside system POSTs to the node's callback URL with its token.

The token is made for each attempt; a callback with another attempt's token is refused, and a second
one for the same attempt finds the node no longer waiting."""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from marshmallow import Schema, fields, validate

from app.flows.atoms import Atom, Context, Failed, Finished, Outcome, Waiting
from app.models.base import utcnow
from app.services.errors import Forbidden
from app.status import NodeStatus

CALLBACK_TIMEOUT_MAX = 30 * 86400


class CallbackInputs(Schema):
    timeout = fields.Integer(
        strict=True, allow_none=True, load_default=None, validate=validate.Range(1, CALLBACK_TIMEOUT_MAX)
    )


class Callback(Atom):
    name = "callback"
    schema = CallbackInputs
    immediate = True
    outputs = None
    operations = frozenset({"callback"})

    def start(self, context: Context) -> Outcome:
        inputs = self.load(context.inputs)
        token = secrets.token_urlsafe(24)
        kept = {"token": token}
        due = None
        if inputs["timeout"]:
            due = utcnow() + timedelta(seconds=inputs["timeout"])
            kept["timeout_at"] = due.isoformat()
        return Waiting(NodeStatus.WAITING_CALLBACK, kept, due)

    def check(self, context: Context) -> Outcome | None:
        due = context.kept.get("timeout_at")
        if due is None or utcnow() < datetime.fromisoformat(due):
            return None
        return Failed("no callback came in time")

    def operate(self, context: Context, operation: str, data: Mapping[str, Any]) -> Outcome:
        given = data.get("token") or ""
        if not isinstance(given, str) or not hmac.compare_digest(
            given.encode(), context.kept.get("token", "").encode()
        ):
            raise Forbidden("the callback token is not this attempt's: it is stale or wrong")
        return Finished(dict(data.get("data") or {}))


ATOM = Callback()
