"""/projects/{pid}/members"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from app.api.auth import current_actor
from app.extensions import db
from app.models import Membership
from app.schemas.member import MemberSchema, RoleSchema
from app.services import members
from app.services.access import Action, require

blp = Blueprint("members", __name__, url_prefix="/api/v1/projects", description="Project members and roles")


@blp.route("/<int:pid>/members")
class Members(MethodView):
    @blp.response(200, MemberSchema(many=True))
    def get(self, pid: int):
        """Members of the project and their roles."""
        require(current_actor(), pid, Action.READ)
        return db.session.scalars(
            select(Membership).where(Membership.project_id == pid).order_by(Membership.id)
        ).all()

    @blp.arguments(MemberSchema)
    @blp.response(201, MemberSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Grant a user a role in the project (project admins)."""
        return members.grant(current_actor(), pid, data)


@blp.route("/<int:pid>/members/<int:user_id>")
class Member(MethodView):
    @blp.arguments(RoleSchema)
    @blp.response(200, MemberSchema)
    def patch(self, data: dict[str, Any], pid: int, user_id: int):
        """Change a member's role; the last admin stays admin."""
        return members.change(current_actor(), pid, user_id, data["role"])

    @blp.response(204)
    def delete(self, pid: int, user_id: int):
        """Take a member's role away; the last admin cannot be removed."""
        members.revoke(current_actor(), pid, user_id)
