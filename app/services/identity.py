"""Users, passwords, API tokens, and the first administrator."""

from __future__ import annotations

import hashlib
import os
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import VerificationError
from sqlalchemy import func, select

from app.config import PASSWORD_MIN_LENGTH
from app.extensions import db
from app.models import ApiToken, User
from app.models.base import utcnow
from app.services import records
from app.services.access import Action, Actor, require_system_admin, require_writable
from app.services.errors import Invalid, NotFound, Unauthorized

TOKEN_PREFIX = "opf_"
ADMIN_USERNAME = "admin"
_hasher = PasswordHasher()
# Verified against when the user does not exist, so a wrong name costs the same time as a wrong password.
DUMMY_HASH = _hasher.hash("no such user")


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check_password(password: str, username: str) -> None:
    """Refuse passwords that are empty, short, of one kind of character, or the user name."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise Invalid(f"a password needs at least {PASSWORD_MIN_LENGTH} characters", "password")
    if password.isalpha() or password.isdigit() or len(set(password)) < 5:
        raise Invalid("a password needs more than one kind of character", "password")
    if username.lower() in password.lower():
        raise Invalid("a password must not contain the user name", "password")


def create_user(actor: Actor, data: dict[str, Any]) -> User:
    require_system_admin(actor)
    data = dict(data)
    password = data.pop("password")
    check_password(password, data["username"])
    return records.save(User(password_hash=_hasher.hash(password), **data), unique_field="username")


def issue_token(
    user: User,
    name: str,
    expires_at: datetime | None = None,
    read_only: bool = False,
    value: str | None = None,
) -> tuple[ApiToken, str]:
    """A new token for the user (added, not committed) and its value, which is never stored."""
    if expires_at is not None and expires_at <= utcnow():
        raise Invalid("the expiry is in the past", "expires_at")
    value = value or TOKEN_PREFIX + secrets.token_urlsafe(32)
    token = ApiToken(
        user=user, name=name, token_hash=hash_token(value), expires_at=expires_at, read_only=read_only
    )
    db.session.add(token)
    return token, value


def create_own_token(actor: Actor, data: dict[str, Any]) -> tuple[ApiToken, str]:
    require_writable(actor, Action.ADMIN)
    user = db.session.get(User, actor.user_id)
    token, value = issue_token(user, data["name"], data.get("expires_at"), data.get("read_only", False))
    db.session.commit()
    return token, value


def revoke_own_token(actor: Actor, token_id: int) -> None:
    require_writable(actor, Action.ADMIN)
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != actor.user_id:
        raise NotFound(f"token {token_id} does not exist")
    token.revoked_at = token.revoked_at or utcnow()
    db.session.commit()


def authenticate(value: str, address: str | None = None) -> Actor:
    """The actor a bearer token stands for; Unauthorized when it is unknown, expired or revoked."""
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(value)))
    if token is None or token.revoked_at is not None:
        raise Unauthorized("the token is not valid")
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise Unauthorized("the token has expired")
    user = token.user
    return Actor(user.id, user.username, user.is_admin, token.read_only, address)


def login(username: str, password: str, address: str | None = None) -> Actor:
    """The actor for a user name and password; Unauthorized when they do not match."""
    user = db.session.scalar(select(User).where(User.username == username))
    try:
        _hasher.verify(user.password_hash if user else DUMMY_HASH, password)
    except VerificationError as exc:
        raise Unauthorized("wrong user name or password") from exc
    if user is None:
        raise Unauthorized("wrong user name or password")
    return Actor(user.id, user.username, user.is_admin, False, address)


def bootstrap_admin(data_dir: Path, chosen_token: str | None) -> Path | None:
    """On an empty database, create the `admin` system administrator and write its token to a
    file only the service's user can read. Returns the file's path, or None when users exist."""
    if db.session.scalar(select(func.count()).select_from(User)):
        return None
    admin = User(
        username=ADMIN_USERNAME,
        display_name="Administrator",
        password_hash=_hasher.hash(secrets.token_urlsafe(32)),
        is_admin=True,
    )
    db.session.add(admin)
    _, value = issue_token(admin, "first start", value=chosen_token)
    path = data_dir / "admin.token"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    db.session.commit()
    return path
