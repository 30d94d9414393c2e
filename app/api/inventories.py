"""/projects/{pid}/inventories: import and export Ansible inventories."""

from __future__ import annotations

from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.paging import filter_arguments
from app.schemas.inventory import (
    ImportReportSchema,
    InventoryExportArgs,
    InventoryImportSchema,
)
from app.services import inventory_import
from app.services.access import Action, require
from app.services.inventory_formats import FORMATS
from app.services.uploads import with_upload

blp = Blueprint(
    "inventories", __name__, url_prefix="/api/v1/projects", description="Ansible inventories in and out"
)
# The import takes a JSON body or a multipart form with the same fields and the file.
blp.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING = {
    **Blueprint.DEFAULT_LOCATION_CONTENT_TYPE_MAPPING,
    "json_or_form": "application/json",
}
UPLOAD = {
    "schema": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "format": {"type": "string", "enum": list(FORMATS)},
            "dry_run": {"type": "boolean"},
            "remove_missing": {"type": "boolean"},
        },
        "required": ["file"],
    }
}
MEDIA_TYPES = {"ini": "text/plain", "yaml": "application/yaml", "json": "application/json"}


@blp.route("/<int:pid>/inventories/import")
class InventoryImport(MethodView):
    @blp.arguments(InventoryImportSchema, location="json_or_form")
    @blp.doc(requestBody={"content": {"multipart/form-data": UPLOAD}})
    @blp.response(200, ImportReportSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Import an inventory (JSON body, or a multipart upload in `file`); reports what changed."""
        actor = current_actor()
        require(actor, pid, Action.OPERATE)
        file = request.files.get("file")
        if file is not None:
            data = with_upload(data, file.filename or "", file.read(), inventory_import.FORMAT_OF_SUFFIX)
        return inventory_import.import_inventory(actor, pid, data)


@blp.route("/<int:pid>/inventories/export")
class InventoryExport(MethodView):
    @filter_arguments(blp, InventoryExportArgs)
    @blp.response(200, content_type="text/plain")
    def get(self, args: dict[str, Any], pid: int):
        """The project's inventory, or one group's with its descendants, as INI, YAML or JSON."""
        require(current_actor(), pid, Action.READ)
        text = inventory_import.export(pid, args["format"], args.get("group"))
        return Response(text, mimetype=MEDIA_TYPES[args["format"]])
