"""Exporting a flow (with the flows it runs as subflows) as a JSON or YAML document, and importing such a
document, or a flow exported from bk-sops, into a project, the same one or another.

The document is {"format": "opsflow-flows/1", "flows": [...]}: the subflows first, the flow exported
last, each as the API takes a flow, with every reference by name (app/services/exchange.py): hosts,
groups, dynamic groups, accounts, scripts and pinned versions, stored files, plans, templates and the
subflows themselves. Secret defaults are left out, and so is any literal credential in an HTTP node's
headers: the header then reads a required secret variable, asked for when a task is created.

An import makes every flow of the document or none: every reference the project lacks is reported at
once (422, each with its path), a name the project has already is a 409, and each flow goes through
the checks of a flow created through the API.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from app.extensions import db
from app.flows import bk_sops, engine
from app.flows.atoms.http import SECRET_HEADER
from app.flows.expressions import REFERENCE, references
from app.flows.graph import SUBFLOW_ATOM, NodeType, VariableKind, unwrap_inputs
from app.models import Flow, FlowVersion
from app.schemas.flow import FlowSchema
from app.services import exchange, flows, records
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, ServiceError, fields_under
from app.services.exchange import Translate, load, name_of, translated_variable

FORMAT = "opsflow-flows/1"
# What a flow of a document holds.
ENTRY_FIELDS = frozenset({"name", "description", "category", "timeout", *flows.VERSIONED})
BASE64 = re.compile(r"\s*[A-Za-z0-9+/][A-Za-z0-9+/\s]{15,}={0,2}\s*")


def export_document(actor: Actor, project_id: int, flow_id: int, number: int | None = None) -> dict[str, Any]:
    """The flow (at version `number`, else its newest) and every flow it runs as a subflow, those first,
    each at the version its nodes run: a node pinned to a version runs version 1 of the imported copy."""
    require(actor, project_id, Action.READ)
    root = records.get(Flow, flow_id, project_id)
    version = flows.flow_version(project_id, flow_id, number) if number else root.current
    ordered: list[FlowVersion] = []
    wanted: dict[int, tuple[int, str]] = {}

    def visit(version: FlowVersion, trail: frozenset[int]) -> None:
        for where, node in flows.node_documents(version.document):
            inputs = node.get("inputs") if node.get("type") == NodeType.SUBFLOW else None
            child_id = inputs.get("flow_id") if isinstance(inputs, dict) else None
            child = db.session.get(Flow, child_id) if isinstance(child_id, int) else None
            if child is None or child.id in trail or child.project_id != project_id:
                continue
            pinned = inputs.get("version")
            child_version = next((v for v in child.versions if v.version == pinned), None) if pinned else None
            child_version = child_version or child.current
            seen = wanted.get(child.id)
            if seen and seen[0] != child_version.version:
                raise Conflict(
                    f"flow {child.name!r} runs at version {seen[0]} ({seen[1]}) and at version "
                    f"{child_version.version} ({where}): an export holds one version of each flow",
                    "version",
                )
            if seen is None:
                wanted[child.id] = (child_version.version, where)
                visit(child_version, trail | {child.id})
                ordered.append(child_version)

    visit(version, frozenset({root.id}))
    ordered.append(version)
    return {"format": FORMAT, "flows": [exported(version) for version in ordered]}


def exported(version: FlowVersion) -> dict[str, Any]:
    flow = version.flow
    entry = {
        "name": flow.name,
        "description": flow.description,
        "category": flow.category,
        "timeout": flow.timeout,
        **copy.deepcopy(version.document),
    }
    entry = translated_refs(entry, name_of)
    for _, node in flows.node_documents(entry):
        inputs = node.get("inputs")
        if node.get("type") == NodeType.SUBFLOW and isinstance(inputs, dict) and inputs.get("version"):
            inputs["version"] = 1
    return without_header_secrets(entry)


def without_header_secrets(entry: dict[str, Any]) -> dict[str, Any]:
    """The flow with each literal credential of an HTTP node's headers replaced by a reference to a new
    required secret variable: the value stays in the service."""
    names = {variable.get("name") for variable in entry.get("variables", []) if isinstance(variable, dict)}
    for _, node in flows.node_documents(entry):
        headers = (node.get("inputs") or {}).get("headers") if node.get("atom") == "http" else None
        if not isinstance(headers, dict):
            continue
        for header, value in headers.items():
            if not SECRET_HEADER.search(header) or not isinstance(value, str) or REFERENCE.fullmatch(value):
                continue
            base = re.sub(r"[^A-Za-z0-9_]", "_", f"{node['id']}_{header}").lower()[:56]
            name = f"secret_{base}"
            while name in names:
                name += "_"
            names.add(name)
            headers[header] = f"${{{name}}}"
            entry.setdefault("variables", []).append(
                {
                    "name": name,
                    "type": str(VariableKind.SECRET),
                    "default": None,
                    "required": True,
                    "description": f"header {header} of node {node['id']}, left out of the export",
                }
            )
    return entry


def translated_refs(entry: dict[str, Any], translate: Translate) -> dict[str, Any]:
    """A flow with the references of its variables and nodes translated (names to ids, or back)."""
    entry = dict(entry)
    if isinstance(entry.get("variables"), list):
        entry["variables"] = [
            translated_variable(definition, translate, f"variables.{index}")
            if isinstance(definition, dict)
            else definition
            for index, definition in enumerate(entry["variables"])
        ]
    translated_nodes = {
        where: {**node, "inputs": flows.map_references(node["inputs"], translate, f"{where}.inputs.")}
        for where, node in flows.node_documents(entry)
        if isinstance(node.get("inputs"), dict)
    }
    if isinstance(entry.get("stages"), list):
        entry["stages"] = [
            {
                **stage,
                "nodes": [
                    translated_nodes.get(f"stages.{index}.nodes.{position}", node)
                    for position, node in enumerate(stage["nodes"])
                ],
            }
            if isinstance(stage, dict) and isinstance(stage.get("nodes"), list)
            else stage
            for index, stage in enumerate(entry["stages"])
        ]
    elif isinstance(entry.get("nodes"), list):
        entry["nodes"] = [
            translated_nodes.get(f"nodes.{index}", node) for index, node in enumerate(entry["nodes"])
        ]
    return entry


def import_document(
    actor: Actor, project_id: int, document: Any, name: str | None = None, form: str | None = None
) -> list[Flow]:
    """Create the document's flows in the project, all or none. The document is an Opsflow export, or a
    bk-sops pipeline tree (named `name`) or export (`form` bk_sops says it must be one of those)."""
    require(actor, project_id, Action.OPERATE)
    if isinstance(document, str) and BASE64.fullmatch(document):
        # The text of a bk-sops .dat export: base64 of JSON.
        try:
            document = bk_sops.decode_dat(document)
        except bk_sops.BkSopsInvalid as exc:
            raise invalid(exc.errors, "cannot be read") from exc
    if form == "bk_sops" or bk_sops.is_bk_sops(document):
        try:
            translated = bk_sops.translate(document, name)
        except bk_sops.BkSopsInvalid as exc:
            raise invalid(exc.errors, "does not translate") from exc
        with described_by(translated.origins):
            return import_flows(actor, project_id, translated.flows)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise Invalid(
            f"not a flow document: its format must be {FORMAT!r} (or send a bk-sops pipeline tree or export)",
            "format",
        )
    entries = document.get("flows")
    if not isinstance(entries, list) or not entries:
        raise Invalid("give at least one flow", "flows")
    return import_flows(actor, project_id, entries)


def import_flows(actor: Actor, project_id: int, entries: list[Any]) -> list[Flow]:
    refuse_bad_entries(entries)
    in_document = {Flow: {entry["name"] for entry in entries}}
    placed = ((f"flows.{index}", entry) for index, entry in enumerate(entries))
    exchange.refuse_missing(
        project_id, placed, translated_refs, in_document, missing_variables(project_id, entries)
    )
    created: dict[str, Flow] = {}
    to_id = exchange.id_of(project_id, {Flow: created})
    try:
        for index, entry in enumerate(entries):
            with fields_under(f"flows.{index}"):
                data = load(FlowSchema(), translated_refs(entry, to_id))
                flow = flows.new_flow(actor, project_id, data)
                db.session.add(flow)
                exchange.flush(f"a flow named {flow.name!r} exists already", "name")
                created[flow.name] = flow
    except Exception:
        db.session.rollback()
        raise
    db.session.commit()
    return list(created.values())


def missing_variables(project_id: int, entries: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Every `${_project.NAME}` a node's rendered inputs read that the project has no variable for."""
    known = set(flows.project_variable_names(project_id))
    return [
        {"path": f"flows.{index}.{path}", "message": f"there is no project variable named {name!r}"}
        for index, entry in enumerate(entries)
        for path, name in project_references(entry)
        if name not in known
    ]


