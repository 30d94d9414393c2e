"""Importing an Ansible inventory into a project, and exporting a project's inventory.

An import makes the project hold the hosts, groups, variables and memberships of the
file; importing the same file again changes nothing. Hosts, groups and memberships the
file does not name are removed only when asked (`remove_missing`). A dry run reports
the same changes and writes nothing. Labels are Opsflow's own and stay as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import delete, insert, select, tuple_

from app.config import current as settings
from app.extensions import db
from app.models import Group, Host
from app.models.inventory import group_child, group_host
from app.schemas.inventory import GroupSchema, HostSchema
from app.services import records
from app.services.access import Actor
from app.services.errors import Invalid, first_error
from app.services.inventory import require_local_allowed
from app.services.inventory_formats import GroupEntry, HostEntry, Inventory, parse, render

FORMAT_OF_SUFFIX = {".ini": "ini", ".cfg": "ini", ".yml": "yaml", ".yaml": "yaml", ".json": "json"}
# A membership: (group name, "host" or "child", member name).
Membership = tuple[str, str, str]


@dataclass
class Changes:
    hosts_added: list[str] = field(default_factory=list)
    hosts_updated: list[str] = field(default_factory=list)
    hosts_removed: list[str] = field(default_factory=list)
    groups_added: list[str] = field(default_factory=list)
    groups_updated: list[str] = field(default_factory=list)
    groups_removed: list[str] = field(default_factory=list)
    members_added: list[Membership] = field(default_factory=list)
    members_removed: list[Membership] = field(default_factory=list)

    def report(self, dry_run: bool) -> dict[str, Any]:
        def members(rows: list[Membership]) -> list[dict[str, str]]:
            return [{"group": group, kind: name} for group, kind, name in rows]

        return {
            "dry_run": dry_run,
            "hosts": {
                "added": self.hosts_added,
                "updated": self.hosts_updated,
                "removed": self.hosts_removed,
            },
            "groups": {
                "added": self.groups_added,
                "updated": self.groups_updated,
                "removed": self.groups_removed,
            },
            "memberships": {
                "added": members(self.members_added),
                "removed": members(self.members_removed),
            },
        }


def memberships(inventory: Inventory) -> set[Membership]:
    return {
        (name, kind, member)
        for name, group in inventory.groups.items()
        for kind, members in (("host", group.hosts), ("child", group.children))
        for member in members
    }


def diff(current: Inventory, incoming: Inventory, remove_missing: bool) -> Changes:
    """What importing `incoming` changes in a project that holds `current`."""
    changes = Changes()
    for name, host in incoming.hosts.items():
        if name not in current.hosts:
            changes.hosts_added.append(name)
        elif current.hosts[name] != host:
            changes.hosts_updated.append(name)
    for name, group in incoming.groups.items():
        if name not in current.groups:
            changes.groups_added.append(name)
        elif current.groups[name].variables != group.variables:
            changes.groups_updated.append(name)
    wanted, present = memberships(incoming), memberships(current)
    changes.members_added = sorted(wanted - present)
    if remove_missing:
        changes.hosts_removed = sorted(current.hosts.keys() - incoming.hosts.keys())
        changes.groups_removed = sorted(current.groups.keys() - incoming.groups.keys())
        removed = set(changes.hosts_removed) | set(changes.groups_removed)
        changes.members_removed = sorted(
            (group, kind, name)
            for group, kind, name in present - wanted
            if group not in removed and not (kind == "host" and name in removed)
            and not (kind == "child" and name in removed)
        )  # fmt: skip
    return changes


def refuse_cycle(current: Inventory, changes: Changes) -> None:
    """Invalid when the child groups the import leaves would contain themselves."""
    edges = {(group, name) for group, kind, name in memberships(current) if kind == "child"}
    edges |= {(group, name) for group, kind, name in changes.members_added if kind == "child"}
    edges -= {(group, name) for group, kind, name in changes.members_removed if kind == "child"}
    children: dict[str, set[str]] = {}
    for parent, child in edges:
        children.setdefault(parent, set()).add(child)
    for start in sorted(children):
        pending, seen = list(children[start]), set()
        while pending:
            name = pending.pop()
            if name == start:
                raise Invalid(f"group {start!r} would contain itself", "content")
            if name not in seen:
                seen.add(name)
                pending.extend(children.get(name, ()))


def validate(incoming: Inventory) -> None:
    """Each host and group passes the checks the hosts and groups endpoints make."""
    for kind, schema, entries in (
        ("hosts", HostSchema(), incoming.hosts.items()),
        ("groups", GroupSchema(only=("name", "variables")), incoming.groups.items()),
    ):
        for name, entry in entries:
            data = {"name": name, "variables": entry.variables}
            if isinstance(entry, HostEntry):
                data.update(address=entry.address, port=entry.port, connection=entry.connection)
            try:
                schema.load(data)
            except ValidationError as exc:
                path, message = first_error(exc.messages)
                raise Invalid(f"{kind[:-1]} {name!r}: {path}: {message}", f"{kind}.{name}.{path}") from exc


def load(project_id: int, group_id: int | None = None) -> Inventory:
    """The project's inventory; with a group, that group, its descendants and their hosts only."""
    groups = {row.id: row for row in db.session.scalars(select(Group).where(Group.project_id == project_id))}
    children: dict[int, list[int]] = {}
    for parent, child in db.session.execute(
        select(group_child.c.parent_id, group_child.c.child_id).where(group_child.c.parent_id.in_(groups))
    ):
        children.setdefault(parent, []).append(child)
    members: dict[int, list[int]] = {}
    for group, host in db.session.execute(
        select(group_host.c.group_id, group_host.c.host_id).where(group_host.c.group_id.in_(groups))
    ):
        members.setdefault(group, []).append(host)
    hosts = {row.id: row for row in db.session.scalars(select(Host).where(Host.project_id == project_id))}
    chosen = set(groups) if group_id is None else descendants(group_id, children)
    inventory = Inventory()
    for id in sorted(chosen, key=lambda id: groups[id].name):
        inventory.groups[groups[id].name] = GroupEntry(
            variables=groups[id].variables or {},
            hosts=sorted(hosts[host].name for host in members.get(id, [])),
            children=sorted(groups[child].name for child in children.get(id, [])),
        )
    wanted = set(hosts) if group_id is None else {host for id in chosen for host in members.get(id, [])}
    for host in sorted((hosts[id] for id in wanted), key=lambda host: host.name):
        inventory.hosts[host.name] = HostEntry(host.address, host.port, host.connection, host.variables or {})
    return inventory


