"""/health: is the service up, and can it reach its database and Redis."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import text

from app.config import current as settings
from app.execution.isolation import isolation
from app.extensions import db, redis

blp = Blueprint("health", __name__, url_prefix="/api/v1", description="Health")


@blp.route("/health")
class Health(MethodView):
    @blp.response(200)
    def get(self):
        """Liveness of the API and of what it depends on."""
        checks = {}
        try:
            db.session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {exc.__class__.__name__}"
        try:
            redis.client.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {exc.__class__.__name__}"
        healthy = all(value == "ok" for value in checks.values())
        body = {"status": "ok" if healthy else "degraded", **checks}
        # Whether runs are sandboxed: a capability, which leaves the service up either way.
        body["isolation"] = isolation(settings()).describe()
        return body, 200 if healthy else 503
