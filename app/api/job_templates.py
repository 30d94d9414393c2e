"""/projects/{pid}/job-templates and /projects/{pid}/job-plans: multi-step jobs, saved and launched."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.jobs import attachment
from app.api.launching import launched
from app.api.paging import SelectPage, filter_arguments
from app.models import JobPlan, JobTemplate
from app.schemas.job import JobSchema
from app.schemas.query import FilterArgs
from app.schemas.template import (
    ExportArgs,
    ImportResultSchema,
    LaunchSchema,
    PlanArgs,
    PlanSchema,
    TemplateSchema,
)
from app.services import launches, records, template_exchange, templates
from app.services.access import Action, require
from app.services.errors import Invalid

MEDIA_TYPES = {"json": "application/json", "yaml": "application/yaml"}

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
    @blp.paginate(SelectPage)
    def get(self, _args: dict[str, Any], pid: int):
        """List the templates, paged."""
        require(current_actor(), pid, Action.READ)
        return templates.templates_query(pid)

    @blp.arguments(TemplateSchema)
    @blp.response(201, TemplateSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Create a template; every step's references are checked."""
        return templates.create_template(current_actor(), pid, data)


@blp.route("/<int:pid>/job-templates/<int:tid>")
class Template(MethodView):
    @blp.response(200, TemplateSchema)
    def get(self, pid: int, tid: int):
        """Read a template; secret defaults are masked."""
        require(current_actor(), pid, Action.READ)
        return records.get(JobTemplate, tid, pid)

    # Top-level fields only: a step given is given whole, with its defaults.
    @blp.arguments(TemplateSchema(partial=("name", "steps")))
    @blp.response(200, TemplateSchema)
    def patch(self, data: dict[str, Any], pid: int, tid: int):
        """Change a template; a change of steps or variables raises its version, and its plans show
        they are out of date until synced. A secret default given as ****** keeps its value."""
        return templates.update_template(current_actor(), pid, tid, data)

    @blp.response(204)
    def delete(self, pid: int, tid: int):
        """Delete a template and its plans; job instances launched from them stay."""
        templates.delete_template(current_actor(), pid, tid)


@blp.route("/<int:pid>/job-templates/<int:tid>/export")
class TemplateExport(MethodView):
    @filter_arguments(blp, ExportArgs)
    @blp.response(200, content_type="application/json")
    def get(self, args: dict[str, Any], pid: int, tid: int):
        """The template, the templates it includes and its plans as one JSON or YAML document, references
        by name, secrets left out: it imports into this project or another."""
        document = template_exchange.export_document(current_actor(), pid, tid)
        text = template_exchange.to_text(document, args["format"])
        name = f"{document['templates'][-1]['name']}.{args['format']}"
        return Response(text, mimetype=MEDIA_TYPES[args["format"]], headers=attachment(name))


@blp.route("/<int:pid>/job-templates/import")
class TemplateImport(MethodView):
    @blp.doc(
        requestBody={
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/yaml": {"schema": {"type": "string"}},
            }
        }
    )
    @blp.response(201, ImportResultSchema)
    def post(self, pid: int):
        """Create the templates and plans of an exported document (JSON, or YAML text), all or none."""
        if request.is_json:
            document = request.get_json(silent=True)
            if document is None:
                raise Invalid("the body is not valid JSON", "document")
        else:
            document = template_exchange.parse(request.get_data(as_text=True))
        created, plans = template_exchange.import_document(current_actor(), pid, document)
        return {"templates": created, "plans": plans}


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
    @blp.paginate(SelectPage)
    def get(self, args: dict[str, Any], pid: int):
        """List the plans, of one template or of all, paged."""
        require(current_actor(), pid, Action.READ)
        return templates.plans_query(pid, args.get("template_id"))

    @blp.arguments(PlanSchema)
    @blp.response(201, PlanSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Make a plan of a template of this project: which steps it runs, its own values."""
        return templates.create_plan(current_actor(), pid, data)


@blp.route("/<int:pid>/job-plans/<int:plan_id>")
class Plan(MethodView):
    @blp.response(200, PlanSchema)
    def get(self, pid: int, plan_id: int):
        """Read a plan; out_of_date says its template changed since."""
        require(current_actor(), pid, Action.READ)
        return records.get(JobPlan, plan_id, pid)

    @blp.arguments(PlanSchema(partial=("template_id", "name")))
    @blp.response(200, PlanSchema)
    def patch(self, data: dict[str, Any], pid: int, plan_id: int):
        """Change a plan's name, steps or values; a secret value given as ****** keeps its value."""
        return templates.update_plan(current_actor(), pid, plan_id, data)

    @blp.response(204)
    def delete(self, pid: int, plan_id: int):
        """Delete a plan."""
        templates.delete_plan(current_actor(), pid, plan_id)


@blp.route("/<int:pid>/job-plans/<int:plan_id>/sync")
class PlanSync(MethodView):
    @blp.response(200, PlanSchema)
    def post(self, pid: int, plan_id: int):
        """Bring the plan up to its template's version, keeping its choices where they still apply."""
        return templates.sync_plan(current_actor(), pid, plan_id)


@blp.route("/<int:pid>/job-plans/<int:plan_id>/launch")
class PlanLaunch(MethodView):
    @blp.arguments(LaunchSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, plan_id: int):
        """Run the plan's steps with its values and the launch's; answers at once with the job instance."""
        return launched(pid, data, lambda data: launches.launch_plan(current_actor(), pid, plan_id, data))
