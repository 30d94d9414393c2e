"""Exporting job templates (with the templates they include and their plans) as a JSON or YAML
document, and importing such a document into a project, the same one or another.

In a document every reference holds the name of what it refers to where the API holds its id:
hosts, groups, dynamic groups, accounts, scripts (a pinned version as {script, version}), stored
files and included templates. Importing finds each name in the target project; a name it does not
find is a 422 naming the field, and nothing is written. Secret values never leave the service.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import yaml
from marshmallow import Schema, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import (
    Account,
    DynamicGroup,
    Group,
    Host,
    JobPlan,
    JobTemplate,
    Script,
    ScriptVersion,
    StepType,
    StoredFile,
    VariableType,
)
from app.schemas.template import PlanSchema, TemplateSchema
from app.services import records, templates
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, fields_under, first_error

FORMAT = "opsflow-job-templates/1"
TARGET_MODELS = {"hosts": Host, "groups": Group, "dynamic_groups": DynamicGroup}
# A reference: turns an id into a name (export) or a name into an id (import), in one project.
Translate = Callable[[type, Any, str], Any]


def export_document(actor: Actor, project_id: int, template_id: int) -> dict[str, Any]:
    """The template, every template it includes (those first), and its plans."""
    require(actor, project_id, Action.READ)
    root = records.get(JobTemplate, template_id, project_id)
    ordered: list[JobTemplate] = []

    def visit(template: JobTemplate) -> None:
        if template in ordered:
            return
        for id in templates.included_ids(template.steps):
            included = db.session.get(JobTemplate, id)
            if included is not None:
                visit(included)
        ordered.append(template)

    visit(root)
    return {
        "format": FORMAT,
        "templates": [
            translated_refs(
                {
                    "name": template.name,
                    "description": template.description,
                    "variables": template.variables,
                    "steps": template.steps,
                },
                name_of,
            )
            for template in ordered
        ],
        "plans": [
            {
                "template": root.name,
                "name": plan.name,
                "description": plan.description,
                "enabled_steps": plan.enabled_steps,
                "values": translated_values(plan.variables, plan.values, name_of, "values"),
            }
            for plan in db.session.scalars(
                select(JobPlan).where(JobPlan.template_id == root.id).order_by(JobPlan.id)
            )
        ],
    }


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


def import_document(actor: Actor, project_id: int, document: Any) -> tuple[list[JobTemplate], list[JobPlan]]:
    """Create the document's templates and plans in the project, all or none."""
    require(actor, project_id, Action.OPERATE)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise Invalid(f"not a job template document: its format must be {FORMAT!r}", "format")
    entries = document.get("templates")
    if not isinstance(entries, list) or not entries:
        raise Invalid("give at least one template", "templates")
    refuse_cycles(entries)
    refuse_missing_references(project_id, entries)
    created: dict[str, JobTemplate] = {}
    to_id = id_of(project_id, created)
    try:
        for index, entry in enumerate(entries):
            with fields_under(f"templates.{index}"):
                data = load_template(entry, to_id)
                template = templates.new_template(actor, project_id, data)
                db.session.add(template)
                flush(f"a job template named {template.name!r} exists already", "name")
                created[template.name] = template
        plans = []
        for index, entry in enumerate(document.get("plans") or []):
            with fields_under(f"plans.{index}"):
                plan = templates.new_plan(actor, project_id, load_plan(entry, to_id, created))
                db.session.add(plan)
                flush(f"a job plan named {plan.name!r} exists already", "name")
                plans.append(plan)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    return list(created.values()), plans


