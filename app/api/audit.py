"""/audit-events, and the hook that records every change, launch, operation and refusal."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, current_app, g, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from app.api.auth import current_actor
from app.api.paging import SelectPage, filter_arguments
from app.extensions import db
from app.models import AuditEvent
from app.schemas.fields import Id
from app.schemas.query import FilterArgs
from app.services import audit

blp = Blueprint("audit", __name__, url_prefix="/api/v1", description="The audit log (read-only)")

# What an endpoint's call is, where the method alone does not say it.
ACTIONS = {
    ("jobs.ScriptExecutions", "POST"): ("job", "launch"),
    ("transfers.FileTransfers", "POST"): ("job", "launch"),
    ("ad_hoc.AdHocRuns", "POST"): ("job", "launch"),
    ("jobs.JobCancel", "POST"): ("job", "cancel"),
    ("jobs.JobRelaunch", "POST"): ("job", "relaunch"),
    ("flows.FlowTasks", "POST"): ("flow_task", "launch"),
    ("flows.TaskOperation", "POST"): ("flow_task", "operate"),
    ("flows.NodeOperation", "POST"): ("flow_task", "operate"),
    ("reachability.ReachabilityChecks", "POST"): ("job", "launch"),
    ("inventories.InventoryImport", "POST"): ("inventory", "import"),
    ("flows.FlowImport", "POST"): ("flow", "import"),
    ("members.Members", "POST"): ("member", "grant"),
    ("members.Member", "PATCH"): ("member", "change_role"),
    ("members.Member", "DELETE"): ("member", "revoke"),
    ("users.Tokens", "POST"): ("token", "create"),
    ("users.Token", "DELETE"): ("token", "revoke"),
    ("users.UserToken", "DELETE"): ("token", "revoke"),
    ("users.Password", "POST"): ("user", "change_password"),
    ("danger_rules.Check", "POST"): ("danger_rule", "check"),
    **{
        (f"{blueprint}.Version{operation.title()}", "POST"): ("script_version", operation)
        for blueprint in ("scripts", "public_scripts")
        for operation in ("publish", "offline", "disable", "enable")
    },
}
VERBS = {"POST": "create", "PATCH": "update", "PUT": "update", "DELETE": "delete"}
ID_ARGS = ("item_id", "jid", "tid", "token_id", "user_id", "vid", "sid", "rid")


class AuditEventSchema(Schema):
    id = fields.Integer()
    at = fields.DateTime()
    username = fields.String()
    project_id = fields.Integer(allow_none=True)
    resource = fields.String()
    resource_id = fields.String(allow_none=True)
    action = fields.String()
    outcome = fields.String(metadata={"enum": ["success", "failed", "denied"]})
    status_code = fields.Integer()
    client_address = fields.String(allow_none=True)


class AuditArgs(FilterArgs):
    since = fields.AwareDateTime(default_timezone=None)
    until = fields.AwareDateTime(default_timezone=None)
    username = fields.String()
    project_id = Id()
    action = fields.String()
    outcome = fields.String(validate=validate.OneOf(["success", "failed", "denied"]))


@blp.route("/audit-events")
class AuditEvents(MethodView):
    @filter_arguments(blp, AuditArgs)
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any]):
        """Audit entries you may read, newest first, filtered and paged."""
        return audit.query(current_actor(), filters)


def describe(endpoint: str, method: str) -> tuple[str, str]:
    if (endpoint, method) in ACTIONS:
        return ACTIONS[endpoint, method]
    resource = endpoint.split(".", 1)[0].removesuffix("s")
    return resource, VERBS.get(method, method.lower())


def entry_of_call(status_code: int, resource_id: str | None = None) -> AuditEvent:
    """The audit entry of the call in progress, answered with `status_code`."""
    resource, action = describe(request.endpoint, request.method)
    view_args = request.view_args or {}
    # Task and node operations name themselves in the path.
    action = view_args.get("op", action)
    named = next((str(view_args[name]) for name in ID_ARGS if name in view_args), None)
    actor = g.get("actor")
    return AuditEvent(
        username=actor.username if actor else "",
        project_id=view_args.get("pid"),
        resource=resource,
        resource_id=named or resource_id,
        action=action,
        outcome=audit.outcome_of(status_code),
        status_code=status_code,
        client_address=request.remote_addr,
    )


def expect_success(status_code: int) -> None:
    """The call's entry, as it succeeds with `status_code`, is written by the transaction that does
    what it asks (a launch's), rather than after the answer in a transaction of its own."""
    audit.expect(entry_of_call(status_code))


def register(app: Flask) -> None:
    @app.after_request
    def record(response: Response) -> Response:
        if not request.path.startswith("/api/v1") or request.endpoint is None:
            return response
        if audit.expected_was_written():
            return response
        refused = response.status_code in (401, 403)
        if request.method in ("GET", "HEAD", "OPTIONS") and not refused:
            return response
        resource_id = None
        if response.status_code in (201, 202) and response.is_json:
            resource_id = str((response.get_json(silent=True) or {}).get("id", "")) or None
        try:
            audit.write(entry_of_call(response.status_code, resource_id))
        except Exception:
            # The call is answered already: a lost entry is logged, it never turns the answer into a 500.
            db.session.rollback()
            current_app.logger.exception("audit entry not written: %s %s", request.method, request.path)
        return response
