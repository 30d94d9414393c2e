"""Hosts and static groups."""

from __future__ import annotations

from typing import Any

from app.extensions import db
from app.models import Group, Host
from app.services import records
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


def group_hosts(groups: list[Group]) -> list[Host]:
    """Every host of the groups and their descendants, each once, in a stable order."""
    hosts: dict[int, Host] = {}
    pending, seen = list(groups), set()
    while pending:
        group = pending.pop()
        if group.id in seen:
            continue
        seen.add(group.id)
        for host in group.hosts:
            hosts.setdefault(host.id, host)
        pending.extend(group.children)
    return sorted(hosts.values(), key=lambda host: host.id)
