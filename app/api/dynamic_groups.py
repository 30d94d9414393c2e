"""/projects/{pid}/dynamic-groups"""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.crud import project_resource
from app.api.paging import SelectPage
from app.models import DynamicGroup
from app.schemas.inventory import DynamicGroupSchema, HostSchema
from app.services import dynamic_groups, records
from app.services.access import Action, require

blp = Blueprint(
    "dynamic_groups",
    __name__,
    url_prefix="/api/v1/projects",
    description="Dynamic groups (saved host filters)",
)
project_resource(
    blp,
    "dynamic-groups",
    DynamicGroup,
    DynamicGroupSchema,
    create=dynamic_groups.create,
    update=dynamic_groups.update,
)


@blp.route("/<int:pid>/dynamic-groups/<int:item_id>/hosts")
class DynamicGroupHosts(MethodView):
    @blp.response(200, HostSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self, pid: int, item_id: int):
        """The hosts the dynamic group resolves to now, paged."""
        require(current_actor(), pid, Action.READ)
        return dynamic_groups.matching_hosts(records.get(DynamicGroup, item_id, pid))
