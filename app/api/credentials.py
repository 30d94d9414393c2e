"""/projects/{pid}/credentials"""

from __future__ import annotations

from flask_smorest import Blueprint

from app.api.crud import project_resource
from app.models import Credential
from app.schemas.credential import CredentialSchema
from app.services import credentials
from app.services.access import Action

blp = Blueprint(
    "credentials",
    __name__,
    url_prefix="/api/v1/projects",
    description="Git and vault credentials (secrets are write-only)",
)
project_resource(
    blp,
    "credentials",
    Credential,
    CredentialSchema,
    create=credentials.create,
    update=credentials.update,
    remove=credentials.remove,
    write=Action.ADMIN,
)
