"""Writing many rows at once: bulk inserts that skip rows already there, and bulk updates.

On PostgreSQL a batch goes as one statement whose values are arrays, one per column; elsewhere (SQLite) as
an executemany, which its driver runs in a loop of its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import ColumnElement, Insert, Select, Table, Update, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeEngine

from app.extensions import db


def insert_ignoring_duplicates(model):
    dialect = postgresql if db.engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(model.__table__).on_conflict_do_nothing()


def insert_rows(model, rows: list[dict[str, Any]]) -> None:
    """Insert the rows (dicts with the same keys), skipping those already there."""
    if not rows:
        return
    if db.engine.dialect.name != "postgresql":
        db.session.execute(insert_ignoring_duplicates(model), rows)
        return
    names = tuple(rows[0])
    db.session.execute(unnest_insert(model.__table__, names), arrays_of(rows, names))


@functools.cache
def unnest_insert(table: Table, names: tuple[str, ...]) -> Insert:
    """An INSERT of any number of rows given as arrays: one short statement, where an executemany is one
    statement per row and a multi-row VALUES one bound parameter per value."""
    rows = unnested({name: table.c[name].type for name in names})
    return postgresql.insert(table).from_select(list(names), rows).on_conflict_do_nothing()


def unnested(types: dict[str, TypeEngine]) -> Select:
    """PostgreSQL rows given as one array per column, zipped in order by unnest."""
    return select(
        *(
            func.unnest(bindparam(name, type_=postgresql.ARRAY(kind))).label(name)
            for name, kind in types.items()
        )
    )


def arrays_of(rows: list[dict[str, Any]], names: Iterable[str]) -> dict[str, list[Any]]:
    return {name: [row[name] for row in rows] for name in names}


class BulkUpdate:
    """An UPDATE of rows of `table` picked by id, with values of their own for each: an executemany, or on
    PostgreSQL one statement taking each value as an array (one round trip and one plan for the whole
    batch, where an executemany runs a statement per row). Each row to update is given once, its id as
    `target`; `values` makes the SET clause from the given values by name, `where` adds a condition."""

    def __init__(
        self,
        table: Table,
        where: ColumnElement[bool],
        values: Callable[[Callable[[str], ColumnElement]], dict[str, Any]],
        **types: TypeEngine,
    ) -> None:
        types = {"target": table.c.id.type, **types}
        self.names = list(types)

        def build(given: Callable[[str], ColumnElement]) -> Update:
            return update(table).where(table.c.id == given("target"), where).values(values(given))

        self.by_row = build(lambda name: bindparam(name, type_=types[name]))
        arrays = unnested(types).subquery("given")
        self.by_arrays = build(lambda name: arrays.c[name])

    def execute(self, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        if db.engine.dialect.name == "postgresql":
            db.session.execute(self.by_arrays, arrays_of(rows, self.names))
        else:
            db.session.execute(self.by_row, rows)