def descendants(root: int, children: dict[int, list[int]]) -> set[int]:
    found, pending = {root}, [root]
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in found:
                found.add(child)
                pending.append(child)
    return found


def export(project_id: int, fmt: str, group_id: int | None = None) -> str:
    if group_id is not None:
        records.get(Group, group_id, project_id)
    return render(load(project_id, group_id), fmt)


def import_inventory(actor: Actor, project_id: int, data: dict[str, Any]) -> dict[str, Any]:
    """Parse, compare and (unless a dry run) apply an inventory in one transaction; the report."""
    if "content" not in data:
        raise Invalid("send the inventory as content, or upload it as file", "content")
    if "format" not in data:
        raise Invalid("say the format: ini, yaml or json", "format")
    incoming = parse(data["content"], data["format"], settings().import_hosts_max)
    validate(incoming)
    current = load(project_id)
    changes = diff(current, incoming, data["remove_missing"])
    changed = changes.hosts_added + changes.hosts_updated
    require_local_allowed(
        actor,
        [incoming.hosts[name].connection for name in changed]
        + [current.hosts[name].connection for name in changes.hosts_updated],
        "content",
    )
    refuse_cycle(current, changes)
    if not data["dry_run"]:
        apply(project_id, incoming, changes)
        records.commit("the project's inventory changed during the import; import again", "content")
    return changes.report(data["dry_run"])


def apply(project_id: int, incoming: Inventory, changes: Changes) -> None:
    hosts = {row.name: row for row in db.session.scalars(select(Host).where(Host.project_id == project_id))}
    groups = {
        row.name: row for row in db.session.scalars(select(Group).where(Group.project_id == project_id))
    }
    for name in changes.hosts_added + changes.hosts_updated:
        entry = incoming.hosts[name]
        row = hosts.get(name) or Host(project_id=project_id, name=name, labels={})
        row.address, row.port, row.connection, row.variables = (
            entry.address,
            entry.port,
            entry.connection,
            entry.variables,
        )
        hosts[name] = row
        db.session.add(row)
    for name in changes.groups_added + changes.groups_updated:
        row = groups.get(name) or Group(project_id=project_id, name=name, description="")
        row.variables = incoming.groups[name].variables
        groups[name] = row
        db.session.add(row)
    for name in changes.hosts_removed:
        db.session.delete(hosts[name])
    for name in changes.groups_removed:
        db.session.delete(groups[name])
    db.session.flush()
    tables = {
        "host": (group_host, group_host.c.host_id, hosts),
        "child": (group_child, group_child.c.child_id, groups),
    }
    for kind, (table, member_column, rows) in tables.items():
        parent_column = table.c.group_id if kind == "host" else table.c.parent_id
        added = [
            (groups[group].id, rows[name].id) for group, what, name in changes.members_added if what == kind
        ]
        removed = [
            (groups[group].id, rows[name].id) for group, what, name in changes.members_removed if what == kind
        ]
        if added:
            db.session.execute(
                insert(table),
                [{parent_column.name: parent, member_column.name: member} for parent, member in added],
            )
        if removed:
            db.session.execute(delete(table).where(tuple_(parent_column, member_column).in_(removed)))
