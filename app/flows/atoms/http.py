"""http: call another system's API. Outputs the status code, the response headers, and the body as
`json` when it is JSON (else as `text`).

Headers that carry credentials (Authorization, Cookie, anything named like a token, key or secret)
are masked wherever the node's inputs are shown, as are secret variables rendered into any input."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any

from marshmallow import Schema, fields, validate

from app.flows import calls
from app.flows.atoms import Atom, Context, Failed, Finished, Outcome, Waiting
from app.models.base import utcnow
from app.secrets import MASK

HTTP_TIMEOUT_MAX = 300
HTTP_RETRIES_MAX = 5
HTTP_RETRY_PAUSE_SECONDS = 1
RESPONSE_MAX_BYTES = 1024 * 1024
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]
SECRET_HEADER = re.compile(r"authorization|cookie|token|secret|key|password", re.IGNORECASE)


class HttpInputs(Schema):
    method = fields.String(load_default="GET", validate=validate.OneOf(METHODS))
    url = fields.Url(
        required=True, schemes={"http", "https"}, require_tld=False, validate=validate.Length(max=4096)
    )
    headers = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=255)),
        values=fields.String(),
        load_default=dict,
    )
    body = fields.Raw(
        allow_none=True, load_default=None, metadata={"description": "a string as is, anything else as JSON"}
    )
    expected_status = fields.List(
        fields.Integer(strict=True, validate=validate.Range(100, 599)),
        load_default=list,
        metadata={"description": "the status codes that mean success; none given: any 2xx"},
    )
    timeout = fields.Integer(strict=True, load_default=30, validate=validate.Range(1, HTTP_TIMEOUT_MAX))
    retries = fields.Integer(
        strict=True,
        load_default=0,
        validate=validate.Range(0, HTTP_RETRIES_MAX),
        metadata={"description": "tries again after a connection error"},
    )


class Http(Atom):
    name = "http"
    schema = HttpInputs
    outputs = frozenset({"status_code", "headers", "json", "text"})

    def shown(self, inputs: dict[str, Any]) -> dict[str, Any]:
        headers = inputs.get("headers")
        if not isinstance(headers, dict):
            return inputs
        return {
            **inputs,
            "headers": {
                name: MASK if SECRET_HEADER.search(name) else value for name, value in headers.items()
            },
        }

    def start(self, context: Context) -> Outcome:
        """The call runs beside the engine (app.flows.calls); the node waits for its answer."""
        inputs = self.load(context.inputs)
        request = request_of(inputs)
        longest = inputs["timeout"] * (inputs["retries"] + 1) + HTTP_RETRY_PAUSE_SECONDS * inputs["retries"]
        until = calls.give_up_at(longest)
        attempt = len(context.state.attempts)
        return Waiting(
            kept={"call": True, "give_up_at": until.isoformat()},
            due_at=until,
            after=calls.after_recorded(
                context.task.id, context.state.node_id, attempt, lambda: answer(request, inputs)
            ),
        )

    def check(self, context: Context) -> Outcome | None:
        give_up_at = context.kept.get("give_up_at")
        if give_up_at and utcnow() >= datetime.fromisoformat(give_up_at):
            return Failed(calls.NO_ANSWER)
        return None


def request_of(inputs: dict[str, Any]) -> urllib.request.Request:
    body = inputs["body"]
    headers = dict(inputs["headers"])
    data = None
    if body is not None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        if not isinstance(body, str):
            headers.setdefault("Content-Type", "application/json")
    headers.setdefault("User-Agent", "Opsflow")
    return urllib.request.Request(inputs["url"], data=data, headers=headers, method=inputs["method"])


def answer(request: urllib.request.Request, inputs: dict[str, Any]) -> Outcome:
    """Make the call (again after a connection error, as often as `retries` says): the node's outcome."""
    for attempt in range(inputs["retries"] + 1):
        try:
            status, response_headers, content = call(request, inputs["timeout"])
            break
        except (urllib.error.URLError, OSError) as exc:
            if attempt == inputs["retries"]:
                return Failed(f"{inputs['method']} {inputs['url']}: {getattr(exc, 'reason', exc)}")
            time.sleep(HTTP_RETRY_PAUSE_SECONDS)
    outputs: dict[str, Any] = {"status_code": status, "headers": response_headers}
    try:
        outputs["json"] = json.loads(content)
    except ValueError:
        outputs["text"] = content.decode(errors="replace")
    expected = inputs["expected_status"]
    if (status not in expected) if expected else not 200 <= status < 300:
        return Failed(f"{inputs['method']} {inputs['url']} answered {status}", outputs)
    return Finished(outputs)


def call(request: urllib.request.Request, timeout: int) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body; an error status is an answer too, not an exception."""
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read(RESPONSE_MAX_BYTES)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read(RESPONSE_MAX_BYTES)


ATOM = Http()
