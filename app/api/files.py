"""/projects/{pid}/files: the file store."""

from __future__ import annotations

from typing import Any

from flask import request, send_file
from flask.views import MethodView
from flask_smorest import Blueprint
from werkzeug.formparser import FormDataParser

from app.api.auth import current_actor
from app.api.paging import SelectPage, filter_arguments
from app.models import StoredFile
from app.schemas.file import FileListArgs, StoredFileSchema, UploadArgs
from app.services import files, records
from app.services.access import Action, require
from app.services.errors import Invalid

blp = Blueprint("files", __name__, url_prefix="/api/v1/projects", description="The file store")

UPLOAD_BODY = {
    "required": True,
    "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
        },
    },
}


@blp.route("/<int:pid>/files")
class Files(MethodView):
    @filter_arguments(blp, FileListArgs)
    @blp.response(200, StoredFileSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int):
        """The project's files, newest first, paged."""
        require(current_actor(), pid, Action.READ)
        return files.files_query(pid, filters)

    @filter_arguments(blp, UploadArgs)
    @blp.doc(requestBody=UPLOAD_BODY)
    @blp.response(201, StoredFileSchema)
    def post(self, args: dict[str, Any], pid: int):
        """Upload a file, as the raw body (with ?name=) or a multipart part named `file`; streamed to disk."""
        actor = current_actor()
        files.require_upload(actor, pid, request.content_length)
        if "name" in args:
            files.checked_name(args["name"])
        # The store's limit replaces the one of JSON bodies; the file's own bytes are counted as they arrive.
        request.max_content_length = files.upload_body_limit()
        if request.mimetype == "multipart/form-data":
            filename, incoming = multipart_file(pid)
        else:
            filename, incoming = None, files.receive(pid)
            try:
                incoming.fill(request.stream)
            except BaseException:
                incoming.discard()
                raise
        return files.store(actor, pid, args.get("name") or filename, incoming)


def multipart_file(pid: int) -> tuple[str | None, files.Incoming]:
    """The part named `file` of a multipart body, written straight into the store."""
    made: list[files.Incoming] = []

    def sink(*_args, **_kwargs) -> files.Incoming:
        made.append(files.receive(pid))
        return made[-1]

    upload = None
    try:
        _, _, uploads = FormDataParser(stream_factory=sink).parse_from_environ(request.environ)
        upload = uploads.get("file")
    finally:
        for incoming in made:
            if upload is None or incoming is not upload.stream:
                incoming.discard()
    if upload is None:
        raise Invalid("send the file as a multipart part named file", "file")
    return upload.filename, upload.stream


@blp.route("/<int:pid>/files/<int:fid>")
class FileItem(MethodView):
    @blp.response(200, StoredFileSchema)
    def get(self, pid: int, fid: int):
        """A file's name, size and sha256."""
        require(current_actor(), pid, Action.READ)
        return records.get(StoredFile, fid, pid)

    @blp.response(204)
    def delete(self, pid: int, fid: int):
        """Delete a file from the store."""
        files.remove(current_actor(), pid, fid)


@blp.route("/<int:pid>/files/<int:fid>/content")
class FileContent(MethodView):
    @blp.response(200, content_type="application/octet-stream")
    def get(self, pid: int, fid: int):
        """Download the file, streamed."""
        require(current_actor(), pid, Action.READ)
        row = records.get(StoredFile, fid, pid)
        return send_file(
            files.path_of(row),
            mimetype="application/octet-stream",
            as_attachment=True,
            download_name=row.name,
            etag=row.sha256,
        )
