"""Flows: saving a graph (checked whole, every problem reported at once), its versions, and the project
variables flows read as ${_project.NAME}."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, select

from app.extensions import db
from app.flows import engine
from app.flows.graph import FlowGraph, GraphError, GraphInvalid, NodeType, VariableKind, parse, unwrap_inputs
from app.models import (
    Account,
    DynamicGroup,
    Flow,
    FlowVersion,
    Group,
    Host,
    JobPlan,
    JobTemplate,
    ProjectVariable,
    Script,
    ScriptVersion,
    StoredFile,
)
from app.services import records
from app.services.access import Action, Actor, require
from app.services.errors import Invalid, NotFound

# The parts of a flow that make a new version when they change.
VERSIONED = ("variables", "outputs", "nodes", "edges", "stages")
REFERENCE_MODELS = {
    "hosts": Host,
    "groups": Group,
    "dynamic_groups": DynamicGroup,
    "account_id": Account,
    "script_id": Script,
    "flow_id": Flow,
    "version_id": ScriptVersion,
    "file_id": StoredFile,
    "plan_id": JobPlan,
    "template_id": JobTemplate,
}


def flows_query(project_id: int, filters: dict[str, Any]) -> Select:
    query = select(Flow).where(Flow.project_id == project_id)
    if "category" in filters:
        query = query.where(Flow.category == filters["category"])
    if "name" in filters:
        query = query.where(Flow.name.ilike(f"%{filters['name']}%"))
    return query.order_by(Flow.id)


def project_variable_names(project_id: int) -> list[str]:
    return list(
        db.session.scalars(select(ProjectVariable.name).where(ProjectVariable.project_id == project_id))
    )


def checked_graph(project_id: int, document: dict[str, Any], flow_id: int | None = None) -> FlowGraph:
    """The document's graph, its references found in the project; Invalid listing every problem."""
    errors = reference_errors(project_id, document, flow_id)
    graph = None
    try:
        graph = parse(document, engine.atoms(), project_variable_names(project_id))
    except GraphInvalid as exc:
        errors = [*exc.errors, *errors]
    if errors:
        count = f"{len(errors)} problem{'s' if len(errors) > 1 else ''}"
        raise Invalid(
            f"the flow has {count}: {errors[0].path}: {errors[0].message}",
            errors[0].path,
            {"errors": [{"path": error.path, "message": error.message} for error in errors]},
        )
    return graph


