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
from sqlalchemy import Select, delete, func, select, update
from sqlalchemy.orm import joinedload

from app.config import PASSWORD_MIN_LENGTH
from app.extensions import db
from app.models import ApiToken, Membership, Role, User
from app.models.base import utcnow
from app.services import records
from app.services.access import Action, Actor, require_system_admin, require_writable
from app.services.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized

TOKEN_PREFIX = "opf_"
ADMIN_USERNAME = "admin"
_hasher = PasswordHasher()
# The system administrators who can still act.
ACTIVE_ADMIN = (User.is_admin.is_(True), User.disabled.is_(False), User.deleted_at.is_(None))
# Verified against when the user does not exist, so a wrong name costs the same time as a wrong password.
DUMMY_HASH = _hasher.hash("no such user")


def hash_token(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check_password(password: str, username: str, field: str = "password") -> None:
    """Refuse passwords that are empty, short, of one kind of character, or the user name."""
    if len(password) < PASSWORD_MIN_LENGTH:
        raise Invalid(f"a password needs at least {PASSWORD_MIN_LENGTH} characters", field)
    if password.isalpha() or password.isdigit() or len(set(password)) < 5:
        raise Invalid("a password needs more than one kind of character", field)
    if username.lower() in password.lower():
        raise Invalid("a password must not contain the user name", field)


def create_user(actor: Actor, data: dict[str, Any]) -> User:
    """A new user; a name once used, by a deleted user too, stays taken."""
    require_system_admin(actor)
    data = dict(data)
    password = data.pop("password")
    check_password(password, data["username"])
    return records.save(User(password_hash=_hasher.hash(password), **data), unique_field="username")


def users(actor: Actor, filters: dict[str, Any]) -> Select:
    """The users the actor may list, by id, as rows of the columns the actor may see.

    A system administrator lists every user that is not deleted. A project admin, to grant a role,
    looks one user up by exact name and sees who it is (id, name, display name), nothing more."""
    if actor.is_admin:
        columns = [User.id, User.username, User.display_name, User.email, User.is_admin, User.disabled]
        rows = select(*columns, User.created_at)
    else:
        if "username" not in filters:
            raise Forbidden("only a system administrator lists users; look one up by ?username=")
        administers = select(Membership.id).where(
            Membership.user_id == actor.user_id, Membership.role == Role.ADMIN
        )
        if db.session.scalar(administers.limit(1)) is None:
            raise Forbidden("only system administrators and project admins look users up")
        rows = select(User.id, User.username, User.display_name)
    rows = rows.where(User.deleted_at.is_(None))
    if "username" in filters:
        rows = rows.where(User.username == filters["username"])
    return rows.order_by(User.id)


def get_user(user_id: int) -> User:
    """The user, or NotFound; a deleted user counts as missing."""
    user = db.session.get(User, user_id)
    if user is None or user.deleted_at is not None:
        raise NotFound(f"user {user_id} does not exist")
    return user


def read_user(actor: Actor, user_id: int) -> User:
    """A user as a system administrator sees them; every user may read themself."""
    if user_id != actor.user_id:
        require_system_admin_to_read(actor)
    return get_user(user_id)


def require_system_admin_to_read(actor: Actor) -> None:
    if not actor.is_admin:
        raise Forbidden("only a system administrator may read other users")


def change_user(actor: Actor, user_id: int, changes: dict[str, Any]) -> User:
    """Change a user's display name, email, system administrator flag, or disable or enable them; a disabled
    user's tokens stop at the next request. The last active system administrator stays one."""
    require_system_admin(actor)
    user = get_user(user_id)
    guarded = user.is_admin and user.active
    if guarded:
        lock_active_admins()
    for name, value in changes.items():
        setattr(user, name, value)
    if guarded and not (user.is_admin and user.active):
        keep_an_active_admin("disabled" if changes.get("disabled") else "is_admin")
    db.session.commit()
    return user


def delete_user(actor: Actor, user_id: int) -> None:
    """Delete a user: their roles and tokens go, and the row stays as the owner of the name that
    history, audit entries and confirmers refer to, so the name is never given to somebody else."""
    require_system_admin(actor)
    user = get_user(user_id)
    guarded = user.is_admin and user.active
    if guarded:
        lock_active_admins()
    user.deleted_at = utcnow()
    if guarded:
        keep_an_active_admin(None)
    db.session.execute(delete(Membership).where(Membership.user_id == user.id))
    revoke_tokens(user.id)
    db.session.commit()


def lock_active_admins() -> None:
    """Hold the active system administrators' rows for this transaction, so that two simultaneous
    changes cannot each take away the other's last admin (PostgreSQL; SQLite writes one at a time)."""
    db.session.scalars(
        select(User)
        .where(*ACTIVE_ADMIN)
        .order_by(User.id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()


def keep_an_active_admin(field: str | None) -> None:
    """Refuse (and undo) the changes of this transaction when they leave no active system administrator."""
    remaining = db.session.scalar(select(func.count()).select_from(User).where(*ACTIVE_ADMIN))
    if not remaining:
        db.session.rollback()
        raise Conflict("this is the last active system administrator; make another one first", field)


def change_own_password(actor: Actor, current: str, new: str, revoke_other_tokens: bool) -> int:
    """Set a new password, given the current one; unless told otherwise, the user's other tokens are
    revoked, since whoever knew the old password could have made some. Returns how many were revoked."""
    require_writable(actor, Action.ADMIN)
    user = get_user(actor.user_id)
    try:
        _hasher.verify(user.password_hash, current)
    except VerificationError as exc:
        raise Forbidden("the current password is wrong", "current_password") from exc
    check_password(new, user.username, "new_password")
    if new == current:
        raise Invalid("the new password is the current one", "new_password")
    user.password_hash = _hasher.hash(new)
    revoked = revoke_tokens(user.id, keep=actor.token_id) if revoke_other_tokens else 0
    db.session.commit()
    return revoked


def revoke_tokens(user_id: int, keep: int | None = None) -> int:
    """Revoke every live token of the user but `keep`; returns how many (not committed)."""
    live = update(ApiToken).where(ApiToken.user_id == user_id, ApiToken.revoked_at.is_(None))
    if keep is not None:
        live = live.where(ApiToken.id != keep)
    return db.session.execute(live.values(revoked_at=utcnow())).rowcount


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
    """Revoke one of your tokens; a read-only token may revoke itself, and only itself."""
    if token_id != actor.token_id:
        require_writable(actor, Action.ADMIN)
    revoke_token(actor.user_id, token_id)


def user_tokens(actor: Actor, user_id: int) -> list[ApiToken]:
    """A user's tokens, without their values (system administrators)."""
    require_system_admin_to_read(actor)
    get_user(user_id)
    return db.session.scalars(select(ApiToken).where(ApiToken.user_id == user_id).order_by(ApiToken.id)).all()


def revoke_user_token(actor: Actor, user_id: int, token_id: int) -> None:
    """Revoke any user's token (system administrators)."""
    require_system_admin(actor)
    get_user(user_id)
    revoke_token(user_id, token_id)


def revoke_token(user_id: int, token_id: int) -> None:
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user_id:
        raise NotFound(f"token {token_id} does not exist")
    token.revoked_at = token.revoked_at or utcnow()
    db.session.commit()


def authenticate(value: str, address: str | None = None) -> Actor:
    """The actor a bearer token stands for; Unauthorized when it is unknown, expired or revoked, or
    its user is disabled or deleted (looked at on every request, so it takes effect at once)."""
    token = db.session.scalar(
        select(ApiToken).where(ApiToken.token_hash == hash_token(value)).options(joinedload(ApiToken.user))
    )
    if token is None or token.revoked_at is not None or token.user.deleted_at is not None:
        raise Unauthorized("the token is not valid")
    if token.expires_at is not None and token.expires_at <= utcnow():
        raise Unauthorized("the token has expired")
    user = token.user
    if user.disabled:
        raise Unauthorized("the user is disabled")
    return Actor(user.id, user.username, user.is_admin, token.read_only, address, token.id)


def login(username: str, password: str, address: str | None = None) -> Actor:
    """The actor for a user name and password; Unauthorized when they do not match or the user is
    disabled or deleted."""
    user = db.session.scalar(select(User).where(User.username == username))
    user = user if user is not None and user.active else None
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
