"""Exporting job templates (with the templates they include and their plans) as a JSON or YAML
document, and importing such a document into a project, the same one or another.

In a document every reference holds the name of what it refers to where the API holds its id:
hosts, groups, dynamic groups, accounts, scripts (a pinned version as {script, version}), stored
files and included templates. Importing finds each name in the target project; a name it does not
find is a 422 naming the field, and nothing is written. Secret values never leave the service.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import Account, JobPlan, JobTemplate, Script, ScriptVersion, StepType, StoredFile
from app.schemas.template import PlanSchema, TemplateSchema
from app.services import exchange, records, templates
from app.services.access import Action, Actor, require
from app.services.errors import Invalid, fields_under
from app.services.exchange import (
    Translate,
    load,
    name_of,
    translated_targets,
    translated_values,
    translated_variable,
)

FORMAT = "opsflow-job-templates/1"


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
    to_id = exchange.id_of(project_id, {JobTemplate: created})
    try:
        for index, entry in enumerate(entries):
            with fields_under(f"templates.{index}"):
                data = load_template(entry, to_id)
                template = templates.new_template(actor, project_id, data)
                db.session.add(template)
                exchange.flush(f"a job template named {template.name!r} exists already", "name")
                created[template.name] = template
        plans = []
        for index, entry in enumerate(document.get("plans") or []):
            with fields_under(f"plans.{index}"):
                plan = templates.new_plan(actor, project_id, load_plan(entry, to_id, created))
                db.session.add(plan)
                exchange.flush(f"a job plan named {plan.name!r} exists already", "name")
                plans.append(plan)
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    return list(created.values()), plans


def refuse_missing_references(project_id: int, entries: list[Any]) -> None:
    """Invalid listing every reference of the templates that names nothing in the project (nor in the
    document), so that one answer shows all a project lacks for the import."""
    in_document = {JobTemplate: {entry.get("name") for entry in entries if isinstance(entry, dict)}}
    exchange.refuse_missing(
        project_id,
        ((f"templates.{index}", entry) for index, entry in enumerate(entries) if isinstance(entry, dict)),
        translated_refs,
        in_document,
    )


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
