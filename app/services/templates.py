"""Job templates and plans: checking, saving, and keeping plans in step with their template."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, select

from app.execution.playbook import check_playbook
from app.extensions import db
from app.models import (
    Account,
    DynamicGroup,
    Group,
    Host,
    JobPlan,
    JobTemplate,
    StepType,
    StoredFile,
    VariableType,
)
from app.secrets import MASK
from app.services import danger, playbook_runs, records, rolling, scripts, variables
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, fields_under

K = TypeVar("K")


def plans_query(project_id: int, filters: dict[str, Any]) -> Select:
    """The project's plans, of one template when the filters name it."""
    query = select(JobPlan).where(JobPlan.project_id == project_id)
    if "template_id" in filters:
        query = query.where(JobPlan.template_id == filters["template_id"])
    return query.order_by(JobPlan.id)


@dataclass
class Expanded:
    """A template with the steps and variables of the templates it includes in place."""

    steps: list[dict[str, Any]]
    variables: list[dict[str, Any]]
    secret_defaults: dict[str, str]
    # The version of the template and of every template it includes, by id (as text: JSON keys).
    versions: dict[str, int]


def expand(template: JobTemplate, trail: tuple[int, ...] = ()) -> Expanded:
    """Included steps take the including step's place, their keys and names prefixed by its own;
    included variables the template does not define itself follow its own."""
    if template.id in trail:
        raise Conflict(
            f"job template {template.name!r} includes itself through {len(trail)} templates", "steps"
        )
    expanded = Expanded(
        [], list(template.variables), template.secret_default_values, {str(template.id): template.version}
    )
    names = {definition["name"] for definition in expanded.variables}
    for step in template.steps:
        if step["type"] != StepType.TEMPLATE:
            expanded.steps.append(step)
            continue
        included = db.session.get(JobTemplate, step["template"]["template_id"])
        if included is None:
            raise Conflict(f"step {step['key']!r} includes a template that no longer exists", "steps")
        inner = expand(included, (*trail, template.id))
        expanded.steps.extend(
            {
                **inner_step,
                "key": f"{step['key']}.{inner_step['key']}",
                "name": f"{step['name']}: {inner_step['name']}",
            }
            for inner_step in inner.steps
        )
        expanded.variables.extend(
            definition for definition in inner.variables if definition["name"] not in names
        )
        names.update(definition["name"] for definition in inner.variables)
        for name, value in inner.secret_defaults.items():
            expanded.secret_defaults.setdefault(name, value)
        expanded.versions.update(inner.versions)
    return expanded


def include_path(includes: Mapping[K, Iterable[K]], start: K, goal: K) -> list[K] | None:
    """The templates from `start` to `goal` through their includes, if `goal` is reached that way."""
    pending, seen = [[start]], set()
    while pending:
        path = pending.pop()
        if path[-1] == goal:
            return path
        if path[-1] not in seen:
            seen.add(path[-1])
            pending.extend([*path, inner] for inner in includes.get(path[-1], ()))
    return None


def included_ids(steps: list[dict[str, Any]]) -> list[int]:
    return [step["template"]["template_id"] for step in steps if step["type"] == StepType.TEMPLATE]


def check_steps(
    actor: Actor,
    project_id: int,
    steps: list[dict[str, Any]],
    definitions: list[dict],
    template_id: int | None = None,
) -> None:
    """Every reference of every step resolves in the project, and no template includes itself; keys are
    given to the steps without one."""
    kinds = {definition["name"]: definition["type"] for definition in definitions}
    taken = {step["key"] for step in steps if "key" in step}
    for index, step in enumerate(steps):
        if "key" not in step:
            number = index + 1
            while f"step-{number}" in taken:
                number += 1
            step["key"] = f"step-{number}"
            taken.add(step["key"])
    seen: set[str] = set()
    for index, step in enumerate(steps):
        where = f"steps.{index}"
        if step["key"] in seen:
            raise Invalid(f"two steps have the key {step['key']!r}", f"{where}.key")
        seen.add(step["key"])
        with fields_under(where, missing_is_invalid=True):
            check_step(actor, project_id, step, kinds)
            if step["type"] == StepType.TEMPLATE:
                check_include(project_id, step["template"]["template_id"], kinds, template_id)


