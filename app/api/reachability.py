"""/projects/{pid}/reachability-checks"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.schemas.job import JobSchema
from app.schemas.reachability import ReachabilityCheckSchema
from app.services import jobs, reachability_checks

blp = Blueprint(
    "reachability", __name__, url_prefix="/api/v1/projects", description="Host reachability checks"
)


@blp.route("/<int:pid>/reachability-checks")
class ReachabilityChecks(MethodView):
    @blp.arguments(ReachabilityCheckSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Check that hosts can be logged in to with the account; answers at once with the job instance.

        When the check ends, each host shows `reachable`, `last_checked_at`, `last_check_error`
        and `unreachable_since`; per-host results stay in the job's host results.
        """
        job = reachability_checks.launch_check(current_actor(), pid, data)
        return jobs.job_with_counts(pid, job.id)
