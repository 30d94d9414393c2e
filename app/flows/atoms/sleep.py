"""sleep: wait a number of seconds, or until a time."""

from __future__ import annotations

from datetime import datetime, timedelta

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from app.flows.atoms import Atom, Context, Finished, Outcome, Waiting
from app.models.base import utcnow

SLEEP_MAX_SECONDS = 30 * 86400


class SleepInputs(Schema):
    seconds = fields.Float(validate=validate.Range(0, SLEEP_MAX_SECONDS))
    until = fields.AwareDateTime(
        metadata={"description": "a time with its zone, such as 2026-12-01T10:00:00Z"}
    )

    @validates_schema
    def one_of(self, data, partial=(), **kwargs) -> None:
        if ("seconds" in data) == ("until" in data) and not set(partial or ()) & {"seconds", "until"}:
            raise ValidationError("give seconds or until", "seconds")


class Sleep(Atom):
    name = "sleep"
    schema = SleepInputs
    immediate = True

    def start(self, context: Context) -> Outcome:
        inputs = self.load(context.inputs)
        until = inputs.get("until") or utcnow() + timedelta(seconds=inputs["seconds"])
        if until <= utcnow():
            return Finished()
        return Waiting(kept={"until": until.isoformat()}, due_at=until)

    def check(self, context: Context) -> Outcome | None:
        until = datetime.fromisoformat(context.kept["until"])
        return Finished() if utcnow() >= until else None


ATOM = Sleep()
