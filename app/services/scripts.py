"""The script library: scripts, their versions and states, what a launch runs, and where a script ran.

A script belongs to a project, or is public (no project) and usable from every
project. Project scripts are changed by the project's operators, public ones by
system administrators; anyone who can see the project, or any user for public
ones, reads them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, literal, select, union_all, update

from app.extensions import db
from app.models import JobInstance, Script, ScriptVersion, StepInstance, VersionState
from app.services import danger, records
from app.services.access import Action, Actor, member_projects, require_scope
from app.services.errors import Conflict, NotFound

# Which states each operation moves a version from, and to which state.
TRANSITIONS: dict[str, tuple[frozenset[VersionState], VersionState]] = {
    "publish": (frozenset({VersionState.DRAFT, VersionState.OFFLINE}), VersionState.ONLINE),
    "offline": (frozenset({VersionState.ONLINE}), VersionState.OFFLINE),
    "disable": (
        frozenset({VersionState.DRAFT, VersionState.ONLINE, VersionState.OFFLINE}),
        VersionState.DISABLED,
    ),
    "enable": (frozenset({VersionState.DISABLED}), VersionState.OFFLINE),
}


@dataclass(frozen=True)
class Runnable:
    """What a launch runs: the language and content, and the library version they came from."""

    language: str
    content: str
    script_id: int | None = None
    version_id: int | None = None


def scripts_query(project_id: int | None) -> Select:
    scope = Script.project_id.is_(None) if project_id is None else Script.project_id == project_id
    return select(Script).where(scope).order_by(Script.id)


def get_script(actor: Actor, project_id: int | None, script_id: int, action: Action) -> Script:
    """The script of this scope (a project, or the public library), if the actor may do `action`."""
    require_scope(actor, project_id, action)
    script = db.session.get(Script, script_id)
    if script is None or script.project_id != project_id:
        raise NotFound(f"script {script_id} does not exist")
    return script


def create_script(actor: Actor, project_id: int | None, data: dict[str, Any]) -> Script:
    require_scope(actor, project_id, Action.OPERATE)
    return records.save(Script(project_id=project_id, **data))


def update_script(actor: Actor, project_id: int | None, script_id: int, data: dict[str, Any]) -> Script:
    return records.update(get_script(actor, project_id, script_id, Action.OPERATE), data)


def delete_script(actor: Actor, project_id: int | None, script_id: int) -> None:
    records.delete(get_script(actor, project_id, script_id, Action.OPERATE))


def get_version(script: Script, version_id: int) -> ScriptVersion:
    version = db.session.get(ScriptVersion, version_id)
    if version is None or version.script_id != script.id:
        raise NotFound(f"version {version_id} of script {script.id} does not exist")
    return version


def versions_query(script: Script) -> Select:
    return select(ScriptVersion).where(ScriptVersion.script_id == script.id).order_by(ScriptVersion.id)


def create_version(actor: Actor, script: Script, data: dict[str, Any]) -> ScriptVersion:
    """A new draft; its content is checked against the dangerous-command rules first."""
    warnings = _checked(script, data["content"])
    version = ScriptVersion(script_id=script.id, created_by=actor.username, **data)
    version = records.save(version, "version")
    version.warnings = warnings
    return version


def update_version(script: Script, version_id: int, data: dict[str, Any]) -> ScriptVersion:
    """Change the description, or the content while the version is a draft."""
    version = get_version(script, version_id)
    warnings = []
    if "content" in data:
        if version.state != VersionState.DRAFT:
            raise Conflict(
                f"version {version.version!r} is {version.state}: only a draft's content changes; "
                "create a new version instead",
                "content",
            )
        warnings = _checked(script, data["content"])
    version = records.update(version, data, "version")
    version.warnings = warnings
    return version


def _checked(script: Script, content: str) -> list[dict[str, Any]]:
    """The scan warnings on the content; Invalid when it is too large or an intercept rule matches."""
    danger.refuse_oversized(content, "content")
    verdict = danger.check(script.project_id, content, script.language)
    danger.refuse_intercepted(verdict, "content")
    return verdict.warnings


def transition(script: Script, version_id: int, operation: str) -> ScriptVersion:
    """Move a version to its next state; publishing takes the online version offline."""
    version = get_version(script, version_id)
    sources, target = TRANSITIONS[operation]
    if version.state not in sources:
        allowed = ", ".join(sorted(sources))
        raise Conflict(
            f"version {version.version!r} is {version.state}: {operation} applies to a version that is "
            f"{allowed}",
            "state",
        )
    if target == VersionState.ONLINE:
        db.session.execute(
            update(ScriptVersion)
            .where(ScriptVersion.script_id == script.id, ScriptVersion.state == VersionState.ONLINE)
            .values(state=VersionState.OFFLINE)
        )
    version.state = target
    records.commit(f"another version of script {script.id} went online at the same time", "state")
    return version


def runnable(project_id: int, source: dict[str, Any]) -> Runnable:
    """What a launch in the project runs: inline content, a script's online version, or a pinned version."""
    if "content" in source:
        return Runnable(source.get("language") or "shell", source["content"])
    if "script_id" in source:
        script = _usable_script(project_id, source["script_id"])
        version = db.session.scalar(
            select(ScriptVersion).where(
                ScriptVersion.script_id == script.id, ScriptVersion.state == VersionState.ONLINE
            )
        )
        if version is None:
            raise Conflict(
                f"script {script.id} ({script.name}) has no online version: publish one, or name a version",
                "script.script_id",
            )
    else:
        version = db.session.get(ScriptVersion, source["version_id"])
        if version is None or version.script.project_id not in (None, project_id):
            raise NotFound(f"script version {source['version_id']} does not exist", "script.version_id")
        refuse_disabled(version)
    return Runnable(version.script.language, version.content, version.script_id, version.id)


