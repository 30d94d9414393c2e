"""/projects/{pid}/script-executions and /projects/{pid}/jobs"""

from __future__ import annotations

from typing import Any

from flask import Response, stream_with_context
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.launching import launched
from app.api.paging import SelectPage, filter_arguments
from app.models import JobInstance
from app.schemas.job import (
    HostResultArgs,
    HostResultSchema,
    JobListArgs,
    JobSchema,
    OutputGroupSchema,
    RelaunchSchema,
    RetrySchema,
    ScriptExecutionSchema,
    StepOperationSchema,
    TaskResultArgs,
    TaskResultSchema,
)
from app.services import executions, jobs, records, step_operations
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
        return launched(pid, data, lambda data: executions.launch_script(current_actor(), pid, data))


@blp.route("/<int:pid>/jobs")
class Jobs(MethodView):
    @filter_arguments(blp, JobListArgs)
    @blp.response(200, JobSchema(many=True, exclude=("steps", "counts", "operations", "variables")))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int):
        """History: job instances matching every filter given, newest first, paged."""
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
    @blp.arguments(StepOperationSchema, required=False)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, jid: int):
        """Terminate a job: every host ends in a final status, steps waiting for a confirmation too."""
        executions.cancel(current_actor(), pid, jid, data.get("reason", ""))
        return jobs.job_with_counts(pid, jid)


def step_operation(name: str, summary: str, schema: type, operate) -> None:
    """Register POST /jobs/<jid>/steps/<sid>/<name>."""

    @blp.route(f"/<int:pid>/jobs/<int:jid>/steps/<int:sid>/{name}", endpoint=f"step_{name}")
    class StepOperation(MethodView):
        @blp.arguments(schema)
        @blp.response(202, JobSchema)
        def post(self, data: dict[str, Any], pid: int, jid: int, sid: int):
            operate(current_actor(), pid, jid, sid, **data)
            return jobs.job_with_counts(pid, jid)

    StepOperation.post.__doc__ = summary


step_operation(
    "retry",
    "Run a failed step again on its failed hosts (failed_only, the default) or on all the hosts it ran on.",
    RetrySchema,
    step_operations.retry,
)
step_operation(
    "ignore",
    "Take a failed step's error as ignored and go on (a rolling step rolls on).",
    StepOperationSchema,
    step_operations.ignore,
)
step_operation(
    "skip",
    "Skip a step that has not started, waits for a confirmation, or failed.",
    StepOperationSchema,
    step_operations.skip,
)
step_operation(
    "confirm",
    "Confirm a step waiting for it: a manual step, or a rolling step between batches.",
    StepOperationSchema,
    step_operations.confirm,
)
step_operation(
    "reject",
    "Refuse a step waiting for a confirmation: the job ends terminated.",
    StepOperationSchema,
    step_operations.reject,
)


@blp.route("/<int:pid>/jobs/<int:jid>/relaunch")
class JobRelaunch(MethodView):
    @blp.arguments(RelaunchSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int, jid: int):
        """Launch an ended job instance again with the same parameters, on all or only its failed hosts."""
        job = executions.relaunch(current_actor(), pid, jid, data["failed_only"])
        return jobs.job_with_counts(pid, job.id)


@blp.route("/<int:pid>/jobs/<int:jid>/host-results")
class HostResults(MethodView):
    @filter_arguments(blp, HostResultArgs)
    @blp.response(200, HostResultSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int, jid: int):
        """Per-host results, paged, filtered by step and status: each host's latest attempt, or `attempt`."""
        require(current_actor(), pid, Action.READ)
        return jobs.host_results_query(records.get(JobInstance, jid, pid), filters)


@blp.route("/<int:pid>/jobs/<int:jid>/host-results/<int:host_id>/log")
class HostLog(MethodView):
    @filter_arguments(blp, HostResultArgs(only=("step", "attempt")))
    @blp.response(200, content_type="text/plain")
    def get(self, filters: dict[str, Any], pid: int, jid: int, host_id: int):
        """One host's whole log in the job (its latest attempts, or `attempt`), as a text file."""
        require(current_actor(), pid, Action.READ)
        job = records.get(JobInstance, jid, pid)
        lines = jobs.host_log(job, host_id, filters.get("step"), filters.get("attempt"))
        return Response(
            stream_with_context(lines),
            mimetype="text/plain",
            headers=attachment(f"job-{jid}-host-{host_id}.log"),
        )


@blp.route("/<int:pid>/jobs/<int:jid>/host-results/<int:host_id>/tasks")
class HostTasks(MethodView):
    @filter_arguments(blp, TaskResultArgs)
    @blp.response(200, TaskResultSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int, jid: int, host_id: int):
        """One host's task results in the job, in the order they ran (step by step): name, role, status,
        message, changed, diff and times; its latest attempts, or `attempt`; paged, filtered by status.
        A playbook's and an ad-hoc command's tasks; a script step's one task is its host result."""
        require(current_actor(), pid, Action.READ)
        return jobs.host_tasks_query(records.get(JobInstance, jid, pid), host_id, filters)


@blp.route("/<int:pid>/jobs/<int:jid>/steps/<int:sid>/output-groups")
class OutputGroups(MethodView):
    @blp.response(200, OutputGroupSchema(many=True))
    @blp.paginate()
    def get(self, pid: int, jid: int, sid: int, pagination_parameters):
        """The step's hosts grouped by identical (status, exit code, stdout), largest group first, paged."""
        require(current_actor(), pid, Action.READ)
        step = jobs.job_step(records.get(JobInstance, jid, pid), sid)
        first, size = pagination_parameters.first_item, pagination_parameters.page_size
        pagination_parameters.item_count, groups = jobs.output_groups(step, first, size)
        return groups


@blp.route("/<int:pid>/jobs/<int:jid>/steps/<int:sid>/logs")
class StepLogs(MethodView):
    @blp.response(200, content_type="application/gzip")
    def get(self, pid: int, jid: int, sid: int):
        """Every host's log of the step as one .tar.gz (a file per host), streamed."""
        require(current_actor(), pid, Action.READ)
        step = jobs.job_step(records.get(JobInstance, jid, pid), sid)
        return Response(
            stream_with_context(jobs.step_logs_archive(step)),
            mimetype="application/gzip",
            headers=attachment(f"job-{jid}-step-{sid}-logs.tar.gz"),
        )


def attachment(filename: str) -> dict[str, str]:
    return {"Content-Disposition": f'attachment; filename="{filename}"'}
