"""The five routes every project resource has: list, create, read, update, delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema
from sqlalchemy import Select, select

from app.api.auth import current_actor
from app.api.paging import SelectPage, filter_arguments
from app.schemas.query import FilterArgs
from app.services import records
from app.services.access import Action, require


def project_resource(
    blp: Blueprint,
    path: str,
    model: type,
    schema: type[Schema],
    create: Callable[[int, dict[str, Any]], Any] | None = None,
    update: Callable[[Any, dict[str, Any]], Any] | None = None,
    write: Action = Action.OPERATE,
    filters: type[Schema] = FilterArgs,
    query: Callable[[int, dict[str, Any]], Select] | None = None,
    remove: Callable[[Any], None] | None = None,
) -> None:
    """Register the CRUD routes of `model` under /projects/<pid>/<path>; changes need `write`.

    The list takes the query string arguments of `filters`, which `query` turns into a select.
    """

    def create_row(project_id: int, data: dict[str, Any]) -> Any:
        return records.save(model(project_id=project_id, **data))

    def all_rows(project_id: int, _filters: dict[str, Any]) -> Select:
        return select(model).where(model.project_id == project_id).order_by(model.id)

    create = create or create_row
    update = update or records.update
    query = query or all_rows
    remove = remove or records.delete

    @blp.route(f"/<int:pid>/{path}")
    class Collection(MethodView):
        @filter_arguments(blp, filters)
        @blp.response(200, schema(many=True))
        @blp.paginate(SelectPage)
        def get(self, args: dict[str, Any], pid: int):
            """List them, paged."""
            require(current_actor(), pid, Action.READ)
            return query(pid, args)

        @blp.arguments(schema)
        @blp.response(201, schema)
        def post(self, data: dict[str, Any], pid: int):
            """Create one."""
            require(current_actor(), pid, write)
            return create(pid, data)

    @blp.route(f"/<int:pid>/{path}/<int:item_id>")
    class Item(MethodView):
        @blp.response(200, schema)
        def get(self, pid: int, item_id: int):
            """Read one."""
            require(current_actor(), pid, Action.READ)
            return records.get(model, item_id, pid)

        # Partial at the top level only: a nested value given is given whole, defaults and checks included.
        @blp.arguments(schema(partial=tuple(schema().fields)))
        @blp.response(200, schema)
        def patch(self, data: dict[str, Any], pid: int, item_id: int):
            """Change some fields."""
            require(current_actor(), pid, write)
            return update(records.get(model, item_id, pid), data)

        @blp.response(204)
        def delete(self, pid: int, item_id: int):
            """Delete one."""
            require(current_actor(), pid, write)
            remove(records.get(model, item_id, pid))
