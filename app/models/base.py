"""Column types and helpers shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, Index, Text, TypeDecorator, inspect, text

from app.secrets import Cipher


def utcnow() -> datetime:
    return datetime.now(UTC)


def apply_defaults(row: Any) -> None:
    """Give a row not written yet the scalar defaults of its columns that have no value, as writing it
    would: code reading the row before it is written then sees them."""
    state = inspect(row)
    for attribute in state.mapper.column_attrs:
        default = attribute.columns[0].default
        if default is not None and default.is_scalar and attribute.key not in state.dict:
            setattr(row, attribute.key, default.arg)


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every database (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value

    def process_result_value(self, value, dialect):
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class EncryptedText(TypeDecorator):
    """Text encrypted with the service key before it reaches the database."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else Cipher.encrypt(value)

    def process_result_value(self, value, dialect):
        return None if value is None else Cipher.decrypt(value)


def index_where(name: str, *columns: str, condition: str, unique: bool = False) -> Index:
    """An index over the rows where `condition` holds (a partial index, on SQLite and PostgreSQL)."""
    return Index(
        name, *columns, unique=unique, sqlite_where=text(condition), postgresql_where=text(condition)
    )


def unique_where(name: str, column: str, condition: str) -> Index:
    """A unique index over the rows where `condition` holds."""
    return index_where(name, column, condition=condition, unique=True)
