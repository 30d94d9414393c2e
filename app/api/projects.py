"""/projects"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from app.api.auth import current_actor
from app.api.paging import SelectPage
from app.models import Project
from app.schemas.project import ProjectSchema
from app.services import projects, records
from app.services.access import Action, require, require_system_admin, visible_projects

blp = Blueprint("projects", __name__, url_prefix="/api/v1/projects", description="Projects")


@blp.route("")
class Projects(MethodView):
    @blp.response(200, ProjectSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self):
        """List the projects you can see, paged."""
        return visible_projects(current_actor(), select(Project)).order_by(Project.id)

    @blp.arguments(ProjectSchema)
    @blp.response(201, ProjectSchema)
    def post(self, data: dict[str, Any]):
        """Create a project (system administrators)."""
        require_system_admin(current_actor())
        return records.save(Project(**data))


@blp.route("/<int:pid>")
class ProjectItem(MethodView):
    @blp.response(200, ProjectSchema)
    def get(self, pid: int):
        """Read a project."""
        return require(current_actor(), pid, Action.READ)

    @blp.arguments(ProjectSchema(partial=True))
    @blp.response(200, ProjectSchema)
    def patch(self, data: dict[str, Any], pid: int):
        """Change a project."""
        return records.update(require(current_actor(), pid, Action.ADMIN), data)

    @blp.response(204)
    def delete(self, pid: int):
        """Delete a project and everything in it."""
        projects.delete_project(current_actor(), pid)