def _usable_script(project_id: int, script_id: int) -> Script:
    script = db.session.get(Script, script_id)
    if script is None or script.project_id not in (None, project_id):
        raise NotFound(f"script {script_id} does not exist", "script.script_id")
    return script


def refuse_disabled(version: ScriptVersion) -> None:
    """Conflict when the version is disabled: it must not run, even from a saved job."""
    if version.state == VersionState.DISABLED:
        raise Conflict(
            f"version {version.version!r} ({version.id}) of script {version.script.name!r} is disabled",
            "script.version_id",
        )


def require_runnable(spec: dict[str, Any]) -> None:
    """Refuse a step whose library version was disabled or deleted since it was launched."""
    version_id = spec.get("version_id")
    if version_id is None:
        return
    version = db.session.get(ScriptVersion, version_id)
    if version is None:
        raise Conflict(f"script version {version_id} no longer exists", "script.version_id")
    refuse_disabled(version)


def job_instance_uses(script: Script) -> Select:
    """Job instances that ran versions of the script, as usage rows."""
    return (
        select(
            literal("job_instance").label("kind"),
            JobInstance.id.label("id"),
            JobInstance.project_id.label("project_id"),
            JobInstance.name.label("name"),
            ScriptVersion.id.label("version_id"),
            ScriptVersion.version.label("version"),
            JobInstance.created_at.label("at"),
        )
        .join(StepInstance, StepInstance.job_instance_id == JobInstance.id)
        .join(ScriptVersion, ScriptVersion.id == StepInstance.script_version_id)
        .where(ScriptVersion.script_id == script.id)
        .distinct()
    )


# Where a script can be used; job templates add their own source here.
USAGE_SOURCES: tuple[Callable[[Script], Select], ...] = (job_instance_uses,)


def usage_query(actor: Actor, script: Script) -> Select:
    """Every use of the script, newest first, limited to the projects the actor can see."""
    uses = union_all(*(source(script) for source in USAGE_SOURCES)).subquery()
    query = select(uses).order_by(uses.c.at.desc(), uses.c.id.desc())
    if not actor.is_admin:
        query = query.where(uses.c.project_id.in_(member_projects(actor)))
    return query
