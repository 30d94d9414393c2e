"""/projects/{pid}/accounts"""

from __future__ import annotations

from flask_smorest import Blueprint

from app.api.crud import project_resource
from app.models import Account
from app.schemas.account import AccountSchema
from app.services.access import Action

blp = Blueprint(
    "accounts", __name__, url_prefix="/api/v1/projects", description="Accounts (secrets are write-only)"
)
project_resource(blp, "accounts", Account, AccountSchema, write=Action.ADMIN)
