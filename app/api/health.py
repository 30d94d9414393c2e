"""/health: is the service up, and are its parts (database, Redis, workers, engines, ingester)."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.services import health

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Health")


@blp.route("/health")
class Health(MethodView):
    @blp.response(200)
    @blp.alt_response(503, description="a part is down: the same report, its status degraded")
    def get(self):
        """Each part of the service and how it is; 503 when one is down."""
        report = health.report()
        return report, 200 if report["status"] == health.OK else 503
