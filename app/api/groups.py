"""/projects/{pid}/groups"""

from __future__ import annotations

from flask_smorest import Blueprint

from app.api.crud import project_resource
from app.models import Group
from app.schemas.inventory import GroupSchema
from app.services import inventory

blp = Blueprint("groups", __name__, url_prefix="/api/v1/projects", description="Static groups")
project_resource(
    blp, "groups", Group, GroupSchema, create=inventory.create_group, update=inventory.update_group
)