def check_step(actor: Actor, project_id: int, step: dict[str, Any], kinds: dict[str, str]) -> None:
    targets = step.get("targets") or {}
    if "variable" in targets:
        name = targets["variable"]
        if kinds.get(name) != VariableType.HOST_LIST:
            raise Invalid(f"there is no host_list variable {name!r}", "targets.variable")
    elif targets:
        check_target_ids(project_id, targets, "targets")
    if step.get("account_id") is not None:
        records.get_many(Account, [step["account_id"]], project_id, "account_id")
    if step.get("rolling"):
        try:
            rolling.parse(step["rolling"]["expression"])
        except ValueError as exc:
            raise Invalid(str(exc), "rolling.expression") from exc
    kind = StepType(step["type"])
    if kind == StepType.SCRIPT:
        runnable = scripts.runnable(project_id, step["script"])
        danger.refuse_oversized(runnable.content, "script.content")
        danger.refuse_intercepted(
            danger.check(project_id, runnable.content, runnable.language), "script.content"
        )
    elif kind == StepType.FILE_TRANSFER:
        for number, source in enumerate(step["transfer"]["sources"]):
            where = f"transfer.sources.{number}"
            if "file_id" in source:
                records.get_many(StoredFile, [source["file_id"]], project_id, f"{where}.file_id")
            if "source_hosts" in source:
                check_target_ids(project_id, source["source_hosts"], f"{where}.source_hosts")
            if source.get("account_id") is not None:
                records.get_many(Account, [source["account_id"]], project_id, f"{where}.account_id")
    elif kind == StepType.PLAYBOOK:
        # A playbook runs Ansible's own code on the controller too (lookups, local tasks).
        require(actor, project_id, Action.ADMIN)
        body = step["playbook"]
        if "repository_id" in body:
            with fields_under("playbook"):
                playbook_runs.check_repository_playbook(project_id, body)
            return
        try:
            check_playbook(body["content"])
        except ValueError as exc:
            raise Invalid(str(exc), "playbook.content") from exc


def check_include(project_id: int, included_id: int, kinds: dict[str, str], template_id: int | None) -> None:
    included = db.session.get(JobTemplate, included_id)
    if included is None or included.project_id != project_id:
        raise Invalid(f"job template {included_id} does not exist in this project", "template.template_id")
    if template_id is not None:
        project = db.session.scalars(select(JobTemplate).where(JobTemplate.project_id == project_id)).all()
        names = {template.id: template.name for template in project}
        cycle = include_path(
            {template.id: included_ids(template.steps) for template in project}, included_id, template_id
        )
        if cycle:
            path = " -> ".join(names[id] for id in [template_id, *cycle])
            raise Invalid(f"a cycle of included templates: {path}", "template.template_id")
    for definition in expand(included).variables:
        kind = kinds.get(definition["name"])
        if kind is not None and kind != definition["type"]:
            raise Invalid(
                f"variable {definition['name']!r} is a {kind} here and a {definition['type']} in "
                f"template {included.name!r}",
                "template.template_id",
            )


def check_target_ids(project_id: int, targets: dict[str, list[int]], field: str) -> None:
    records.get_many(Host, targets.get("hosts", []), project_id, f"{field}.hosts")
    records.get_many(Group, targets.get("groups", []), project_id, f"{field}.groups")
    records.get_many(DynamicGroup, targets.get("dynamic_groups", []), project_id, f"{field}.dynamic_groups")


def check_definitions(project_id: int, definitions: list[dict[str, Any]]) -> None:
    variables.check_definitions(definitions)
    for index, definition in enumerate(definitions):
        if definition["type"] == VariableType.HOST_LIST and definition.get("default"):
            with fields_under(f"variables.{index}", missing_is_invalid=True):
                check_target_ids(project_id, definition["default"], "default")


