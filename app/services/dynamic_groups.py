"""Dynamic groups: saved host filters, turned into SQL each time they are resolved."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, func, literal, or_, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from app.extensions import db
from app.models import DynamicGroup, Group, Host
from app.models.inventory import group_child, group_host
from app.services import records


def group_tree(group_ids: list[int]) -> Select:
    """The ids of these groups and of every group below them."""
    tree = select(Group.id.label("id")).where(Group.id.in_(group_ids)).cte(recursive=True)
    tree = tree.union(select(group_child.c.child_id).where(group_child.c.parent_id == tree.c.id))
    return select(tree.c.id)


def hosts_of_groups(group_ids: list[int]) -> Select:
    """The ids of the hosts in these groups and their descendants."""
    return select(group_host.c.host_id).where(group_host.c.group_id.in_(group_tree(group_ids)))


def like_pattern(glob: str) -> str:
    escaped = glob.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%").replace("?", "_")


class json_member_text(FunctionElement):
    """The JSON text of one member of a JSON object column: `2`, `"2"` and `true` stay apart."""

    type = String()
    inherit_cache = True


@compiles(json_member_text, "postgresql")
def _json_member_text_postgresql(element, compiler, **kw) -> str:
    column, key = (compiler.process(clause, **kw) for clause in element.clauses)
    return f"CAST(({column} -> {key}) AS TEXT)"


@compiles(json_member_text, "sqlite")
def _json_member_text_sqlite(element, compiler, **kw) -> str:
    # json_extract gives true as 1, so booleans are told apart by their JSON type.
    column, key = (compiler.process(clause, **kw) for clause in element.clauses)
    path = f"'$.' || {key}"
    return (
        f"CASE json_type({column}, {path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' "
        f"ELSE json_quote(json_extract({column}, {path})) END"
    )


def host_filter(spec: dict[str, Any]) -> ColumnElement[bool]:
    """The condition a host meets when it matches the filter."""
    conditions: list[ColumnElement[bool]] = []
    if spec.get("names"):
        name = func.lower(Host.name)
        conditions.append(or_(*(name.like(like_pattern(glob), escape="\\") for glob in spec["names"])))
    for key, value in (spec.get("labels") or {}).items():
        conditions.append(Host.labels[key].as_string() == value)
    for key, value in (spec.get("variables") or {}).items():
        conditions.append(json_member_text(Host.variables, literal(key)) == json.dumps(value))
    if spec.get("groups"):
        conditions.append(Host.id.in_(hosts_of_groups(spec["groups"])))
    if spec.get("connection"):
        conditions.append(Host.connection == spec["connection"])
    return and_(true(), *conditions)


def matching_hosts(group: DynamicGroup) -> Select:
    """The hosts the dynamic group resolves to now, by id."""
    return (
        select(Host).where(Host.project_id == group.project_id, host_filter(group.filter)).order_by(Host.id)
    )


def create(project_id: int, data: dict[str, Any]) -> DynamicGroup:
    _check_groups(project_id, data)
    return records.save(DynamicGroup(project_id=project_id, **data))


def update(group: DynamicGroup, data: dict[str, Any]) -> DynamicGroup:
    _check_groups(group.project_id, data)
    return records.update(group, data)


def _check_groups(project_id: int, data: dict[str, Any]) -> None:
    with db.session.no_autoflush:
        records.get_many(Group, (data.get("filter") or {}).get("groups") or [], project_id, "filter.groups")