def refuse_missing_references(project_id: int, entries: list[Any]) -> None:
    """Invalid listing every reference of the templates that names nothing in the project (nor in the
    document), so that one answer shows all a project lacks for the import."""
    in_document = {entry.get("name") for entry in entries if isinstance(entry, dict)}
    to_id = id_of(project_id, {})
    problems: list[dict[str, str]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            continue

        def check(model: type, name: Any, where: str, prefix: str = f"templates.{index}") -> Any:
            if model is JobTemplate and isinstance(name, str) and name in in_document:
                return name
            try:
                return to_id(model, name, where)
            except Invalid as exc:
                problems.append({"path": f"{prefix}.{exc.field}", "message": exc.message})
                return name

        translated_refs(entry, check)
    if problems:
        count = "1 reference finds" if len(problems) == 1 else f"{len(problems)} references find"
        first = problems[0]
        raise Invalid(
            f"{count} nothing in this project: {first['path']}: {first['message']}",
            first["path"],
            {"errors": problems},
        )


def flush(conflict: str, field: str) -> None:
    try:
        db.session.flush()
    except IntegrityError as exc:
        raise Conflict(conflict, field) from exc


def refuse_cycles(entries: list[Any]) -> None:
    """Templates of the document that include each other in a circle are refused before anything is read."""
    includes: dict[str, list[str]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise Invalid("a template needs a name", f"templates.{index}.name")
        includes[entry["name"]] = [name for name, _ in document_includes(entry, index)]
    for index, entry in enumerate(entries):
        for name, field in document_includes(entry, index):
            cycle = templates.include_path(includes, name, entry["name"])
            if cycle:
                raise Invalid(f"a cycle of included templates: {' -> '.join([entry['name'], *cycle])}", field)


def document_includes(entry: dict[str, Any], index: int) -> list[tuple[str, str]]:
    """The names a document's template includes, each with the field that names it."""
    return [
        (step["template"]["template_id"], f"templates.{index}.steps.{number}.template.template_id")
        for number, step in enumerate(entry.get("steps") or [])
        if isinstance(step, dict)
        and step.get("type") == StepType.TEMPLATE
        and isinstance(step.get("template"), dict)
        and isinstance(step["template"].get("template_id"), str)
    ]


def load_template(entry: dict[str, Any], to_id: Translate) -> dict[str, Any]:
    """The template as the API takes it: names turned into ids, then the schema's checks."""
    data = {key: entry[key] for key in ("name", "description", "variables", "steps") if key in entry}
    return load(TemplateSchema(), translated_refs(data, to_id))


def translated_refs(data: dict[str, Any], translate: Translate) -> dict[str, Any]:
    """A template with the references of its variables and steps translated."""
    data = dict(data)
    data["variables"] = [
        translated_variable(definition, translate, f"variables.{index}")
        for index, definition in enumerate(data.get("variables") or [])
        if isinstance(definition, dict)
    ]
    data["steps"] = [
        translated_step(step, translate, f"steps.{index}") if isinstance(step, dict) else step
        for index, step in enumerate(data.get("steps") or [])
    ]
    return data


def load_plan(entry: dict[str, Any], to_id: Translate, created: dict[str, JobTemplate]) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise Invalid("a plan is a mapping", None)
    template = created.get(entry.get("template"))
    if template is None:
        raise Invalid(f"the document has no template {entry.get('template')!r}", "template")
    data = {key: entry[key] for key in ("name", "description", "enabled_steps") if key in entry}
    data["template_id"] = template.id
    values = entry.get("values") or {}
    if not isinstance(values, dict):
        raise Invalid("values is a mapping of variable names to values", "values")
    # A plan holds the variables of the templates its template includes too.
    definitions = templates.expand(template).variables
    data["values"] = translated_values(definitions, values, to_id, "values")
    return load(PlanSchema(), data)


def load(schema: Schema, data: dict[str, Any]) -> dict[str, Any]:
    try:
        return schema.load(data)
    except ValidationError as exc:
        field, message = first_error(exc.messages)
        raise Invalid(message, field) from exc


def translated_step(step: dict[str, Any], translate: Translate, where: str) -> dict[str, Any]:
    """The step with each reference translated; `where` names it in errors."""
    step = copy.deepcopy(step)
    if isinstance(step.get("targets"), dict):
        step["targets"] = translated_targets(step["targets"], translate, f"{where}.targets")
    if step.get("account_id") is not None:
        step["account_id"] = translate(Account, step["account_id"], f"{where}.account_id")
    script = step.get("script")
    if isinstance(script, dict):
        if script.get("script_id") is not None:
            script["script_id"] = translate(Script, script["script_id"], f"{where}.script.script_id")
        if script.get("version_id") is not None:
            script["version_id"] = translate(
                ScriptVersion, script["version_id"], f"{where}.script.version_id"
            )
    transfer = step.get("transfer")
    if isinstance(transfer, dict):
        for index, source in enumerate(transfer.get("sources") or []):
            if not isinstance(source, dict):
                continue
            field = f"{where}.transfer.sources.{index}"
            if source.get("file_id") is not None:
                source["file_id"] = translate(StoredFile, source["file_id"], f"{field}.file_id")
            if isinstance(source.get("source_hosts"), dict):
                source["source_hosts"] = translated_targets(
                    source["source_hosts"], translate, f"{field}.source_hosts"
                )
            if source.get("account_id") is not None:
                source["account_id"] = translate(Account, source["account_id"], f"{field}.account_id")
    included = step.get("template")
    if isinstance(included, dict):
        included["template_id"] = translate(
            JobTemplate, included.get("template_id"), f"{where}.template.template_id"
        )
    return step


def translated_targets(targets: dict[str, Any], translate: Translate, where: str) -> dict[str, Any]:
    translated = dict(targets)
    for key, model in TARGET_MODELS.items():
        if isinstance(targets.get(key), list):
            translated[key] = [
                translate(model, value, f"{where}.{key}.{index}") for index, value in enumerate(targets[key])
            ]
    return translated


def translated_variable(definition: dict[str, Any], translate: Translate, where: str) -> dict[str, Any]:
    definition = dict(definition)
    if definition.get("type") == VariableType.HOST_LIST and isinstance(definition.get("default"), dict):
        definition["default"] = translated_targets(definition["default"], translate, f"{where}.default")
    if definition.get("type") == VariableType.SECRET:
        definition["default"] = None
    return definition


def translated_values(
    definitions: list[dict[str, Any]], values: dict[str, Any], translate: Translate, where: str
) -> dict[str, Any]:
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


def id_of(project_id: int, created: dict[str, JobTemplate]) -> Translate:
    """Import: a name to the id of what it names in the project (public scripts too); a template the
    import has just created is found among `created`."""

    def to_id(model: type, name: Any, where: str) -> Any:
        if model is JobTemplate and isinstance(name, str) and name in created:
            return created[name].id
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
            noun = {
                StoredFile: "stored file",
                DynamicGroup: "dynamic group",
                JobTemplate: "job template",
            }.get(model, model.__name__.lower())
            raise Invalid(f"there is no {noun} named {name!r} in this project", where)
        return found

    return to_id
