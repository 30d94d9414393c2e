"""/projects/{pid}/job-templates and /projects/{pid}/job-plans: multi-step jobs, saved and launched."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.launching import launched
from app.api.paging import filter_arguments, shown_page
from app.models import JobPlan, JobTemplate
from app.schemas.job import JobSchema
from app.schemas.query import FilterArgs
from app.schemas.template import LaunchSchema, PlanArgs, PlanSchema, TemplateSchema
from app.services import launches, records, templates
from app.services.access import Action, require

blp = Blueprint(
    "job_templates",
    __name__,
    url_prefix="/api/v1/projects",
    description="Job templates (ordered steps and global variables) and plans (their saved variants)",
)


@blp.route("/<int:pid>/job-templates")
class Templates(MethodView):
    @filter_arguments(blp, FilterArgs)
    @blp.response(200, TemplateSchema(many=True))
    @blp.paginate()
    def get(self, _args: dict[str, Any], pid: int, pagination_parameters):
        """List the templates, paged."""
        require(current_actor(), pid, Action.READ)
        return shown_page(templates.templates_query(pid), templates.shown_template, pagination_parameters)

    @blp.arguments(TemplateSchema)
    @blp.response(201, TemplateSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Create a template; every step's references are checked."""
        return templates.shown_template(templates.create_template(current_actor(), pid, data))


@blp.route("/<int:pid>/job-templates/<int:tid>")
class Template(MethodView):
    @blp.response(200, TemplateSchema)
    def get(self, pid: int, tid: int):
        """Read a template; secret defaults are masked."""
        require(current_actor(), pid, Action.READ)
        return templates.shown_template(records.get(JobTemplate, tid, pid))

    # Top-level fields only: a step given is given whole, with its defaults.
    @blp.arguments(TemplateSchema(partial=("name", "steps")))
    @blp.response(200, TemplateSchema)
    def patch(self, data: dict[str, Any], pid: int, tid: int):
        """Change a template; a change of steps or variables raises its version, and its plans show
        they are out of date until synced. A secret default given as ****** keeps its value."""
        return templates.shown_template(templates.update_template(current_actor(), pid, tid, data))

    @blp.response(204)
    def delete(self, pid: int, tid: int):
        """Delete a template and its plans; job instances launched from them stay."""
        templates.delete_template(current_actor(), pid, tid)


@blp.route("/<int:pid>/job-templates/<int:tid>/launch")
class TemplateLaunch(MethodView):
    @blp.arguments(LaunchSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, tid: int):
        """Run every step of the template; answers at once with the job instance."""
        return launched(pid, data, lambda data: launches.launch_template(current_actor(), pid, tid, data))


@blp.route("/<int:pid>/job-plans")
class Plans(MethodView):
    @filter_arguments(blp, PlanArgs)
    @blp.response(200, PlanSchema(many=True))
    @blp.paginate()
    def get(self, args: dict[str, Any], pid: int, pagination_parameters):
        """List the plans, of one template or of all, paged."""
        require(current_actor(), pid, Action.READ)
        query = templates.plans_query(pid, args.get("template_id"))
        return shown_page(query, templates.shown_plan, pagination_parameters)

    @blp.arguments(PlanSchema)
    @blp.response(201, PlanSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Make a plan of a template of this project: which steps it runs, its own values."""
        return templates.shown_plan(templates.create_plan(current_actor(), pid, data))


@blp.route("/<int:pid>/job-plans/<int:plan_id>")
class Plan(MethodView):
    @blp.response(200, PlanSchema)
    def get(self, pid: int, plan_id: int):
        """Read a plan; out_of_date says its template changed since."""
        require(current_actor(), pid, Action.READ)
        return templates.shown_plan(records.get(JobPlan, plan_id, pid))

    @blp.arguments(PlanSchema(partial=("template_id", "name")))
    @blp.response(200, PlanSchema)
    def patch(self, data: dict[str, Any], pid: int, plan_id: int):
        """Change a plan's name, steps or values; a secret value given as ****** keeps its value."""
        return templates.shown_plan(templates.update_plan(current_actor(), pid, plan_id, data))

    @blp.response(204)
    def delete(self, pid: int, plan_id: int):
        """Delete a plan."""
        templates.delete_plan(current_actor(), pid, plan_id)


@blp.route("/<int:pid>/job-plans/<int:plan_id>/sync")
class PlanSync(MethodView):
    @blp.response(200, PlanSchema)
    def post(self, pid: int, plan_id: int):
        """Bring the plan up to its template's version, keeping its choices where they still apply."""
        return templates.shown_plan(templates.sync_plan(current_actor(), pid, plan_id))


@blp.route("/<int:pid>/job-plans/<int:plan_id>/launch")
class PlanLaunch(MethodView):
    @blp.arguments(LaunchSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, plan_id: int):
        """Run the plan's steps with its values and the launch's; answers at once with the job instance."""
        return launched(pid, data, lambda data: launches.launch_plan(current_actor(), pid, plan_id, data))