def node_documents(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(path, node) of every node written in a graph or stages document."""
    if isinstance(document.get("stages"), list):
        return [
            (f"stages.{index}.nodes.{position}", node)
            for index, stage in enumerate(document["stages"])
            if isinstance(stage, dict) and isinstance(stage.get("nodes"), list)
            for position, node in enumerate(stage["nodes"])
            if isinstance(node, dict)
        ]
    nodes = document.get("nodes")
    if not isinstance(nodes, list):
        return []
    return [(f"nodes.{index}", node) for index, node in enumerate(nodes) if isinstance(node, dict)]


def reference_errors(project_id: int, document: dict[str, Any], flow_id: int | None) -> list[GraphError]:
    """Every account, host, group, script and flow a node or a default names that the project lacks, and
    every subflow that would include this flow again."""
    errors = []
    for where, node in node_documents(document):
        raw = node.get("inputs")
        if not isinstance(raw, dict):
            continue
        inputs, _ = unwrap_inputs(raw)
        for path, key, value in references_in(inputs):
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, int) and not exists(REFERENCE_MODELS[key], item, project_id):
                    what = key.removesuffix("_id").rstrip("s")
                    errors.append(
                        GraphError(f"{where}.inputs.{path}", f"there is no {what} {item} in the project")
                    )
        target = inputs.get("flow_id")
        subflow = node.get("type") == NodeType.SUBFLOW and flow_id is not None and isinstance(target, int)
        if subflow and includes(target, flow_id):
            errors.append(
                GraphError(
                    f"{where}.inputs.flow_id",
                    "a subflow may not include its own flow, directly or through others",
                )
            )
    variables = document.get("variables")
    for index, variable in enumerate(variables if isinstance(variables, list) else []):
        default = variable.get("default") if isinstance(variable, dict) else None
        if (
            isinstance(variable, dict)
            and variable.get("type") == VariableKind.HOST_LIST
            and isinstance(default, dict)
        ):
            for key, ids in default.items():
                for item in ids if isinstance(ids, list) and key in REFERENCE_MODELS else []:
                    if isinstance(item, int) and not exists(REFERENCE_MODELS[key], item, project_id):
                        what = key.rstrip("s")
                        errors.append(
                            GraphError(f"variables.{index}.default.{key}", f"there is no {what} {item}")
                        )
    return errors


# Inputs that hold data of their own (an HTTP body, a playbook's extra vars): never references.
FREE_INPUTS = frozenset({"body", "headers", "extra_vars", "content", "params", "message"})
# Inputs that map variable names to values (a plan's, a subflow's): a value may be a host list.
VALUE_MAPS = frozenset({"variables", "values"})
HOST_LIST_KEYS = ("hosts", "groups", "dynamic_groups")
# Runs a function on one reference: (model, id or name, path) -> what takes its place.
OnReference = Callable[[type, Any, str], Any]


def references_in(inputs: dict[str, Any], path: str = "") -> list[tuple[str, str, Any]]:
    """(path, key, id or ids) of every reference in nested inputs (objects, and lists of objects)."""
    found: list[tuple[str, str, Any]] = []

    def record(model: type, value: Any, where: str) -> Any:
        found.append((where, where.rsplit(".", 1)[-1], value))
        return value

    map_references(inputs, record, path, whole=True)
    return found


def map_references(inputs: Any, on_reference: OnReference, path: str = "", whole: bool = False) -> Any:
    """The inputs with each reference (a key of REFERENCE_MODELS, at any depth) replaced by what
    `on_reference` answers for it, for each item of a list; `whole`: once for the whole value instead.
    A value that is a `${...}` reference is left as it is (it is known at run time only)."""
    if isinstance(inputs, list):
        return [
            map_references(item, on_reference, f"{path}{index}.", whole) if isinstance(item, dict) else item
            for index, item in enumerate(inputs)
        ]
    if not isinstance(inputs, dict):
        return inputs
    mapped = {}
    for key, value in inputs.items():
        where = f"{path}{key}"
        if key in FREE_INPUTS:
            mapped[key] = value
        elif key in REFERENCE_MODELS and not is_reference(value):
            model = REFERENCE_MODELS[key]
            if whole:
                mapped[key] = on_reference(model, value, where)
            elif isinstance(value, list):
                mapped[key] = [
                    item if is_reference(item) else on_reference(model, item, f"{where}.{index}")
                    for index, item in enumerate(value)
                ]
            else:
                mapped[key] = value if value is None else on_reference(model, value, where)
        elif key in VALUE_MAPS and isinstance(value, dict):
            # A value that is an object may be a host list: only its hosts, groups and dynamic groups refer.
            mapped[key] = {
                name: {
                    kind: map_references({kind: part}, on_reference, f"{where}.{name}.", whole)[kind]
                    if kind in HOST_LIST_KEYS
                    else part
                    for kind, part in item.items()
                }
                if isinstance(item, dict)
                else item
                for name, item in value.items()
            }
        elif isinstance(value, dict | list):
            mapped[key] = map_references(value, on_reference, f"{where}.", whole)
        else:
            mapped[key] = value
    return mapped


def is_reference(value: Any) -> bool:
    """A value that holds a `${...}` reference, rendered when the node runs."""
    return isinstance(value, str) and "${" in value


def exists(model: type, item: Any, project_id: int) -> bool:
    row = db.session.get(model, item) if isinstance(item, int) else None
    if row is None:
        return False
    owner = getattr(row, "project_id", project_id)
    return owner in (project_id, None)


def includes(flow_id: int, goal: int, trail: frozenset[int] = frozenset()) -> bool:
    """Whether the flow (at its newest version) runs `goal` as a subflow, directly or through others."""
    if flow_id == goal:
        return True
    if flow_id in trail:
        return False
    flow = db.session.get(Flow, flow_id)
    if flow is None:
        return False
    nodes = flow.current.document.get("nodes") or [
        node for stage in flow.current.document.get("stages", []) for node in stage.get("nodes", [])
    ]
    children = {
        node.get("inputs", {}).get("flow_id") for node in nodes if node.get("type") == NodeType.SUBFLOW
    }
    return any(isinstance(child, int) and includes(child, goal, trail | {flow_id}) for child in children)


def split_document(data: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The versioned document with secret defaults taken out, and those defaults."""
    document = {key: data[key] for key in VERSIONED if key in data}
    secrets = {}
    variables = []
    for definition in document.get("variables", []):
        if (
            isinstance(definition, dict)
            and definition.get("type") == VariableKind.SECRET
            and definition.get("default") is not None
        ):
            secrets[definition["name"]] = definition["default"]
            definition = {**definition, "default": None}
        variables.append(definition)
    document["variables"] = variables
    document.setdefault("outputs", [])
    return document, secrets


def require_for(actor: Actor, project_id: int, graph: FlowGraph) -> None:
    """Operators save flows; one that runs an admin-only atom (a playbook) takes a project admin."""
    if any(node.atom and engine.atoms()[node.atom].admin_only for node in graph.runnable()):
        require(actor, project_id, Action.ADMIN)


def create_flow(actor: Actor, project_id: int, data: dict[str, Any]) -> Flow:
    return records.save(new_flow(actor, project_id, data))


def new_flow(actor: Actor, project_id: int, data: dict[str, Any]) -> Flow:
    """A checked flow at its first version, not saved yet."""
    require(actor, project_id, Action.OPERATE)
    document = {key: data[key] for key in VERSIONED if key in data}
    require_for(actor, project_id, checked_graph(project_id, document))
    stored, secrets = split_document(data)
    flow = Flow(
        project_id=project_id,
        name=data["name"],
        description=data.get("description", ""),
        category=data.get("category", "other"),
        timeout=data.get("timeout"),
        created_by=actor.username,
    )
    flow.versions.append(version_of(actor, 1, stored, secrets))
    return flow


def version_of(actor: Actor, number: int, document: dict[str, Any], secrets: dict[str, str]) -> FlowVersion:
    return FlowVersion(
        version=number,
        document=document,
        secret_defaults=json.dumps(secrets) if secrets else None,
        created_by=actor.username,
    )


def update_flow(actor: Actor, flow: Flow, data: dict[str, Any]) -> Flow:
    require(actor, flow.project_id, Action.OPERATE)
    if any(key in data for key in VERSIONED):
        current = flow.current.document
        if "stages" in data:
            merged = {key: value for key, value in current.items() if key not in ("nodes", "edges")}
        elif "nodes" in data or "edges" in data:
            merged = {key: value for key, value in current.items() if key != "stages"}
        else:
            merged = dict(current)
        merged.update({key: data[key] for key in VERSIONED if key in data})
        kept_secrets = flow.current.secret_default_values
        graph = checked_graph(flow.project_id, with_secret_defaults(merged, kept_secrets), flow.id)
        require_for(actor, flow.project_id, graph)
        stored, secrets = split_document(merged)
        secrets = {
            **{name: value for name, value in kept_secrets.items() if name in secret_names(stored)},
            **secrets,
        }
        if stored != current or secrets != kept_secrets:
            flow.version += 1
            flow.versions.append(version_of(actor, flow.version, stored, secrets))
    changes = {key: data[key] for key in ("name", "description", "category", "timeout") if key in data}
    return records.update(flow, changes)


def secret_names(document: dict[str, Any]) -> set[str]:
    return {
        definition["name"]
        for definition in document.get("variables", [])
        if definition.get("type") == VariableKind.SECRET
    }


def with_secret_defaults(document: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
    variables = [
        {**definition, "default": secrets[definition["name"]]}
        if definition.get("default") is None and definition.get("name") in secrets
        else definition
        for definition in document.get("variables", [])
    ]
    return {**document, "variables": variables}


def flow_version(project_id: int, flow_id: int, number: int) -> FlowVersion:
    flow = records.get(Flow, flow_id, project_id)
    version = next((version for version in flow.versions if version.version == number), None)
    if version is None:
        raise NotFound(f"flow {flow_id} has no version {number}")
    return version


def create_variable(actor: Actor, project_id: int, data: dict[str, Any]) -> ProjectVariable:
    require(actor, project_id, Action.ADMIN)
    return records.save(ProjectVariable(project_id=project_id, **data))


def update_variable(actor: Actor, row: ProjectVariable, data: dict[str, Any]) -> ProjectVariable:
    require(actor, row.project_id, Action.ADMIN)
    return records.update(row, data)
