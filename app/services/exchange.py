"""What the exports of job templates and of flows share: a document as JSON or YAML text, references by
name, and an import that reports every reference it cannot find at once.

In an exported document a reference holds the name of what it refers to where the API holds its id (a
pinned script version is {script, version}). Importing finds each name in the target project. Two more
forms are read, never written: {"address": "10.0.0.5"}, the project's host at that address, and
{"id": 12}, the row of the project with that id (what a document translated from another system holds
when all it knows of a thing is an id). Secret values never leave the service.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any

import yaml
from marshmallow import Schema, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import DynamicGroup, Group, Host, Script, ScriptVersion, StoredFile, VariableType
from app.services.errors import Conflict, Invalid, first_error

TARGET_MODELS = {"hosts": Host, "groups": Group, "dynamic_groups": DynamicGroup}
# A reference: turns an id into a name (export) or a name into an id (import), in one project; the third
# argument names the field in errors.
Translate = Callable[[type, Any, str], Any]
NOUNS = {StoredFile: "stored file", DynamicGroup: "dynamic group", ScriptVersion: "script version"}


def noun(model: type) -> str:
    if model in NOUNS:
        return NOUNS[model]
    return "".join(f" {c.lower()}" if c.isupper() else c for c in model.__name__).strip()


def to_text(document: dict[str, Any], form: str) -> str:
    if form == "yaml":
        return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)
    return json.dumps(document, indent=2, ensure_ascii=False)


def parse(text: str) -> Any:
    """A document given as YAML or JSON text (JSON is YAML)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise Invalid(f"the document is not valid YAML or JSON{where}", "document") from exc


