"""/projects/{pid}/job-templates: multi-step jobs (ordered steps and global variables), saved, launched,
exported and imported."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.crud import project_resource
from app.api.jobs import attachment
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
from app.services.errors import Invalid
from app.services.uploads import with_upload

MEDIA_TYPES = {"json": "application/json", "yaml": "application/yaml"}
FORMAT_OF_SUFFIX = {".json": "json", ".yaml": "yaml", ".yml": "yaml"}

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
        text = template_exchange.to_text(document, args["format"])
        name = f"{document['templates'][-1]['name']}.{args['format']}"
        return Response(text, mimetype=MEDIA_TYPES[args["format"]], headers=attachment(name))


@blp.route("/<int:pid>/job-templates/import")
class TemplateImport(MethodView):
    @blp.doc(
        requestBody={
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "description": "the exported document, or {format, content} with its text",
                    }
                },
                "application/yaml": {"schema": {"type": "string"}},
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            "format": {"type": "string", "enum": list(MEDIA_TYPES)},
                        },
                        "required": ["file"],
                    }
                },
            }
        }
    )
    @blp.response(201, ImportResultSchema)
    def post(self, pid: int):
        """Create the templates and plans of an exported document, all or none: the document as the JSON
        body, its YAML or JSON text as the body, `{format, content}`, or a multipart upload in `file`."""
        created, plans = template_exchange.import_document(current_actor(), pid, sent_document())
        return {"templates": created, "plans": plans}


def sent_document() -> Any:
    """The document of an import request, in whichever form it came."""
    file = request.files.get("file")
    if file is not None:
        text = with_upload(request.form.to_dict(), file.filename or "", file.read(), FORMAT_OF_SUFFIX)
        return template_exchange.parse(template_exchange.load(ImportTextSchema(), text)["content"])
    if not request.is_json:
        return template_exchange.parse(request.get_data(as_text=True))
    body = request.get_json(silent=True)
    if body is None:
        raise Invalid("the body is not valid JSON", "document")
    if isinstance(body, dict) and "content" in body:
        return template_exchange.parse(template_exchange.load(ImportTextSchema(), body)["content"])
    return body


@blp.route("/<int:pid>/job-templates/<int:item_id>/launch")
class TemplateLaunch(MethodView):
    @blp.arguments(LaunchSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, item_id: int):
        """Run every step of the template; answers at once with the job instance."""
        return launched(pid, data, lambda data: launches.launch_template(current_actor(), pid, item_id, data))
