"""/projects/{pid}/job-templates: multi-step jobs (ordered steps and global variables), saved, launched,
exported and imported."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.crud import project_resource
from app.api.exchange import exported, import_body, sent_document
from app.api.launching import launched
from app.api.paging import filter_arguments
from app.models import JobTemplate
from app.schemas.job import JobSchema
from app.schemas.template import (
    ExportArgs,
    ImportResultSchema,
    ImportTextSchema,
    LaunchSchema,
    TemplateSchema,
)
from app.services import launches, template_exchange, templates

blp = Blueprint(
    "job_templates",
    __name__,
    url_prefix="/api/v1/projects",
    description="Job templates: ordered steps and global variables",
)


project_resource(
    blp,
    "job-templates",
    JobTemplate,
    TemplateSchema,
    create=lambda pid, data: templates.create_template(current_actor(), pid, data),
    update=lambda row, data: templates.update_template(current_actor(), row, data),
)


@blp.route("/<int:pid>/job-templates/<int:item_id>/export")
class TemplateExport(MethodView):
    @filter_arguments(blp, ExportArgs)
    @blp.response(200, content_type="application/json")
    def get(self, args: dict[str, Any], pid: int, item_id: int):
        """The template, the templates it includes and its plans as one JSON or YAML document, references
        by name, secrets left out: it imports into this project or another."""
        document = template_exchange.export_document(current_actor(), pid, item_id)
        return exported(document, args["format"], document["templates"][-1]["name"])


@blp.route("/<int:pid>/job-templates/import")
class TemplateImport(MethodView):
    @blp.doc(requestBody=import_body(["json", "yaml"], "the exported document, or {format, content}"))
    @blp.response(201, ImportResultSchema)
    def post(self, pid: int):
        """Create the templates and plans of an exported document, all or none: the document as the JSON
        body, its YAML or JSON text as the body, `{format, content}`, or a multipart upload in `file`."""
        document, _ = sent_document(ImportTextSchema)
        created, plans = template_exchange.import_document(current_actor(), pid, document)
        return {"templates": created, "plans": plans}


@blp.route("/<int:pid>/job-templates/<int:item_id>/launch")
class TemplateLaunch(MethodView):
    @blp.arguments(LaunchSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, item_id: int):
        """Run every step of the template; answers at once with the job instance."""
        return launched(pid, data, lambda data: launches.launch_template(current_actor(), pid, item_id, data))