def load(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    """The data loaded by the API's own schema; Invalid naming the first field it refuses."""
    try:
        return schema.load(data)
    except ValidationError as exc:
        field, message = first_error(exc.messages)
        raise Invalid(message, field) from exc


def flush(conflict: str, field: str) -> None:
    """Flush what was added; a name taken already is a Conflict naming the field."""
    try:
        db.session.flush()
    except IntegrityError as exc:
        raise Conflict(conflict, field) from exc


def translated_targets(targets: dict[str, Any], translate: Translate, where: str) -> dict[str, Any]:
    """Targets ({hosts, groups, dynamic_groups}) with each reference translated."""
    translated = dict(targets)
    for key, model in TARGET_MODELS.items():
        if isinstance(targets.get(key), list):
            translated[key] = [
                translate(model, value, f"{where}.{key}.{index}") for index, value in enumerate(targets[key])
            ]
    return translated


def translated_variable(definition: dict[str, Any], translate: Translate, where: str) -> dict[str, Any]:
    """A variable definition with a host list default translated and a secret default left out."""
    definition = dict(definition)
    if definition.get("type") == VariableType.HOST_LIST and isinstance(definition.get("default"), dict):
        definition["default"] = translated_targets(definition["default"], translate, f"{where}.default")
    if definition.get("type") == VariableType.SECRET:
        definition["default"] = None
    return definition


def translated_values(
    definitions: list[dict[str, Any]], values: dict[str, Any], translate: Translate, where: str
) -> dict[str, Any]:
    """Values by variable name: host lists translated, secrets left out."""
    kinds = {definition["name"]: definition["type"] for definition in definitions}
    return {
        name: translated_targets(value, translate, f"{where}.{name}")
        if kinds.get(name) == VariableType.HOST_LIST and isinstance(value, dict)
        else value
        for name, value in values.items()
        if kinds.get(name) != VariableType.SECRET
    }


def name_of(model: type, id: Any, where: str) -> Any:
    """Export: an id to the name of what it refers to."""
    row = db.session.get(model, id) if isinstance(id, int) else None
    if row is None:
        return id
    if model is ScriptVersion:
        return {"script": row.script.name, "version": row.version}
    return row.name


def id_of(project_id: int, created: Mapping[type, Mapping[str, Any]] | None = None) -> Translate:
    """Import: a reference to the id of what it names in the project (public scripts too); a row the import
    has just made is found among `created` ({model: {name: row}})."""
    created = created or {}

    def to_id(model: type, name: Any, where: str) -> Any:
        if isinstance(name, str) and name in created.get(model, {}):
            return created[model][name].id
        if isinstance(name, dict) and set(name) == {"id"}:
            return by_id(project_id, model, name["id"], where)
        if model is Host and isinstance(name, dict) and set(name) == {"address"}:
            return host_at(project_id, name["address"], where)
        if model is ScriptVersion:
            if not isinstance(name, dict):
                raise Invalid("a pinned version is {script, version}", where)
            script_id = to_id(Script, name.get("script"), where)
            row = db.session.scalar(
                select(ScriptVersion).where(
                    ScriptVersion.script_id == script_id, ScriptVersion.version == str(name.get("version"))
                )
            )
            if row is None:
                raise Invalid(f"script {name.get('script')!r} has no version {name.get('version')!r}", where)
            return row.id
        if not isinstance(name, str):
            raise Invalid(f"a reference holds a name, not {type(name).__name__}", where)
        query = select(model.id).where(model.name == name)
        if model is Script:
            # The project's own script of that name, else a public one.
            query = query.where(or_(Script.project_id == project_id, Script.project_id.is_(None))).order_by(
                Script.project_id.is_(None)
            )
        else:
            query = query.where(model.project_id == project_id).order_by(model.id.desc())
        found = db.session.scalars(query.limit(1)).first()
        if found is None:
            raise Invalid(f"there is no {noun(model)} named {name!r} in this project", where)
        return found

    return to_id


def by_id(project_id: int, model: type, id: Any, where: str) -> int:
    """The id of the project's row (a public script's version too), or Invalid."""
    row = db.session.get(model, id) if isinstance(id, int) and not isinstance(id, bool) else None
    owner = row.script.project_id if isinstance(row, ScriptVersion) else getattr(row, "project_id", None)
    if row is None or owner not in (project_id, None if model is ScriptVersion else project_id):
        raise Invalid(f"there is no {noun(model)} with id {id!r} in this project", where)
    return row.id


def host_at(project_id: int, address: Any, where: str) -> int:
    """The project's host at this address (the first made, when several share it), or Invalid."""
    found = None
    if isinstance(address, str):
        found = db.session.scalars(
            select(Host.id).where(Host.project_id == project_id, Host.address == address).order_by(Host.id)
        ).first()
    if found is None:
        raise Invalid(f"there is no host with address {address!r} in this project", where)
    return found


def refuse_missing(
    project_id: int,
    entries: Iterable[tuple[str, Any]],
    translate_entry: Callable[[Any, Translate], Any],
    in_document: Mapping[type, Collection[str]],
    found: Iterable[dict[str, str]] = (),
) -> None:
    """Invalid listing every reference of the entries ((path, entry) pairs) that names nothing in the
    project nor in the document (`in_document`: {model: names the document makes}), with the problems
    `found` otherwise ({path, message}), so that one answer shows all a project lacks for an import."""
    to_id = id_of(project_id)
    problems: list[dict[str, str]] = list(found)
    for prefix, entry in entries:

        def check(model: type, name: Any, where: str, prefix: str = prefix) -> Any:
            if isinstance(name, str) and name in in_document.get(model, ()):
                return name
            try:
                return to_id(model, name, where)
            except Invalid as exc:
                problems.append({"path": f"{prefix}.{exc.field}", "message": exc.message})
                return name

        translate_entry(entry, check)
    if problems:
        count = "1 reference finds" if len(problems) == 1 else f"{len(problems)} references find"
        first = problems[0]
        raise Invalid(
            f"{count} nothing in this project: {first['path']}: {first['message']}",
            first["path"],
            {"errors": problems},
        )
