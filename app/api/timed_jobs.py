"""/projects/{pid}/timed-jobs: targets bound to schedules, their runs, and the trigger endpoint for outside
schedulers."""

from __future__ import annotations

from typing import Any

from flask import g, request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api import audit, auth
from app.api.auth import current_actor
from app.api.crud import project_resource
from app.api.paging import SelectPage, filter_arguments
from app.models import TimedJob
from app.schemas.timer import (
    FireTimeSchema,
    PreviewArgs,
    TimedJobArgs,
    TimedJobSchema,
    TimedRunArgs,
    TimedRunSchema,
    TriggerSchema,
    TriggerUrlSchema,
)
from app.services import records, timed_jobs
from app.services.access import Action, require

SECRET_ARGUMENT = "secret"
SECRET_HEADER = "X-Opsflow-Trigger-Secret"

blp = Blueprint(
    "timed_jobs",
    __name__,
    url_prefix="/api/v1/projects",
    description="Timed jobs: plans, templates, flows and script executions fired on second-level schedules",
)


def trigger_url(timed_job: TimedJob, secret: str) -> str:
    path = url_for(
        "timed_jobs.TimedJobTrigger", pid=timed_job.project_id, item_id=timed_job.id, _external=True
    )
    return f"{path}?{SECRET_ARGUMENT}={secret}"


def created(project_id: int, data: dict[str, Any]) -> TimedJob:
    timed_job, secret = timed_jobs.create_timed_job(current_actor(), project_id, data)
    timed_job.trigger_url = trigger_url(timed_job, secret)
    return timed_job


def given_secret() -> str | None:
    return request.args.get(SECRET_ARGUMENT) or request.headers.get(SECRET_HEADER)


project_resource(
    blp,
    "timed-jobs",
    TimedJob,
    TimedJobSchema,
    create=created,
    update=lambda row, data: timed_jobs.update_timed_job(current_actor(), row, data),
    filters=TimedJobArgs,
    query=timed_jobs.timed_jobs_query,
    remove=lambda row: timed_jobs.delete_timed_job(current_actor(), row),
)


@blp.route("/<int:pid>/timed-jobs/<int:item_id>/preview")
class TimedJobPreview(MethodView):
    @filter_arguments(blp, PreviewArgs)
    @blp.response(200, FireTimeSchema(many=True))
    def get(self, args: dict[str, Any], pid: int, item_id: int):
        """The next fire times, in the timed job's zone and in UTC."""
        require(current_actor(), pid, Action.READ)
        return timed_jobs.preview(records.get(TimedJob, item_id, pid), args["count"])


@blp.route("/<int:pid>/timed-jobs/<int:item_id>/run-now")
class TimedJobRunNow(MethodView):
    @blp.response(202, TimedRunSchema)
    def post(self, pid: int, item_id: int):
        """One run at once, recorded like the scheduled ones."""
        return timed_jobs.run_now(current_actor(), pid, item_id)


@blp.route("/<int:pid>/timed-jobs/<int:item_id>/runs")
class TimedJobRuns(MethodView):
    @filter_arguments(blp, TimedRunArgs)
    @blp.response(200, TimedRunSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int, item_id: int):
        """Its runs, newest first, filtered and paged."""
        require(current_actor(), pid, Action.READ)
        return timed_jobs.runs_query(records.get(TimedJob, item_id, pid), filters)


@blp.route("/<int:pid>/timed-jobs/<int:item_id>/trigger")
class TimedJobTrigger(MethodView):
    @blp.arguments(TriggerSchema, required=False)
    @blp.response(202, TimedRunSchema)
    def post(self, data: dict[str, Any], pid: int, item_id: int):
        """Start a run for an outside scheduler, with a project token or the timed job's trigger secret
        (?secret= or the X-Opsflow-Trigger-Secret header); the same run_key twice starts one run."""
        secret = given_secret()
        if secret is not None:
            g.actor = timed_jobs.secret_actor(pid, item_id, secret, request.remote_addr)
        run, replayed = timed_jobs.trigger(
            current_actor(), pid, item_id, data.get("run_key"), data.get("variables", {})
        )
        return run, 202, {"Idempotent-Replayed": "true"} if replayed else {}


@blp.route("/<int:pid>/timed-jobs/<int:item_id>/trigger-secret")
class TimedJobTriggerSecret(MethodView):
    @blp.response(201, TriggerUrlSchema)
    def post(self, pid: int, item_id: int):
        """A new trigger secret, shown once in the trigger URL; the old one stops working."""
        timed_job, secret = timed_jobs.rotate_secret(current_actor(), pid, item_id)
        return {"trigger_url": trigger_url(timed_job, secret)}

    @blp.response(204)
    def delete(self, pid: int, item_id: int):
        """Revoke the trigger secret: the trigger endpoint then takes project tokens only."""
        timed_jobs.revoke_secret(current_actor(), pid, item_id)


auth.SECRET_ENDPOINTS["timed_jobs.TimedJobTrigger"] = given_secret
audit.ACTIONS.update(
    {
        ("timed_jobs.TimedJobRunNow", "POST"): ("timed_job", "run_now"),
        ("timed_jobs.TimedJobTrigger", "POST"): ("timed_job", "trigger"),
        ("timed_jobs.TimedJobTriggerSecret", "POST"): ("timed_job", "rotate_trigger_secret"),
        ("timed_jobs.TimedJobTriggerSecret", "DELETE"): ("timed_job", "revoke_trigger_secret"),
    }
)