def project_references(entry: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(path of the input, NAME) of each `${_project.NAME}` the flow's nodes render."""
    atoms = engine.atoms()
    for where, node in flows.node_documents(entry):
        if not isinstance(node.get("inputs"), dict):
            continue
        inputs, unrendered = unwrap_inputs(node["inputs"])
        name = SUBFLOW_ATOM if node.get("type") == NodeType.SUBFLOW else node.get("atom")
        atom = atoms.get(name) if isinstance(name, str) else None
        unrendered |= set(atom.unrendered) if atom else set()
        for name, value in inputs.items():
            for reference in references(value) if name not in unrendered else []:
                if reference.name == "_project" and reference.field:
                    yield f"{where}.inputs.{name}", reference.field


def refuse_bad_entries(entries: list[Any]) -> None:
    """Each flow of the document is an object with a name of its own, and runs as subflows only flows
    of the project or flows earlier in the document."""
    names: dict[str, int] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise Invalid("a flow is an object", f"flows.{index}")
        unknown = sorted(set(entry) - ENTRY_FIELDS)
        if unknown:
            raise Invalid("unknown field", f"flows.{index}.{unknown[0]}")
        if not isinstance(entry.get("name"), str) or not entry["name"]:
            raise Invalid("a flow needs a name", f"flows.{index}.name")
        if entry["name"] in names:
            raise Invalid(f"flow {entry['name']!r} comes twice in the document", f"flows.{index}.name")
        names[entry["name"]] = index
    for index, entry in enumerate(entries):
        for where, node in flows.node_documents(entry):
            inputs = node.get("inputs") if node.get("type") == NodeType.SUBFLOW else None
            target = inputs.get("flow_id") if isinstance(inputs, dict) else None
            if isinstance(target, str) and names.get(target, -1) >= index:
                raise Invalid(
                    f"flow {target!r} comes at or after the flow that runs it: subflows come first",
                    f"flows.{index}.{where}.inputs.flow_id",
                )


def invalid(errors: Any, what: str) -> Invalid:
    problems = [{"path": error.path, "message": error.message} for error in errors]
    count = f"{len(problems)} problem{'s' if len(problems) > 1 else ''}"
    first = problems[0]
    return Invalid(
        f"the bk-sops flow {what}: {count}: {first['path']}: {first['message']}",
        first["path"],
        {"errors": problems},
    )


@contextmanager
def described_by(origins: dict[str, str]) -> Iterator[None]:
    """Errors raised inside name the place of what was sent (a bk-sops tree) their path came from."""
    try:
        yield
    except ServiceError as exc:
        if isinstance(exc.details, dict) and isinstance(exc.details.get("errors"), list):
            problems = [described(problem, origins) for problem in exc.details["errors"]]
            exc.details = {**exc.details, "errors": problems}
            first = problems[0]
            exc.message = f"{exc.message.split(':', 1)[0]}: {first['path']}: {first['message']}"
            exc.field = first["path"]
        elif exc.field:
            exc.field = origin(exc.field, origins)[0]
            exc.message = f"{exc.field}: {exc.message}"
        raise


def origin(path: str, origins: dict[str, str]) -> tuple[str, str]:
    """The place `path` came from (its longest prefix that `origins` knows), and what of it is below."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in origins:
            return origins[prefix], ".".join(parts[cut:])
    return path, ""


def described(problem: Any, origins: dict[str, str]) -> Any:
    if not isinstance(problem, dict) or not isinstance(problem.get("path"), str):
        return problem
    path, rest = origin(problem["path"], origins)
    message = problem.get("message", "")
    if rest and ".inputs." not in problem["path"][: len(problem["path"]) - len(rest)]:
        # A node's or the flow's own problem: what is below the place is said in the message.
        message = f"{rest}: {message}"
    return {**problem, "path": path, "message": message}
