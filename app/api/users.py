"""/users, /users/{id}, their tokens, and /users/me"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from app.api.auth import current_actor
from app.api.paging import RowPage, filter_arguments
from app.extensions import db
from app.models import ApiToken, User
from app.schemas.identity import (
    NewTokenSchema,
    PasswordChangedSchema,
    PasswordChangeSchema,
    TokenSchema,
    UserArgs,
    UserChangeSchema,
    UserSchema,
)
from app.services import identity

blp = Blueprint("users", __name__, url_prefix="/api/v1/users", description="Users and their API tokens")


@blp.route("")
class Users(MethodView):
    @filter_arguments(blp, UserArgs)
    @blp.response(200, UserSchema(many=True))
    @blp.paginate(RowPage)
    def get(self, filters: dict[str, Any]):
        """List users (system administrators); a project admin looks one up by `?username=` to grant a
        role, and sees its id, name and display name only."""
        return identity.users(current_actor(), filters)

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


@blp.route("/me/password")
class Password(MethodView):
    @blp.arguments(PasswordChangeSchema)
    @blp.response(200, PasswordChangedSchema)
    def post(self, data: dict[str, Any]):
        """Change your password, given the current one; your other tokens are revoked unless
        `revoke_other_tokens` is false."""
        revoked = identity.change_own_password(
            current_actor(), data["current_password"], data["new_password"], data["revoke_other_tokens"]
        )
        return {"revoked_tokens": revoked}


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
        """Revoke a token: it stops working at once. A read-only token may revoke itself."""
        identity.revoke_own_token(current_actor(), token_id)


@blp.route("/<int:user_id>")
class UserItem(MethodView):
    @blp.response(200, UserSchema)
    def get(self, user_id: int):
        """A user (system administrators; every user may read themself)."""
        return identity.read_user(current_actor(), user_id)

    @blp.arguments(UserChangeSchema)
    @blp.response(200, UserSchema)
    def patch(self, data: dict[str, Any], user_id: int):
        """Change a user's display name, email or system administrator flag, or disable or enable them
        (system administrators). The last active system administrator cannot be disabled or demoted."""
        return identity.change_user(current_actor(), user_id, data)

    @blp.response(204)
    def delete(self, user_id: int):
        """Delete a user: roles and tokens go, the name stays taken (system administrators)."""
        identity.delete_user(current_actor(), user_id)


@blp.route("/<int:user_id>/tokens")
class UserTokens(MethodView):
    @blp.response(200, TokenSchema(many=True))
    def get(self, user_id: int):
        """A user's tokens, without their values (system administrators)."""
        return identity.user_tokens(current_actor(), user_id)


@blp.route("/<int:user_id>/tokens/<int:token_id>")
class UserToken(MethodView):
    @blp.response(204)
    def delete(self, user_id: int, token_id: int):
        """Revoke a user's token: it stops working at once (system administrators)."""
        identity.revoke_user_token(current_actor(), user_id, token_id)
