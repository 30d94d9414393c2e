"""/projects/{pid}/script-executions and /projects/{pid}/jobs"""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.paging import SelectPage
from app.models import JobInstance
from app.schemas.job import HostResultArgs, HostResultSchema, JobListArgs, JobSchema, ScriptExecutionSchema
from app.services import executions, jobs, records
from app.services.access import Action, require

blp = Blueprint(
    "jobs", __name__, url_prefix="/api/v1/projects", description="Script executions and job instances"
)


@blp.route("/<int:pid>/script-executions")
class ScriptExecutions(MethodView):
    @blp.arguments(ScriptExecutionSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Run a script on hosts; answers at once with the job instance."""
        job = executions.launch_script(current_actor(), pid, data)
        return jobs.job_with_counts(pid, job.id)


@blp.route("/<int:pid>/jobs")
class Jobs(MethodView):
    @blp.arguments(JobListArgs, location="query")
    @blp.response(200, JobSchema(many=True, exclude=("steps", "counts")))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int):
        """Job instances, newest first, paged."""
        require(current_actor(), pid, Action.READ)
        return jobs.jobs_query(pid, filters)


@blp.route("/<int:pid>/jobs/<int:jid>")
class Job(MethodView):
    @blp.response(200, JobSchema)
    def get(self, pid: int, jid: int):
        """A job instance: status, host counts per status, steps and their slices."""
        require(current_actor(), pid, Action.READ)
        return jobs.job_with_counts(pid, jid)


@blp.route("/<int:pid>/jobs/<int:jid>/cancel")
class JobCancel(MethodView):
    @blp.response(202, JobSchema)
    def post(self, pid: int, jid: int):
        """Stop a job: every host ends in a final status."""
        executions.cancel(current_actor(), pid, jid)
        return jobs.job_with_counts(pid, jid)


@blp.route("/<int:pid>/jobs/<int:jid>/host-results")
class HostResults(MethodView):
    @blp.arguments(HostResultArgs, location="query")
    @blp.response(200, HostResultSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int, jid: int):
        """Per-host results, paged, filtered by step and status."""
        require(current_actor(), pid, Action.READ)
        return jobs.host_results_query(records.get(JobInstance, jid, pid), filters)


@blp.route("/<int:pid>/jobs/<int:jid>/host-results/<int:host_id>/log")
class HostLog(MethodView):
    @blp.arguments(HostResultArgs(only=("step",)), location="query")
    @blp.response(200, content_type="text/plain")
    def get(self, filters: dict[str, Any], pid: int, jid: int, host_id: int):
        """One host's whole log in the job, as text."""
        require(current_actor(), pid, Action.READ)
        lines = jobs.host_log(records.get(JobInstance, jid, pid), host_id, filters.get("step"))
        return Response(stream_with_context(lines), mimetype="text/plain")
