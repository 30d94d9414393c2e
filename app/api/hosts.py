"""/projects/{pid}/hosts"""

from __future__ import annotations

from flask_smorest import Blueprint

from app.api.crud import project_resource
from app.models import Host
from app.schemas.inventory import HostListArgs, HostSchema
from app.services import reachability

blp = Blueprint("hosts", __name__, url_prefix="/api/v1/projects", description="Hosts")
project_resource(blp, "hosts", Host, HostSchema, filters=HostListArgs, query=reachability.hosts_query)
