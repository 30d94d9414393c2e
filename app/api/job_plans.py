"""/projects/{pid}/job-plans: saved variants of job templates, kept in step with them and launched."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.crud import project_resource
from app.api.launching import launched
from app.models import JobPlan
from app.schemas.job import JobSchema
from app.schemas.template import LaunchSchema, PlanArgs, PlanSchema
from app.services import launches, templates

blp = Blueprint(
    "job_plans",
    __name__,
    url_prefix="/api/v1/projects",
    description="Job plans: a template's steps and variables with their own choices and values",
)
project_resource(
    blp,
    "job-plans",
    JobPlan,
    PlanSchema,
    create=lambda pid, data: templates.create_plan(current_actor(), pid, data),
    update=lambda row, data: templates.update_plan(current_actor(), row, data),
    filters=PlanArgs,
    query=templates.plans_query,
)


@blp.route("/<int:pid>/job-plans/<int:item_id>/sync")
class PlanSync(MethodView):
    @blp.response(200, PlanSchema)
    def post(self, pid: int, item_id: int):
        """Bring the plan up to its template's version, keeping its choices where they still apply."""
        return templates.sync_plan(current_actor(), pid, item_id)


@blp.route("/<int:pid>/job-plans/<int:item_id>/launch")
class PlanLaunch(MethodView):
    @blp.arguments(LaunchSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, item_id: int):
        """Run the plan's steps with its values and the launch's; answers at once with the job instance."""
        return launched(pid, data, lambda data: launches.launch_plan(current_actor(), pid, item_id, data))
