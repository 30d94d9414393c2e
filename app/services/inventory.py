"""Hosts and static groups, and the hosts a launch targets."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import or_, select

from app.extensions import db
from app.models import Connection, DynamicGroup, Group, Host
from app.models.inventory import group_child, group_host
from app.services import records
from app.services.access import Actor
from app.services.dynamic_groups import host_filter, hosts_of_groups
from app.services.errors import Forbidden, Invalid
from app.services.inventory_formats import ALL


def require_local_allowed(actor: Actor, connections: Iterable[str], field: str = "connection") -> None:
    """A local host runs its scripts on the controller: making or changing one is a system
    administrator's decision, whatever the actor's role in the project."""
    if Connection.LOCAL in connections and not actor.is_admin:
        raise Forbidden(
            "a host with connection local runs on the controller: only a system administrator may "
            "create or change one",
            field,
        )


def create_host(actor: Actor, project_id: int, data: dict[str, Any]) -> Host:
    require_local_allowed(actor, [data["connection"]])
    return records.save(Host(project_id=project_id, **data))


def update_host(actor: Actor, host: Host, data: dict[str, Any]) -> Host:
    require_local_allowed(actor, [host.connection, data.get("connection", host.connection)])
    return records.update(host, data)


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


def resolve_targets(project_id: int, targets: dict[str, list[int]], field: str = "targets") -> list[Host]:
    """The hosts named directly, through static groups (and their children) and through dynamic groups.

    Each host once, by id, in one query whatever the number of hosts (hosts named only directly need
    none beyond reading them). Errors name `field`.
    """
    named = records.get_many(Host, targets.get("hosts", []), project_id, f"{field}.hosts")
    groups = records.get_many(Group, targets.get("groups", []), project_id, f"{field}.groups")
    dynamic = records.get_many(
        DynamicGroup, targets.get("dynamic_groups", []), project_id, f"{field}.dynamic_groups"
    )
    if groups or dynamic:
        conditions = [Host.id.in_([host.id for host in named])]
        if groups:
            conditions.append(Host.id.in_(hosts_of_groups([group.id for group in groups])))
        conditions += [host_filter(group.filter) for group in dynamic]
        hosts = db.session.scalars(
            select(Host).where(Host.project_id == project_id, or_(*conditions)).order_by(Host.id)
        ).all()
    else:
        hosts = sorted(named, key=lambda host: host.id)
    if not hosts:
        raise Invalid(f"{field} resolve to no host: name at least one host or a group with hosts", field)
    return list(hosts)


def effective_variables(hosts: list[Host]) -> dict[int, dict[str, Any]]:
    """Each host's variables as Ansible merges them: its groups' and their ancestors', then its own.

    Groups apply from the shallowest to the deepest (a child group overrides its parents), by name
    among groups of the same depth, after the group named `all`; a host's own variables win.
    """
    groups, chosen, depth_of = memberships(hosts)
    merged = {}
    for host in hosts:
        order = sorted(
            chosen[host.id], key=lambda id: (groups[id].name != ALL, depth_of(id), groups[id].name)
        )
        variables: dict[str, Any] = {}
        for id in order:
            variables.update(groups[id].variables or {})
        merged[host.id] = {**variables, **(host.variables or {})}
    return merged


def group_members(hosts: list[Host]) -> dict[str, list[int]]:
    """{group name: ids of these hosts in it, directly or through a child group}."""
    groups, chosen, _ = memberships(hosts)
    members: dict[str, list[int]] = {}
    for host in hosts:
        for id in sorted(chosen[host.id]):
            members.setdefault(groups[id].name, []).append(host.id)
    return members


def memberships(hosts: list[Host]) -> tuple[dict[int, Group], dict[int, set[int]], Callable[[int], int]]:
    """The project's groups by id, each host's groups (with their ancestors and `all`) by host id, and
    a group's depth (1 for a group without parents)."""
    if not hosts:
        return {}, {}, lambda id: 0
    project_id = hosts[0].project_id
    groups = {row.id: row for row in db.session.scalars(select(Group).where(Group.project_id == project_id))}
    parents: dict[int, list[int]] = {}
    for parent, child in db.session.execute(
        select(group_child.c.parent_id, group_child.c.child_id).where(group_child.c.child_id.in_(groups))
    ):
        parents.setdefault(child, []).append(parent)
    direct: dict[int, list[int]] = {}
    for group, host in db.session.execute(
        select(group_host.c.group_id, group_host.c.host_id).where(
            group_host.c.host_id.in_([host.id for host in hosts])
        )
    ):
        direct.setdefault(host, []).append(group)
    depth: dict[int, int] = {}

    def depth_of(group: int) -> int:
        if group not in depth:
            depth[group] = 1 + max((depth_of(parent) for parent in parents.get(group, [])), default=0)
        return depth[group]

    common = [id for id, group in groups.items() if group.name == ALL]
    chosen_by_host = {}
    for host in hosts:
        chosen, pending = set(common), list(direct.get(host.id, []))
        while pending:
            group = pending.pop()
            if group not in chosen:
                chosen.add(group)
                pending.extend(parents.get(group, []))
        chosen_by_host[host.id] = chosen
    return groups, chosen_by_host, depth_of
