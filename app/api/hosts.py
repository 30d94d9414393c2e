"""/projects/{pid}/hosts"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.crud import project_resource
from app.models import Host
from app.schemas.inventory import HostKeySchema, HostListArgs, HostSchema
from app.services import host_keys, inventory, reachability

blp = Blueprint("hosts", __name__, url_prefix="/api/v1/projects", description="Hosts")
project_resource(
    blp,
    "hosts",
    Host,
    HostSchema,
    create=lambda pid, data: inventory.create_host(current_actor(), pid, data),
    update=lambda host, data: inventory.update_host(current_actor(), host, data),
    filters=HostListArgs,
    query=reachability.hosts_query,
)


@blp.route("/<int:pid>/hosts/<int:item_id>/host-key")
class HostKey(MethodView):
    @blp.response(200, HostKeySchema)
    def get(self, pid: int, item_id: int):
        """The SSH host keys the project's runs recorded for this host."""
        return host_keys.host_key(current_actor(), pid, item_id)

    @blp.response(204)
    def delete(self, pid: int, item_id: int):
        """Forget them: the next run trusts and records the key the host shows then."""
        host_keys.forget_host_key(current_actor(), pid, item_id)
