"""/projects/{pid}/playbook-runs: a repository's playbook run on hosts."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.launching import launched
from app.schemas.job import JobSchema
from app.schemas.playbook_run import PlaybookRunSchema
from app.services import playbook_runs

blp = Blueprint(
    "playbook_runs", __name__, url_prefix="/api/v1/projects", description="Runs of repository playbooks"
)


@blp.route("/<int:pid>/playbook-runs")
class PlaybookRuns(MethodView):
    @blp.arguments(PlaybookRunSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Run a playbook of a repository in its revision's directory; answers at once with the job."""
        return launched(pid, data, lambda data: playbook_runs.launch_playbook_run(current_actor(), pid, data))
