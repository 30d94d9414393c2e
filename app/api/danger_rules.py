"""/danger-rules (global) and /projects/{pid}/danger-rules: dangerous-command rules and the check."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.paging import SelectPage
from app.models import DangerRule
from app.schemas.danger import CheckSchema, DangerRuleSchema, VerdictSchema
from app.services import danger
from app.services.access import Action, require_scope

blp = Blueprint(
    "danger_rules", __name__, url_prefix="/api/v1/projects", description="A project's dangerous-command rules"
)
global_blp = Blueprint(
    "global_danger_rules", __name__, url_prefix="/api/v1", description="Global dangerous-command rules"
)


def rule_routes(blp: Blueprint, prefix: str) -> None:
    """Register the rule routes of one scope: prefix "" for global rules, "/<int:pid>" for a project."""

    @blp.route(f"{prefix}/danger-rules")
    class Rules(MethodView):
        @blp.response(200, DangerRuleSchema(many=True))
        @blp.paginate(SelectPage)
        def get(self, pid: int | None = None):
            """The rules in this scope (a project sees the global ones too, switched as it set them)."""
            require_scope(current_actor(), pid, Action.READ)
            return danger.in_force_query(pid).order_by(DangerRule.id)

        @blp.arguments(DangerRuleSchema)
        @blp.response(201, DangerRuleSchema)
        def post(self, data: dict[str, Any], pid: int | None = None):
            """Create a rule; an invalid regular expression is refused naming `pattern`."""
            return danger.create(current_actor(), pid, data)

    @blp.route(f"{prefix}/danger-rules/<int:rid>")
    class Rule(MethodView):
        @blp.response(200, DangerRuleSchema)
        def get(self, rid: int, pid: int | None = None):
            """Read a rule."""
            require_scope(current_actor(), pid, Action.READ)
            return danger.get(pid, rid)

        @blp.arguments(DangerRuleSchema(partial=True))
        @blp.response(200, DangerRuleSchema)
        def patch(self, data: dict[str, Any], rid: int, pid: int | None = None):
            """Change a rule; in a project, `enabled` of a global rule switches it for that project only."""
            return danger.update(current_actor(), pid, rid, data)

        @blp.response(204)
        def delete(self, rid: int, pid: int | None = None):
            """Delete a rule of this scope."""
            danger.delete(current_actor(), pid, rid)


rule_routes(blp, "/<int:pid>")
rule_routes(global_blp, "")


@blp.route("/<int:pid>/danger-rules/check")
class Check(MethodView):
    @blp.arguments(CheckSchema)
    @blp.response(200, VerdictSchema)
    def post(self, data: dict[str, Any], pid: int):
        """The verdict on a script without running it: allow, warn or refuse, with every match."""
        return danger.check_content(current_actor(), pid, data["content"], data["language"])
