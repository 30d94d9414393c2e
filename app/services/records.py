"""Loading and saving rows, with the service's errors for missing and duplicate ones."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.services.errors import Conflict, Invalid, NotFound

Model = TypeVar("Model")


def get(model: type[Model], id: int, project_id: int | None = None) -> Model:
    """The row, or NotFound; a row of another project counts as missing."""
    row = db.session.get(model, id)
    if row is None or (project_id is not None and row.project_id != project_id):
        raise NotFound(f"{model.__name__.lower()} {id} does not exist")
    return row


def get_many(model: type[Model], ids: list[int], project_id: int, field: str) -> list[Model]:
    """The rows with these ids in the project, in the order given, or Invalid naming the missing ids."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return []
    rows = db.session.scalars(select(model).where(model.id.in_(wanted), model.project_id == project_id)).all()
    found = {row.id: row for row in rows}
    missing = [id for id in wanted if id not in found]
    if missing:
        noun = model.__name__.lower()
        raise Invalid(
            f"{noun} {', '.join(map(str, missing))} does not exist in this project",
            field=field,
            details={"missing": missing},
        )
    return [found[id] for id in wanted]


def commit(conflict: str, field: str) -> None:
    """Commit; when a unique constraint refuses it, roll back and raise a Conflict with this message."""
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise Conflict(conflict, field=field) from exc


def commit_keeping(rows: Iterable[Any]) -> None:
    """Commit, expiring what the session holds but `rows`: rows this transaction wrote, which are as
    the database now has them, so that their writer answers from them without reading them again."""
    session = db.session()
    kept = {id(row) for row in rows}
    expire_on_commit, session.expire_on_commit = session.expire_on_commit, False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire_on_commit
    if expire_on_commit:
        for row in list(session.identity_map.values()):
            if id(row) not in kept:
                session.expire(row)


def save(row: Any, unique_field: str = "name") -> Any:
    """Commit the row; a duplicate of a unique value is a Conflict naming the field."""
    db.session.add(row)
    commit(f"{unique_field} {getattr(row, unique_field, None)!r} is already taken", unique_field)
    return row


def update(row: Any, changes: dict[str, Any], unique_field: str = "name") -> Any:
    for key, value in changes.items():
        setattr(row, key, value)
    return save(row, unique_field)


def delete(row: Any) -> None:
    db.session.delete(row)
    db.session.commit()
