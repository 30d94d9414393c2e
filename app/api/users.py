"""/users and /users/me/tokens"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from app.api.auth import current_actor
from app.api.paging import SelectPage
from app.extensions import db
from app.models import ApiToken, User
from app.schemas.identity import NewTokenSchema, TokenSchema, UserSchema
from app.services import identity
from app.services.access import require_system_admin

blp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Users and their API tokens")


@blp.route("")
class Users(MethodView):
    @blp.response(200, UserSchema(many=True))
    @blp.paginate(SelectPage)
    def get(self):
        """List users (system administrators only)."""
        require_system_admin(current_actor())
        return select(User).order_by(User.id)

    @blp.arguments(UserSchema)
    @blp.response(201, UserSchema)
    def post(self, data: dict[str, Any]):
        """Create a user (system administrators only)."""
        return identity.create_user(current_actor(), data)


@blp.route("/me")
class Me(MethodView):
    @blp.response(200, UserSchema)
    def get(self):
        """The user the token belongs to."""
        return db.session.get(User, current_actor().user_id)


@blp.route("/me/tokens")
class Tokens(MethodView):
    @blp.response(200, TokenSchema(many=True))
    def get(self):
        """Your API tokens, without their values."""
        return db.session.scalars(
            select(ApiToken).where(ApiToken.user_id == current_actor().user_id).order_by(ApiToken.id)
        ).all()

    @blp.arguments(TokenSchema)
    @blp.response(201, NewTokenSchema)
    def post(self, data: dict[str, Any]):
        """Create a token; its value is in this response and nowhere else, ever."""
        token, value = identity.create_own_token(current_actor(), data)
        token.token = value
        return token


@blp.route("/me/tokens/<int:token_id>")
class Token(MethodView):
    @blp.response(204)
    def delete(self, token_id: int):
        """Revoke a token: it stops working at once."""
        identity.revoke_own_token(current_actor(), token_id)
