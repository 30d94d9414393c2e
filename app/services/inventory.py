"""Hosts and static groups, and the hosts a launch targets."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select

from app.extensions import db
from app.models import DynamicGroup, Group, Host
from app.services import records
from app.services.dynamic_groups import host_filter, hosts_of_groups
from app.services.errors import Invalid


def create_host(project_id: int, data: dict[str, Any]) -> Host:
    return records.save(Host(project_id=project_id, **data))


def create_group(project_id: int, data: dict[str, Any]) -> Group:
    group = Group(project_id=project_id, **_members(project_id, data))
    return records.save(group)


def update_group(group: Group, data: dict[str, Any]) -> Group:
    changes = _members(group.project_id, data)
    if "children" in changes:
        _refuse_cycle(group, changes["children"])
    return records.update(group, changes)


def _members(project_id: int, data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    with db.session.no_autoflush:
        if "hosts" in data:
            data["hosts"] = records.get_many(Host, data["hosts"], project_id, "hosts")
        if "children" in data:
            data["children"] = records.get_many(Group, data["children"], project_id, "children")
    return data


def _refuse_cycle(group: Group, children: list[Group]) -> None:
    pending = list(children)
    seen: set[int] = set()
    while pending:
        child = pending.pop()
        if child.id == group.id:
            raise Invalid(f"group {group.id} would contain itself", field="children")
        if child.id not in seen:
            seen.add(child.id)
            pending.extend(child.children)


def resolve_targets(project_id: int, targets: dict[str, list[int]]) -> list[Host]:
    """The hosts named directly, through static groups (and their children) and through dynamic groups.

    Each host once, by id, in one query whatever the number of hosts.
    """
    host_ids = [
        host.id for host in records.get_many(Host, targets.get("hosts", []), project_id, "targets.hosts")
    ]
    groups = records.get_many(Group, targets.get("groups", []), project_id, "targets.groups")
    dynamic = records.get_many(
        DynamicGroup, targets.get("dynamic_groups", []), project_id, "targets.dynamic_groups"
    )
    conditions = [Host.id.in_(host_ids)]
    if groups:
        conditions.append(Host.id.in_(hosts_of_groups([group.id for group in groups])))
    conditions += [host_filter(group.filter) for group in dynamic]
    hosts = db.session.scalars(
        select(Host).where(Host.project_id == project_id, or_(*conditions)).order_by(Host.id)
    ).all()
    if not hosts:
        raise Invalid("targets resolve to no host: name at least one host or a group with hosts", "targets")
    return list(hosts)
