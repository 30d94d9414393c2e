"""/projects/{pid}/ad-hoc-runs: one module on hosts, as `ansible -m` runs it."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.launching import launched
from app.schemas.ad_hoc import AdHocRunSchema
from app.schemas.job import JobSchema
from app.services import ad_hoc

blp = Blueprint("ad_hoc", __name__, url_prefix="/api/v1/projects", description="Ad-hoc commands")


@blp.route("/<int:pid>/ad-hoc-runs")
class AdHocRuns(MethodView):
    @blp.arguments(AdHocRunSchema)
    @blp.response(202, JobSchema)
    def post(self, data: dict[str, Any], pid: int):
        """Run one module on hosts, as `ansible -m MODULE -a ARGS`; answers at once with the job instance,
        whose host results and tasks come as for any run."""
        return launched(pid, data, lambda data: ad_hoc.launch_ad_hoc(current_actor(), pid, data))