def split_defaults(
    definitions: list[dict[str, Any]], kept: dict[str, str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Definitions without secret defaults, and the secret defaults; a masked default keeps `kept`'s."""
    public, secrets = [], {}
    for definition in definitions:
        definition = dict(definition)
        if definition["type"] == VariableType.SECRET:
            value = definition.get("default")
            if value == MASK and definition["name"] in kept:
                secrets[definition["name"]] = kept[definition["name"]]
            elif value is not None:
                secrets[definition["name"]] = value
            definition["default"] = None
        public.append(definition)
    return public, secrets


def create_template(actor: Actor, project_id: int, data: dict[str, Any]) -> JobTemplate:
    return records.save(new_template(actor, project_id, data))


def new_template(actor: Actor, project_id: int, data: dict[str, Any]) -> JobTemplate:
    """A checked template, not saved yet."""
    require(actor, project_id, Action.OPERATE)
    given = data.get("variables", [])
    check_definitions(project_id, given)
    check_steps(actor, project_id, data["steps"], given)
    definitions, secrets = split_defaults(given, {})
    template = JobTemplate(
        project_id=project_id,
        name=data["name"],
        description=data.get("description", ""),
        variables=definitions,
        secret_defaults=json.dumps(secrets) if secrets else None,
        steps=data["steps"],
        created_by=actor.username,
    )
    return template


def update_template(actor: Actor, template: JobTemplate, data: dict[str, Any]) -> JobTemplate:
    project_id = template.project_id
    require(actor, project_id, Action.OPERATE)
    definitions = data.get("variables", template.variables)
    steps = data.get("steps", copy.deepcopy(template.steps))
    check_definitions(project_id, definitions)
    check_steps(actor, project_id, steps, definitions, template.id)
    if "variables" in data:
        public, secrets = split_defaults(definitions, template.secret_default_values)
        template.variables = public
        template.secret_defaults = json.dumps(secrets) if secrets else None
    if "steps" in data:
        template.steps = steps
    if "variables" in data or "steps" in data:
        template.version += 1
    for key in ("name", "description"):
        if key in data:
            setattr(template, key, data[key])
    return records.save(template)


def plan_template(project_id: int, template_id: int) -> JobTemplate:
    """The template a plan is made from: one of this project's."""
    template = db.session.get(JobTemplate, template_id)
    if template is None or template.project_id != project_id:
        raise Invalid(f"job template {template_id} does not exist in this project", "template_id")
    return template


def check_enabled(steps: list[dict[str, Any]], enabled: list[str]) -> None:
    keys = {step["key"] for step in steps}
    for index, key in enumerate(enabled):
        if key not in keys:
            raise Invalid(f"the template has no step {key!r}", f"enabled_steps.{index}")
    if not enabled:
        raise Invalid("enable at least one step", "enabled_steps")


def set_values(plan: JobPlan, values: dict[str, Any]) -> None:
    """The plan's values; a masked secret keeps the value it had."""
    kept = plan.own_secret_values
    kinds = {definition["name"]: definition["type"] for definition in plan.variables}
    values = {
        name: kept[name]
        if value == MASK and kinds.get(name) == VariableType.SECRET and name in kept
        else value
        for name, value in values.items()
    }
    variables.check_values(plan.variables, values, "values")
    public, secrets = variables.split_secrets(plan.variables, values)
    plan.values = public
    plan.secret_values = json.dumps(secrets) if secrets else None


def create_plan(actor: Actor, project_id: int, data: dict[str, Any]) -> JobPlan:
    return records.save(new_plan(actor, project_id, data))


def new_plan(actor: Actor, project_id: int, data: dict[str, Any]) -> JobPlan:
    """A checked plan, not saved yet."""
    require(actor, project_id, Action.OPERATE)
    template = plan_template(project_id, data["template_id"])
    expanded = expand(template)
    enabled = data.get("enabled_steps", [step["key"] for step in expanded.steps])
    check_enabled(expanded.steps, enabled)
    plan = JobPlan(
        project_id=project_id,
        template=template,
        name=data["name"],
        description=data.get("description", ""),
        template_versions=expanded.versions,
        steps=copy.deepcopy(expanded.steps),
        variables=copy.deepcopy(expanded.variables),
        enabled_steps=enabled,
        created_by=actor.username,
    )
    set_values(plan, data.get("values", {}))
    return plan


def update_plan(actor: Actor, plan: JobPlan, data: dict[str, Any]) -> JobPlan:
    require(actor, plan.project_id, Action.OPERATE)
    if "template_id" in data and data["template_id"] != plan.template_id:
        raise Invalid("a plan stays with its template: make a new plan", "template_id")
    if "enabled_steps" in data:
        check_enabled(plan.steps, data["enabled_steps"])
        plan.enabled_steps = data["enabled_steps"]
    if "values" in data:
        set_values(plan, data["values"])
    for key in ("name", "description"):
        if key in data:
            setattr(plan, key, data[key])
    return records.save(plan)


def sync_plan(actor: Actor, project_id: int, plan_id: int) -> JobPlan:
    """Take the template's current steps and variables; keep the plan's choices where they still apply:
    steps it had disabled stay disabled (new steps are enabled), values of variables that still exist
    with the same type stay."""
    require(actor, project_id, Action.OPERATE)
    plan = records.get(JobPlan, plan_id, project_id)
    template = expand(plan.template)
    old_keys = {step["key"] for step in plan.steps}
    enabled = set(plan.enabled_steps)
    plan.enabled_steps = [
        step["key"] for step in template.steps if step["key"] in enabled or step["key"] not in old_keys
    ]
    old_kinds = {definition["name"]: definition["type"] for definition in plan.variables}
    kept = {
        definition["name"]
        for definition in template.variables
        if old_kinds.get(definition["name"]) == definition["type"]
    }
    plan.values = {name: value for name, value in plan.values.items() if name in kept}
    secrets = {name: value for name, value in plan.own_secret_values.items() if name in kept}
    plan.secret_values = json.dumps(secrets) if secrets else None
    plan.steps = copy.deepcopy(template.steps)
    plan.variables = copy.deepcopy(template.variables)
    plan.template_versions = template.versions
    if not plan.enabled_steps:
        plan.enabled_steps = [step["key"] for step in template.steps]
    return records.save(plan)
