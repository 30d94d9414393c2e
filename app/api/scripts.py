"""/scripts (the public library) and /projects/{pid}/scripts: scripts, versions, states, usage."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.paging import RowPage, SelectPage
from app.schemas.script import LibraryScriptSchema, ScriptUseSchema, ScriptVersionSchema, VersionChangeSchema
from app.services import scripts
from app.services.access import Action, require_scope

blp = Blueprint("scripts", __name__, url_prefix="/api/v1/projects", description="A project's scripts")
public_blp = Blueprint(
    "public_scripts", __name__, url_prefix="/api/v1", description="Public scripts, usable from every project"
)

OPERATIONS = {
    "publish": "Put the version online; the version online until now goes offline.",
    "offline": "Take the online version offline.",
    "disable": "Disable the version: it refuses to run, even from a saved job.",
    "enable": "Re-enable a disabled version (it comes back offline).",
}


def script_routes(blp: Blueprint, prefix: str) -> None:
    """Register the script routes of one scope: "" for the public library, "/<int:pid>" for a project."""

    @blp.route(f"{prefix}/scripts")
    class Scripts(MethodView):
        @blp.response(200, LibraryScriptSchema(many=True))
        @blp.paginate(SelectPage)
        def get(self, pid: int | None = None):
            """List the scripts, paged."""
            require_scope(current_actor(), pid, Action.READ)
            return scripts.scripts_query(pid)

        @blp.arguments(LibraryScriptSchema)
        @blp.response(201, LibraryScriptSchema)
        def post(self, data: dict[str, Any], pid: int | None = None):
            """Create a script; its content lives in its versions."""
            return scripts.create_script(current_actor(), pid, data)

    @blp.route(f"{prefix}/scripts/<int:sid>")
    class ScriptItem(MethodView):
        @blp.response(200, LibraryScriptSchema)
        def get(self, sid: int, pid: int | None = None):
            """Read a script."""
            return scripts.get_script(current_actor(), pid, sid, Action.READ)

        @blp.arguments(LibraryScriptSchema(partial=True, exclude=("language",)))
        @blp.response(200, LibraryScriptSchema)
        def patch(self, data: dict[str, Any], sid: int, pid: int | None = None):
            """Rename or describe a script."""
            return scripts.update_script(current_actor(), pid, sid, data)

        @blp.response(204)
        def delete(self, sid: int, pid: int | None = None):
            """Delete a script and its versions; job history keeps what ran."""
            scripts.delete_script(current_actor(), pid, sid)

    @blp.route(f"{prefix}/scripts/<int:sid>/versions")
    class Versions(MethodView):
        @blp.response(200, ScriptVersionSchema(many=True))
        @blp.paginate(SelectPage)
        def get(self, sid: int, pid: int | None = None):
            """The script's versions, oldest first, paged."""
            return scripts.versions_query(scripts.get_script(current_actor(), pid, sid, Action.READ))

        @blp.arguments(ScriptVersionSchema)
        @blp.response(201, ScriptVersionSchema)
        def post(self, data: dict[str, Any], sid: int, pid: int | None = None):
            """Create a draft version; dangerous-command rules check it (intercept: 422, scan: warnings)."""
            script = scripts.get_script(current_actor(), pid, sid, Action.OPERATE)
            return scripts.create_version(current_actor(), script, data)

    @blp.route(f"{prefix}/scripts/<int:sid>/versions/<int:vid>")
    class Version(MethodView):
        @blp.response(200, ScriptVersionSchema)
        def get(self, sid: int, vid: int, pid: int | None = None):
            """Read a version."""
            return scripts.get_version(scripts.get_script(current_actor(), pid, sid, Action.READ), vid)

        @blp.arguments(VersionChangeSchema)
        @blp.response(200, ScriptVersionSchema)
        def patch(self, data: dict[str, Any], sid: int, vid: int, pid: int | None = None):
            """Change the description, or the content of a draft."""
            script = scripts.get_script(current_actor(), pid, sid, Action.OPERATE)
            return scripts.update_version(script, vid, data)

    for operation, summary in OPERATIONS.items():
        version_operation(blp, prefix, operation, summary)

    @blp.route(f"{prefix}/scripts/<int:sid>/usage")
    class Usage(MethodView):
        @blp.response(200, ScriptUseSchema(many=True))
        @blp.paginate(RowPage)
        def get(self, sid: int, pid: int | None = None):
            """Where the script ran: job instances of the projects you can see, newest first, paged."""
            script = scripts.get_script(current_actor(), pid, sid, Action.READ)
            return scripts.usage_query(current_actor(), script)


def version_operation(blp: Blueprint, prefix: str, operation: str, summary: str) -> None:
    class Operation(MethodView):
        @blp.response(200, ScriptVersionSchema)
        def post(self, sid: int, vid: int, pid: int | None = None):
            script = scripts.get_script(current_actor(), pid, sid, Action.OPERATE)
            return scripts.transition(script, vid, operation)

    Operation.post.__doc__ = summary
    blp.route(
        f"{prefix}/scripts/<int:sid>/versions/<int:vid>/{operation}", endpoint=f"Version{operation.title()}"
    )(Operation)


script_routes(blp, "/<int:pid>")
script_routes(public_blp, "")
