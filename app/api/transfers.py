"""/projects/{pid}/file-transfers and the per-file results of a job instance."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.launching import launched
from app.api.paging import SelectPage, filter_arguments
from app.models import JobInstance
from app.schemas.job import JobSchema
from app.schemas.transfer import FileResultArgs, FileResultSchema, FileTransferSchema
from app.services import records, transfers
from app.services.access import Action, require

blp = Blueprint("transfers", __name__, url_prefix="/api/v1/projects", description="File transfers")


@blp.route("/<int:pid>/file-transfers")
class FileTransfers(MethodView):
    @blp.arguments(FileTransferSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Send files to hosts: uploaded, inline, or taken from source hosts; answers at once with the job."""
        return launched(pid, data, lambda data: transfers.launch_transfer(current_actor(), pid, data))


@blp.route("/<int:pid>/jobs/<int:jid>/file-results")
class FileResults(MethodView):
    @filter_arguments(blp, FileResultArgs)
    @blp.response(200, FileResultSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int, jid: int):
        """Every file on every target host: size, duration, speed, status, error, checksum verified; paged."""
        require(current_actor(), pid, Action.READ)
        return transfers.file_results_query(records.get(JobInstance, jid, pid), filters)
