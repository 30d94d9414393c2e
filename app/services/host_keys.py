"""The SSH host keys a project's runs recorded for its hosts: read and forget them.

A project keeps one known_hosts (app/execution/known_hosts.py) under the data dir. Under
OPSFLOW_SSH_HOST_KEY_CHECKING=accept-new a host's first key is recorded by the run that meets it,
and a different key later fails that host with `host_key_changed` until the key is forgotten.
"""

from __future__ import annotations

from typing import Any

from app.config import current as settings
from app.execution.known_hosts import ProjectKnownHosts, known_as
from app.models import Host
from app.services import records
from app.services.access import Action, Actor, require


def project_known_hosts(project_id: int) -> ProjectKnownHosts:
    return ProjectKnownHosts(settings().known_hosts_dir / str(project_id))


def host_key(actor: Actor, project_id: int, host_id: int) -> dict[str, Any]:
    """The keys recorded for the host: type, fingerprint and when first seen."""
    require(actor, project_id, Action.READ)
    host = records.get(Host, host_id, project_id)
    name = known_as(host.address, host.port)
    return {
        "host_id": host.id,
        "known_as": name,
        "keys": project_known_hosts(project_id).keys(name),
    }


def forget_host_key(actor: Actor, project_id: int, host_id: int) -> None:
    """Forget the host's recorded keys: the next run records the key the host then shows."""
    require(actor, project_id, Action.OPERATE)
    host = records.get(Host, host_id, project_id)
    project_known_hosts(project_id).forget(known_as(host.address, host.port))
