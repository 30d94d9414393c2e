"""Flows exported from bk-sops (TencentBlueKing/bk-sops, whose engine is bamboo-pipeline), translated into
Opsflow's flow document, the one a flow export writes (references by name).

Pure: no database. What names hosts, accounts, scripts and plans is translated into references that
the import then looks up in the project (hosts by address, accounts by name, bk-job ids as ids of the
project), so a translated flow goes through exactly the checks of an exported one.

What is read:
- a pipeline tree: `start_event`, `end_event`, `activities`, `gateways`, `flows`, `constants`, `outputs`
  (bk-sops's web tree; `line` and `location` only place nodes on a canvas and are ignored);
- a `.dat` export: base64 of JSON `{"template_data": {"template": {...}, "pipeline_template_data":
  {"template": {id: {name, description, tree}}, "refs": ...}}, "digest"}` (the digest is salted with the
  exporting installation's secret, so it is not checked). Every pipeline template in it becomes a flow,
  subprocesses first.

How it maps:
- events and gateways become nodes of the same kind; a converge gateway that closes no parallel or
  conditional parallel gateway (one that only gathers the branches of an exclusive gateway) is left out,
  its incoming edges led on to where it leads;
- a condition is bamboo's boolrule after `${}` rendering: comparisons (`== != > >= < <=`, `in`, `notin`)
  of references and literals, joined by `and`/`or` (which bamboo groups to the right) and parentheses,
  become CEL; anything else (a Mako expression, `issuperset`) is refused naming the gateway. An exclusive
  gateway here takes its first edge whose condition holds, where bamboo fails when several hold;
- constants become variables (`${_x}` becomes `x`: names starting with _ are the built-ins' here);
  component inputs' `${name}` references follow the renames; outputs of nodes reach variables through
  the node's outputs;
- node options: retryable, skippable (isSkipped), error_ignorable -> ignore_error, optional,
  auto_retry, timeout_config;
- components with an atom here: job_fast_execute_script -> script, job_fast_push_file -> file_transfer,
  job_execute_task -> job_plan, sleep_timer -> sleep, pause_node -> approval, bk_http_request -> http,
  and subprocesses -> subflow. Any other component is refused naming the node and its code.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import shlex
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.flows.boolrule import Untranslatable, condition_to_cel
from app.flows.graph import NODE_ID, GraphError, NodeType, VariableKind

REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:\.([A-Za-z_][A-Za-z0-9_]*))?\}")
CONSTANT_KEY = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
SECONDS = re.compile(r"^\d+$")
DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})$")
# bk-job's script types (job_script_type) and the languages that run them here.
SCRIPT_LANGUAGES = {"1": "bash", "3": "perl", "4": "python", "5": "powershell"}
SHELLS = frozenset({"bash", "shell"})
# bk-sops constant types read as numbers and as secrets.
NUMBER_TYPES = frozenset({"int", "float"})
SECRET_TYPES = frozenset({"password"})
GATEWAYS = {
    "ParallelGateway": str(NodeType.PARALLEL),
    "ExclusiveGateway": str(NodeType.EXCLUSIVE),
    "ConditionalParallelGateway": str(NodeType.CONDITIONAL_PARALLEL),
    "ConvergeGateway": str(NodeType.CONVERGE),
}
SPLITS = frozenset({"ParallelGateway", "ConditionalParallelGateway"})
CHOOSERS = frozenset({"ExclusiveGateway", "ConditionalParallelGateway"})
HTTP_TIMEOUT_MAX = 60
AUTO_RETRY_DEFAULT_TIMES = 1
TIMEOUT_ACTIONS = {"forced_fail": "fail", "forced_fail_and_skip": "fail_and_skip"}
TREE_KEYS = ("start_event", "end_event", "activities", "gateways", "flows")


class BkSopsInvalid(Exception):
    """What cannot be translated, every problem at once, each with its path in what was sent."""

    def __init__(self, errors: Iterable[GraphError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{error.path}: {error.message}" for error in self.errors))


@dataclass
class Translated:
    """Flow documents (subflows first) as an Opsflow export holds them, and where each part came from:
    {path in the document: path in what was sent}, for errors found later."""

    flows: list[dict[str, Any]] = field(default_factory=list)
    origins: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Signature:
    """What a parent needs of a translated subprocess: its name, its variables' names and kinds."""

    name: str
    renames: Mapping[str, str]
    kinds: Mapping[str, str]


def is_tree(document: Any) -> bool:
    return isinstance(document, dict) and "activities" in document and "start_event" in document


def is_bk_sops(document: Any) -> bool:
    """A pipeline tree, one wrapped as bk-sops's create_template takes it, or an export's data."""
    return isinstance(document, dict) and (
        is_tree(document)
        or isinstance(document.get("pipeline_tree"), dict)
        or "template_data" in document
        or "pipeline_template_data" in document
    )


def decode_dat(text: str) -> dict[str, Any]:
    """The data of a `.dat` export (base64 of JSON holding `template_data`)."""
    problem = None
    try:
        data = json.loads(base64.b64decode("".join(text.split()), validate=True))
    except (binascii.Error, ValueError):
        problem = "not a bk-sops .dat export: its text is not base64 of JSON"
    else:
        if not isinstance(data, dict) or not isinstance(data.get("template_data"), dict):
            problem = "not a bk-sops .dat export: it holds no template_data"
    if problem:
        raise BkSopsInvalid([GraphError("document", problem)])
    return data


def translate(document: Any, name: str | None = None) -> Translated:
    """The flows of a bk-sops document: a tree (named `name`), {name, pipeline_tree, ...} as bk-sops's
    create_template takes it, or an export's data ({template_data} or template_data itself)."""
    if isinstance(document, dict) and isinstance(document.get("template_data"), dict):
        return translate_export(document["template_data"], "template_data")
    if isinstance(document, dict) and "pipeline_template_data" in document:
        return translate_export(document, "")
    translated = Translated()
    if is_tree(document):
        tree, where, meta = document, "", {}
    elif isinstance(document, dict) and isinstance(document.get("pipeline_tree"), dict):
        tree, where, meta = document["pipeline_tree"], "pipeline_tree", document
        name = name or document.get("name")
    else:
        raise BkSopsInvalid([GraphError("document", "not a bk-sops pipeline tree or export")])
    if not isinstance(name, str) or not name.strip():
        raise BkSopsInvalid(
            [GraphError("name", "a bk-sops pipeline tree carries no name: give one (?name=)")]
        )
    entry = Tree(tree, where, 0, {}, translated.origins).flow(
        name,
        description=meta.get("description", ""),
        timeout_minutes=meta.get("timeout"),
    )
    translated.flows.append(entry)
    translated.origins.setdefault("flows.0.name", "name")
    return translated


def translate_export(data: Any, where: str) -> Translated:
    """Every pipeline template of an export's data, subprocesses before the flows that run them."""
    base = f"{where}." if where else ""
    pipelines = data.get("pipeline_template_data") if isinstance(data, dict) else None
    templates = pipelines.get("template") if isinstance(pipelines, dict) else None
    if not isinstance(templates, dict) or not templates:
        raise BkSopsInvalid(
            [GraphError(f"{base}pipeline_template_data.template", "an export holds templates")]
        )
    # The task templates (category, timeout) by the pipeline template they wrap.
    metas = {
        str(meta.get("pipeline_template_str_id") or meta.get("pipeline_template_id")): meta
        for meta in (data.get("template") if isinstance(data.get("template"), dict) else {}).values()
        if isinstance(meta, dict)
    }
    order, errors = _subprocess_order(templates, f"{base}pipeline_template_data.template")
    if errors:
        raise BkSopsInvalid(errors)
    translated = Translated()
    signatures: dict[str, Signature] = {}
    problems: list[GraphError] = []
    for index, template_id in enumerate(order):
        template = templates[template_id]
        path = f"{base}pipeline_template_data.template.{template_id}"
        name = template.get("name")
        if not isinstance(name, str) or not name.strip():
            problems.append(GraphError(f"{path}.name", "a template has a name"))
            continue
        meta = metas.get(template_id, {})
        tree = Tree(template.get("tree"), f"{path}.tree", index, signatures, translated.origins)
        try:
            entry = tree.flow(
                name,
                description=template.get("description") or "",
                timeout_minutes=meta.get("time_out"),
            )
        except BkSopsInvalid as exc:
            problems.extend(exc.errors)
            # Its parents are still translated, so that one answer holds their problems too.
            signatures[template_id] = tree.signature(name)
            continue
        translated.flows.append(entry)
        translated.origins[f"flows.{len(translated.flows) - 1}.name"] = f"{path}.name"
        signatures[template_id] = tree.signature(name)
    if problems:
        raise BkSopsInvalid(problems)
    return translated


def _subprocess_order(templates: dict[str, Any], where: str) -> tuple[list[str], list[GraphError]]:
    """The templates' ids, each after the subprocesses it runs; a cycle or a subprocess the export does not
    hold is an error."""
    runs: dict[str, list[tuple[str, str]]] = {}
    errors: list[GraphError] = []
    for template_id, template in templates.items():
        tree = template.get("tree") if isinstance(template, dict) else None
        activities = tree.get("activities") if isinstance(tree, dict) else None
        if not isinstance(activities, dict):
            errors.append(GraphError(f"{where}.{template_id}.tree", "a template holds a pipeline tree"))
            continue
        runs[template_id] = []
        for node_id, activity in activities.items():
            if isinstance(activity, dict) and activity.get("type") == "SubProcess":
                path = f"{where}.{template_id}.tree.activities.{node_id}.template_id"
                child = str(activity.get("template_id"))
                if child not in templates:
                    errors.append(
                        GraphError(
                            path,
                            f"subprocess {node_id!r} runs template {child!r}, which the export does not hold",
                        )
                    )
                else:
                    runs[template_id].append((child, path))
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(template_id: str, path: str) -> None:
        if state.get(template_id) == 2:
            return
        if state.get(template_id) == 1:
            errors.append(GraphError(path, f"template {template_id!r} runs itself as a subprocess"))
            return
        state[template_id] = 1
        for child, child_path in runs.get(template_id, []):
            visit(child, child_path)
        state[template_id] = 2
        order.append(template_id)

    for template_id in runs:
        visit(template_id, f"{where}.{template_id}")
    return order, errors


@dataclass
class Part:
    """A node of the tree as read: its kind, its bk-sops document and where it was."""

    id: str
    kind: str
    document: dict[str, Any]
    path: str


class Tree:
    """One pipeline tree being translated; `errors` gathers every problem before one BkSopsInvalid."""

    def __init__(
        self,
        tree: Any,
        where: str,
        index: int,
        signatures: Mapping[str, Signature],
        origins: dict[str, str],
    ) -> None:
        self.tree = tree if isinstance(tree, dict) else {}
        self.base = f"{where}." if where else ""
        self.where = where
        self.flow_path = f"flows.{index}"
        self.signatures = signatures
        self.origins = origins
        self.errors: list[GraphError] = []
        self.renames: dict[str, str] = {}
        self.kinds: dict[str, str] = {}
        # Constants a node's target list names whole: they become host lists.
        self.host_lists: set[str] = set()
        if not isinstance(tree, dict):
            self.fail("", "a pipeline tree is an object")

    def fail(self, path: str, message: str) -> None:
        self.errors.append(GraphError(f"{self.base}{path}".rstrip(".") or "document", message))

    def origin(self, ours: str, theirs: str) -> None:
        key = f"{self.flow_path}.{ours}" if ours else self.flow_path
        self.origins[key] = f"{self.base}{theirs}".rstrip(".") or "document"

    def signature(self, name: str) -> Signature:
        return Signature(name, dict(self.renames), dict(self.kinds))

    # The whole tree.

    def flow(self, name: str, description: Any = "", timeout_minutes: Any = None) -> dict[str, Any]:
        for key in TREE_KEYS:
            if not isinstance(self.tree.get(key), dict):
                self.fail(key, "missing, or not an object")
        if self.errors:
            raise BkSopsInvalid(self.errors)
        self.origin("", "")
        parts = self.parts()
        constants = self.tree.get("constants") or {}
        if not isinstance(constants, dict):
            self.fail("constants", "an object of constants by key")
            constants = {}
        self.rename_constants(constants)
        self.find_host_lists(parts)
        variables = self.variables(constants)
        outputs = self.node_outputs(constants, parts)
        nodes, edges = self.graph(parts, outputs)
        flow_outputs = []
        for position, key in enumerate(self.tree.get("outputs") or []):
            match = CONSTANT_KEY.match(key) if isinstance(key, str) else None
            if match is None or match[1] not in self.renames:
                self.fail(f"outputs.{position}", f"{key!r} is not a constant of the tree")
            else:
                flow_outputs.append(self.renames[match[1]])
                self.origin(f"outputs.{len(flow_outputs) - 1}", f"outputs.{position}")
        if self.errors:
            raise BkSopsInvalid(self.errors)
        entry: dict[str, Any] = {
            "name": name.strip(),
            "description": description if isinstance(description, str) else "",
            "category": "other",
        }
        if isinstance(timeout_minutes, int) and not isinstance(timeout_minutes, bool) and timeout_minutes > 0:
            entry["timeout"] = timeout_minutes * 60
        return {**entry, "variables": variables, "outputs": flow_outputs, "nodes": nodes, "edges": edges}

    def parts(self) -> dict[str, Part]:
        parts: dict[str, Part] = {}
        for key, kind in (("start_event", "start"), ("end_event", "end")):
            event = self.tree[key]
            node_id = event.get("id")
            if self.check_id(node_id, key):
                parts[node_id] = Part(node_id, kind, event, key)
        for collection in ("activities", "gateways"):
            for node_id, document in self.tree[collection].items():
                path = f"{collection}.{node_id}"
                if not isinstance(document, dict):
                    self.fail(path, "a node is an object")
                elif self.check_id(node_id, path):
                    if node_id in parts:
                        self.fail(path, f"node {node_id!r} is defined twice")
                    kind = document.get("type")
                    if collection == "gateways" and kind not in GATEWAYS:
                        self.fail(
                            f"{path}.type", f"gateway {node_id!r} is a {kind!r}: one of {', '.join(GATEWAYS)}"
                        )
                    elif collection == "activities" and kind not in ("ServiceActivity", "SubProcess"):
                        self.fail(
                            f"{path}.type", f"node {node_id!r} is a {kind!r}: ServiceActivity or SubProcess"
                        )
                    else:
                        parts[node_id] = Part(node_id, kind, document, path)
        return parts

    def check_id(self, node_id: Any, path: str) -> bool:
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            self.fail(path, f"{node_id!r} is not a node id: 1 to 64 letters, digits, '.', '_' or '-'")
            return False
        return True

    # Constants.

    def rename_constants(self, constants: dict[str, Any]) -> None:
        """Our name of each constant: the same, without the leading _ that marks built-ins here."""
        taken = {match[1] for key in constants if (match := CONSTANT_KEY.match(str(key)))}
        for key in constants:
            match = CONSTANT_KEY.match(str(key))
            if match is None:
                self.fail(f"constants.{key}", f"{key!r} is not a constant's key (${{name}})")
                continue
            name = match[1]
            ours = name.lstrip("_") if name.startswith("_") else name
            if not ours or ours[0].isdigit():
                ours = f"v_{ours}"
            if ours != name:
                while ours in taken:
                    ours = f"{ours}_"
                taken.add(ours)
            self.renames[name] = ours

    def find_host_lists(self, parts: Mapping[str, Part]) -> None:
        for part in parts.values():
            if part.kind != "ServiceActivity":
                continue
            _, data = _component(part.document)
            values = [_value(data, "job_ip_list")]
            files = _value(data, "job_source_files")
            values += (
                [item.get("ip") for item in files if isinstance(item, dict)]
                if isinstance(files, list)
                else []
            )
            plan = _value(data, "job_global_var")
            values += (
                [
                    item.get("value")
                    for item in plan
                    if isinstance(item, dict) and str(item.get("category")) == "3"
                ]
                if isinstance(plan, list)
                else []
            )
            for value in values:
                match = CONSTANT_KEY.match(value.strip()) if isinstance(value, str) else None
                if match and match[1] in self.renames:
                    self.host_lists.add(match[1])

    def variables(self, constants: dict[str, Any]) -> list[dict[str, Any]]:
        ordered = sorted(
            ((key, value) for key, value in constants.items() if CONSTANT_KEY.match(str(key))),
            key=lambda item: _index(item[1]),
        )
        variables = []
        for key, constant in ordered:
            path = f"constants.{key}"
            if not isinstance(constant, dict):
                self.fail(path, "a constant is an object")
                continue
            name = CONSTANT_KEY.match(key)[1]
            ours = self.renames[name]
            kind, default = self.kind_of(name, constant, path)
            if kind is None:
                continue
            self.kinds[ours] = kind
            definition: dict[str, Any] = {"name": ours, "type": str(kind)}
            if default is not None:
                definition["default"] = default
            shown = constant.get("show_type", "show") == "show"
            definition["show"] = shown
            definition["changeable"] = shown
            validation = constant.get("validation")
            if kind == VariableKind.STRING and isinstance(validation, str) and validation.strip():
                definition["validation"] = validation
            label = constant.get("name") if isinstance(constant.get("name"), str) else ""
            desc = constant.get("desc") if isinstance(constant.get("desc"), str) else ""
            description = " - ".join(part for part in (label, desc) if part and part not in (name, ours))
            if description:
                definition["description"] = description[:4096]
            self.origin(f"variables.{len(variables)}", path)
            variables.append(definition)
        return variables

    def kind_of(self, name: str, constant: dict[str, Any], path: str) -> tuple[str | None, Any]:
        """The variable's kind and default for a constant; (None, None) when it has no counterpart."""
        custom = str(constant.get("custom_type") or constant.get("source_tag") or "").split(".")[0]
        value = constant.get("value")
        if constant.get("is_meta") and isinstance(value, dict):
            value = value.get("default")
        if constant.get("source_type") == "component_outputs":
            return VariableKind.STRING, None
        if isinstance(value, str) and REFERENCE.search(value):
            # A default that reads another constant is known when the task starts only.
            value = None
        if name in self.host_lists:
            if value in (None, ""):
                return VariableKind.HOST_LIST, None
            return VariableKind.HOST_LIST, {"hosts": [{"address": ip} for ip in _addresses(value)]}
        if custom in SECRET_TYPES:
            return VariableKind.SECRET, None
        if custom in NUMBER_TYPES:
            if value in (None, ""):
                return VariableKind.NUMBER, None
            number = _number(value)
            if number is None:
                self.fail(f"{path}.value", f"constant {name!r} is a number, not {value!r}")
                return None, None
            return VariableKind.NUMBER, number
        if isinstance(value, bool):
            return VariableKind.BOOLEAN, value
        if isinstance(value, int | float):
            return VariableKind.NUMBER, value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return VariableKind.ARRAY, value
        if value is None or isinstance(value, str):
            return VariableKind.STRING, value if value else None
        self.fail(
            f"{path}.value",
            f"constant {name!r} ({custom or 'custom'}) holds "
            f"{type(value).__name__}, which no variable type here takes",
        )
        return None, None

    def node_outputs(self, constants: dict[str, Any], parts: Mapping[str, Part]) -> dict[str, dict[str, str]]:
        """{node id: {variable: output}} from the constants that take a node's output."""
        outputs: dict[str, dict[str, str]] = {}
        for key, constant in constants.items():
            match = CONSTANT_KEY.match(str(key))
            if (
                not match
                or not isinstance(constant, dict)
                or constant.get("source_type") != "component_outputs"
            ):
                continue
            sources = constant.get("source_info")
            if not isinstance(sources, dict):
                continue
            for node_id, keys in sources.items():
                path = f"constants.{key}.source_info.{node_id}"
                part = parts.get(node_id)
                if part is None:
                    self.fail(
                        path,
                        f"constant {key} takes an output of {node_id!r}, which is not a node of the tree",
                    )
                    continue
                for output in keys if isinstance(keys, list) else [keys]:
                    ours = self.output_of(part, output, path)
                    if ours is not None:
                        outputs.setdefault(node_id, {})[self.renames[match[1]]] = ours
        return outputs

    def output_of(self, part: Part, output: Any, path: str) -> str | None:
        if part.kind == "SubProcess":
            signature = self.signatures.get(str(part.document.get("template_id")))
            match = CONSTANT_KEY.match(str(output))
            name = match[1] if match else str(output)
            if signature is not None and name in signature.renames:
                return signature.renames[name]
            self.fail(path, f"the subprocess {part.id!r} has no output {output!r}")
            return None
        code, _ = _component(part.document)
        code = code if isinstance(code, str) else None
        mapped = (
            COMPONENTS[code].outputs.get(output) if code in COMPONENTS and isinstance(output, str) else None
        )
        if mapped is None:
            known = ", ".join(sorted(COMPONENTS[code].outputs)) if code in COMPONENTS else "none"
            self.fail(
                path,
                f"output {output!r} of node {part.id!r} ({code}) has no counterpart here "
                f"(those that have: {known or 'none'})",
            )
        return mapped

    # References in component inputs.

    def text(self, value: Any, path: str, what: str) -> Any:
        """A string input with its `${name}` references following the renames; a Mako expression (any
        other `${...}`) is an error."""
        if not isinstance(value, str):
            return value
        position = 0
        while (start := value.find("${", position)) >= 0:
            match = REFERENCE.match(value, start)
            if match is None:
                end = value.find("}", start)
                shown = value[start : end + 1 if end >= 0 else start + 40]
                self.fail(
                    path, f"{what} holds {shown!r}, a Mako expression: only ${{name}} references translate"
                )
                return value
            position = match.end()
        return REFERENCE.sub(self.renamed, value)

    def renamed(self, match: re.Match) -> str:
        name, field_name = match[1], match[2]
        ours = self.renames.get(name)
        if ours is None:
            return match[0]
        return f"${{{ours}{'.' + field_name if field_name else ''}}}"

    def whole_reference(self, value: Any) -> str | None:
        """Our name of the constant a value is exactly a reference to, if it is one."""
        match = CONSTANT_KEY.match(value.strip()) if isinstance(value, str) else None
        return self.renames.get(match[1]) if match else None

    def script_content(self, content: str, language: str, given: Inputs) -> str:
        """A script's content: its `${constant}` references follow the renames. Here the content is never
        rendered, the variables reach the script as environment variables; so only a shell reads them as
        bk-sops wrote them, and another language's reference is refused."""
        named = [match for match in REFERENCE.finditer(content) if match[1] in self.renames and not match[2]]
        if named and language not in SHELLS:
            given.fail(
                "job_content",
                f"the {language} script reads constant {named[0][0]}, which bk-sops "
                "substitutes in its text; here it is an environment variable of the same name",
            )
            return content
        return REFERENCE.sub(lambda match: self.renamed(match) if not match[2] else match[0], content)

    # The graph.

    def graph(self, parts: dict[str, Part], outputs: Mapping[str, dict[str, str]]) -> tuple[list, list]:
        flows = self.tree["flows"]
        kept_converges = {
            str(part.document.get("converge_gateway_id")) for part in parts.values() if part.kind in SPLITS
        }
        for part in parts.values():
            if part.kind in SPLITS and not part.document.get("converge_gateway_id"):
                self.fail(
                    f"{part.path}.converge_gateway_id", f"gateway {part.id!r} names no converge gateway"
                )
        dropped = {
            node_id
            for node_id, part in parts.items()
            if part.kind == "ConvergeGateway" and node_id not in kept_converges
        }
        leaving: dict[str, list[str]] = {node_id: [] for node_id in parts}
        for flow_id, flow in flows.items():
            path = f"flows.{flow_id}"
            if not isinstance(flow, dict):
                self.fail(path, "an edge is an object {source, target}")
                continue
            source, target = flow.get("source"), flow.get("target")
            if source not in parts or target not in parts:
                missing = "source" if source not in parts else "target"
                self.fail(
                    f"{path}.{missing}",
                    f"edge {flow_id!r} leads from or to {flow.get(missing)!r}, "
                    "which is not a node of the tree",
                )
                continue
            leaving[source].append(flow_id)
        for node_id, part in parts.items():
            listed = part.document.get("outgoing")
            listed = [listed] if isinstance(listed, str) else listed if isinstance(listed, list) else []
            # The order bk-sops lists a node's outgoing edges in, then any it does not list.
            known = [flow_id for flow_id in listed if flow_id in leaving[node_id]]
            leaving[node_id] = known + [flow_id for flow_id in leaving[node_id] if flow_id not in known]
        for node_id in dropped:
            if len(leaving[node_id]) != 1:
                self.fail(
                    parts[node_id].path,
                    f"converge gateway {node_id!r} has one leaving edge, not {len(leaving[node_id])}",
                )
        if self.errors:
            raise BkSopsInvalid(self.errors)

        def onward(target: str, trail: frozenset[str] = frozenset()) -> str:
            """Where an edge into `target` leads once dropped converge gateways are passed through."""
            if target not in dropped or target in trail:
                return target
            return onward(flows[leaving[target][0]]["target"], trail | {target})

        order = self.order(parts, leaving, flows)
        nodes = []
        for node_id in order:
            if node_id in dropped:
                continue
            part = parts[node_id]
            self.origin(f"nodes.{len(nodes)}", part.path)
            nodes.append(self.node(part, outputs.get(node_id, {}), len(nodes)))
        edges: list[dict[str, Any]] = []
        placed: dict[tuple[str, str], int] = {}
        for node_id in order:
            if node_id in dropped:
                continue
            part = parts[node_id]
            for flow_id in leaving[node_id]:
                target = onward(flows[flow_id]["target"])
                edge: dict[str, Any] = {"from": node_id, "to": target}
                origin = f"flows.{flow_id}"
                if part.kind in CHOOSERS:
                    edge, origin = self.chosen(part, flow_id, edge)
                if (node_id, target) in placed:
                    # Two branches of one gateway that meet again at once: one edge taken when either holds.
                    edges[placed[node_id, target]] = merged(edges[placed[node_id, target]], edge)
                    continue
                placed[node_id, target] = len(edges)
                self.origin(f"edges.{len(edges)}", origin)
                if "condition" in edge:
                    self.origin(f"edges.{len(edges)}.condition", origin)
                edges.append(edge)
        return nodes, edges

    def order(self, parts: Mapping[str, Part], leaving: Mapping[str, list[str]], flows: dict) -> list[str]:
        """The nodes from the start, breadth first along their edges; the end after every other node; any
        node not reached last (the flow's checks report it)."""
        start = next(node_id for node_id, part in parts.items() if part.kind == "start")
        seen = [start]
        queue = [start]
        while queue:
            node_id = queue.pop(0)
            for flow_id in leaving[node_id]:
                target = flows[flow_id]["target"]
                if target not in seen:
                    seen.append(target)
                    queue.append(target)
        seen += [node_id for node_id in parts if node_id not in seen]
        ends = [node_id for node_id in seen if parts[node_id].kind == "end"]
        return [node_id for node_id in seen if node_id not in ends] + ends

    def chosen(self, part: Part, flow_id: str, edge: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """An edge leaving an exclusive or conditional parallel gateway: its condition or default."""
        document = part.document
        default = document.get("default_condition")
        is_default = (isinstance(default, dict) and default.get("flow_id") == flow_id) or (
            self.tree["flows"][flow_id].get("is_default") is True
        )
        if is_default:
            return {**edge, "default": True}, f"{part.path}.default_condition"
        conditions = document.get("conditions") if isinstance(document.get("conditions"), dict) else {}
        where = f"{part.path}.conditions.{flow_id}"
        condition = conditions.get(flow_id)
        if not isinstance(condition, dict) or not isinstance(condition.get("evaluate"), str):
            self.fail(
                where, f"edge {flow_id!r} leaving gateway {part.id!r} has no condition and is not its default"
            )
            return {**edge, "condition": "false"}, where
        try:
            cel = condition_to_cel(condition["evaluate"], self.renames, self.kinds)
        except Untranslatable as exc:
            self.fail(
                f"{where}.evaluate",
                f"gateway {part.id!r}{_named(document)}: the condition "
                f"{condition['evaluate']!r} does not translate to CEL: {exc}",
            )
            cel = "false"
        return {**edge, "condition": cel}, f"{where}.evaluate"

    # Nodes.

    def node(self, part: Part, outputs: dict[str, str], index: int) -> dict[str, Any]:
        node: dict[str, Any] = {"id": part.id}
        if part.kind in ("start", "end"):
            return {**node, "type": part.kind}
        name = part.document.get("name")
        if part.kind in GATEWAYS:
            node["type"] = GATEWAYS[part.kind]
            return {**node, **({"name": name} if isinstance(name, str) and name else {})}
        if isinstance(name, str) and name:
            node["name"] = name
        stage = part.document.get("stage_name")
        if isinstance(stage, str) and stage:
            node["stage"] = stage
        if part.kind == "SubProcess":
            node["type"] = str(NodeType.SUBFLOW)
            node["inputs"] = self.subflow_inputs(part, index)
        else:
            node["type"] = str(NodeType.ACTIVITY)
            node.update(self.activity(part, index))
        if outputs:
            node["outputs"] = outputs
        node.update(self.options(part))
        return node

    def options(self, part: Part) -> dict[str, Any]:
        document = part.document
        skippable = document.get("isSkipped", document.get("skippable", True))
        options = {
            "retryable": document.get("retryable", document.get("can_retry", True)),
            "skippable": skippable,
            "ignore_error": document.get("error_ignorable", False),
            "optional": document.get("optional", False),
        }
        retry = document.get("auto_retry")
        if isinstance(retry, dict) and retry.get("enable"):
            options["auto_retry"] = {
                "times": _number(retry.get("times", AUTO_RETRY_DEFAULT_TIMES)),
                "interval": _number(retry.get("interval", 0)),
            }
        timeout = document.get("timeout_config")
        if isinstance(timeout, dict) and timeout.get("enable"):
            action = timeout.get("action", "forced_fail")
            action = action if isinstance(action, str) else repr(action)
            if action not in TIMEOUT_ACTIONS:
                self.fail(f"{part.path}.timeout_config.action", f"one of {', '.join(TIMEOUT_ACTIONS)}")
            options["timeout"] = {
                "seconds": _number(timeout.get("seconds")),
                "action": TIMEOUT_ACTIONS.get(action, "fail"),
            }
        return options

    def activity(self, part: Part, index: int) -> dict[str, Any]:
        code, data = _component(part.document)
        if not isinstance(code, str) or code not in COMPONENTS:
            self.fail(
                f"{part.path}.component.code",
                f"node {part.id!r}{_named(part.document)} runs component {code!r}, which has no atom here; "
                f"those that have: {', '.join(COMPONENTS)}",
            )
            return {"atom": "sleep", "inputs": {"seconds": 0}}
        mapping = COMPONENTS[code]
        inputs = mapping.inputs(Inputs(self, part, data, index))
        return {"atom": mapping.atom, "inputs": inputs}

    def subflow_inputs(self, part: Part, index: int) -> dict[str, Any]:
        template_id = str(part.document.get("template_id"))
        signature = self.signatures.get(template_id)
        if signature is None:
            self.fail(
                f"{part.path}.template_id",
                f"subprocess {part.id!r} runs template {template_id!r}, which "
                "this document does not hold: import bk-sops's .dat export, which holds it",
            )
            return {"flow_id": template_id}
        self.origin(f"nodes.{index}.inputs.flow_id", f"{part.path}.template_id")
        values = {}
        given = part.document.get("constants")
        for key, constant in (given or {}).items() if isinstance(given, dict) else []:
            match = CONSTANT_KEY.match(str(key))
            path = f"{part.path}.constants.{key}"
            if match is None or match[1] not in signature.renames:
                self.fail(path, f"the subprocess's template has no constant {key!r}")
                continue
            value = constant.get("value") if isinstance(constant, dict) else constant
            name = signature.renames[match[1]]
            kind = signature.kinds.get(name)
            self.origin(f"nodes.{index}.inputs.values.{name}", f"{path}.value")
            if isinstance(value, str) and REFERENCE.search(value):
                values[name] = self.text(
                    value, f"{path}.value", f"subprocess {part.id!r}: the value of {key}"
                )
            elif kind == VariableKind.HOST_LIST and isinstance(value, str):
                values[name] = {"hosts": [{"address": ip} for ip in _addresses(value)]}
            elif kind == VariableKind.NUMBER and isinstance(value, str):
                values[name] = _number(value) if value else None
            else:
                values[name] = value
        values = {name: value for name, value in values.items() if value is not None}
        return {"flow_id": signature.name, "values": values}


def _index(constant: Any) -> int:
    """Where bk-sops shows a constant among the others."""
    index = constant.get("index") if isinstance(constant, dict) else None
    return index if isinstance(index, int) and not isinstance(index, bool) else 0


def merged(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    if first.get("default") or second.get("default"):
        return {"from": first["from"], "to": first["to"], "default": True}
    return {**first, "condition": f"({first['condition']}) || ({second['condition']})"}


def _named(document: dict[str, Any]) -> str:
    name = document.get("name")
    return f" ({name})" if isinstance(name, str) and name else ""


def _component(document: Mapping[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A ServiceActivity's component code and data ({} when they are not what bk-sops writes)."""
    component = document.get("component")
    if not isinstance(component, dict):
        return None, {}
    data = component.get("data")
    return component.get("code"), data if isinstance(data, dict) else {}


def _value(data: Mapping[str, Any], key: str, default: Any = None) -> Any:
    """A component input's value: bk-sops keeps each as {hook, value}."""
    item = data.get(key)
    if isinstance(item, dict) and "value" in item:
        return item["value"]
    return default if item is None else item


def _number(value: Any) -> Any:
    """An int (or float) from a number or its text; the value itself when it is neither (the flow's
    checks then report it)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        if re.fullmatch(r"[+-]?(\d+\.\d*|\.\d+)([eE][+-]?\d+)?", text):
            return float(text)
    return value if value not in ("",) else None


def _addresses(text: Any) -> list[str]:
    """The IPs of a bk-sops IP list: separated by commas, semicolons, spaces or lines, each optionally
    prefixed by its cloud area (0:10.0.0.5)."""
    if not isinstance(text, str):
        return []
    found = []
    for item in re.split(r"[\s,;]+", text.strip()):
        if item:
            found.append(item.rsplit(":", 1)[-1] if re.fullmatch(r"\d+:[^:]+", item) else item)
    return found


@dataclass
class Inputs:
    """What a component's translation reads: its data, and the tree for references and errors."""

    tree: Tree
    part: Part
    data: Mapping[str, Any]
    index: int

    def path(self, key: str) -> str:
        return f"{self.part.path}.component.data.{key}"

    def value(self, key: str, default: Any = None) -> Any:
        return _value(self.data, key, default)

    def origin(self, ours: str, key: str) -> None:
        self.tree.origin(f"nodes.{self.index}.inputs.{ours}", f"{self.path(key)}.value")

    def fail(self, key: str, message: str) -> None:
        self.tree.fail(
            f"{self.path(key)}.value", f"node {self.part.id!r}{_named(self.part.document)}: {message}"
        )

    def text(self, key: str, default: Any = "") -> Any:
        return self.rendered(self.value(key, default), key, key)

    def rendered(self, value: Any, key: str, what: str) -> Any:
        """Tree.text, in this node's input `key`."""
        return self.tree.text(
            value, f"{self.path(key)}.value", f"node {self.part.id!r}{_named(self.part.document)}: {what}"
        )

    def name(self) -> dict[str, str]:
        name = self.part.document.get("name")
        return {"name": name} if isinstance(name, str) and name else {}

    def targets(self, key: str, ours: str = "targets") -> Any:
        """A target list: a constant named whole (a host list variable), or hosts by address."""
        value = self.value(key, "")
        self.origin(ours, key)
        whole = self.tree.whole_reference(value)
        if whole is not None:
            return f"${{{whole}}}"
        if isinstance(value, str) and "${" in value:
            self.fail(key, "a target list is IPs, or one constant alone")
            return {"hosts": []}
        addresses = _addresses(value)
        if not addresses:
            self.fail(key, "names no target IP")
        return {"hosts": [{"address": address} for address in addresses]}

    def account(self, key: str, ours: str = "account_id") -> dict[str, Any]:
        value = self.value(key, "")
        if value in (None, ""):
            return {}
        self.origin(ours, key)
        if not isinstance(value, str) or "${" in value:
            self.fail(key, "an account is named by its alias here, not by a constant")
            return {}
        return {ours: value.strip()}

    def seconds(self, key: str, ours: str = "timeout") -> dict[str, Any]:
        value = self.value(key, "")
        if value in (None, ""):
            return {}
        self.origin(ours, key)
        number = _number(value)
        if not isinstance(number, int) or isinstance(number, bool):
            self.fail(key, f"{key} is a whole number of seconds, not {value!r}")
            return {}
        return {ours: number}

    def bk_job_id(self, key: str, what: str) -> dict[str, int] | None:
        """A bk-job id, taken as the id of this project's own (the import says when it has none)."""
        value = self.value(key, "")
        number = _number(value)
        if not isinstance(number, int) or isinstance(number, bool):
            self.fail(key, f"{what} is a bk-job id, not {value!r}")
            return None
        return {"id": number}


def script_inputs(given: Inputs) -> dict[str, Any]:
    source = given.value("job_script_source", "manual")
    if source in ("general", "public"):
        key = f"job_script_list_{source}"
        given.origin("script", key)
        version = given.bk_job_id(key, f"the {source} script")
        script: dict[str, Any] = {"version_id": version} if version else {"content": "true"}
    elif source == "manual":
        given.origin("script", "job_content")
        kind = str(given.value("job_script_type", "1"))
        language = SCRIPT_LANGUAGES.get(kind)
        if language is None:
            given.fail(
                "job_script_type",
                f"script type {kind!r} has no language here "
                f"(those that have: {', '.join(f'{k} ({v})' for k, v in SCRIPT_LANGUAGES.items())})",
            )
            language = "bash"
        content = given.value("job_content", "")
        if not isinstance(content, str) or not content.strip():
            given.fail("job_content", "the script has no content")
            content = "true"
        script = {"language": language, "content": given.tree.script_content(content, language, given)}
    else:
        given.fail("job_script_source", f"the script source is manual, general or public, not {source!r}")
        script = {"content": "true"}
    inputs: dict[str, Any] = {**given.name(), "script": script}
    params = given.value("job_script_param", "")
    if isinstance(params, str) and params.strip():
        given.origin("params", "job_script_param")
        if "${" in params:
            given.fail(
                "job_script_param",
                "script parameters are never rendered here: the flow's variables "
                "reach the script as environment variables of the same names",
            )
        else:
            try:
                inputs["params"] = shlex.split(params)
            except ValueError as exc:
                given.fail("job_script_param", f"the parameters do not split into words: {exc}")
    inputs["targets"] = given.targets("job_ip_list")
    inputs.update(given.account("job_account"))
    inputs.update(given.seconds("job_script_timeout"))
    return inputs


def transfer_inputs(given: Inputs) -> dict[str, Any]:
    dispatch = given.value("job_dispatch_attr")
    if isinstance(dispatch, list) and dispatch:
        if len(dispatch) > 1:
            given.fail("job_dispatch_attr", "a file transfer here has one destination: split the node")
        first = dispatch[0] if isinstance(dispatch[0], dict) else {}
        data = {**given.data, **{key: {"value": value} for key, value in first.items()}}
        given = Inputs(given.tree, given.part, data, given.index)
    sources = []
    files = given.value("job_source_files", [])
    given.origin("sources", "job_source_files")
    for position, item in enumerate(files if isinstance(files, list) else []):
        if not isinstance(item, dict):
            continue
        where = f"job_source_files.{position}"
        ips = item.get("ip", "")
        whole = given.tree.whole_reference(ips)
        hosts: Any = f"${{{whole}}}" if whole else {"hosts": [{"address": ip} for ip in _addresses(ips)]}
        account = item.get("account")
        paths = [line.strip() for line in str(item.get("files", "")).splitlines() if line.strip()]
        if not paths or hosts == {"hosts": []}:
            given.fail(where, "a source names its hosts and files")
        for path in paths:
            source: dict[str, Any] = {
                "path": given.rendered(path, where, "a source path"),
                "source_hosts": hosts,
            }
            if isinstance(account, str) and account.strip():
                source["account_id"] = account.strip()
            sources.append(source)
    if not sources:
        given.fail("job_source_files", "no file to transfer")
    inputs: dict[str, Any] = {**given.name(), "sources": sources, "mode": "force"}
    target_path = given.text("job_target_path")
    given.origin("target_path", "job_target_path")
    inputs["target_path"] = target_path
    inputs["targets"] = given.targets("job_ip_list")
    inputs.update(given.account("job_account"))
    inputs.update(given.seconds("job_timeout"))
    limit = _number(given.value("download_speed_limit", ""))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        inputs["speed_limit"] = limit * 1024
    return inputs


def plan_inputs(given: Inputs) -> dict[str, Any]:
    given.origin("plan_id", "job_task_id")
    plan = given.bk_job_id("job_task_id", "the job plan")
    variables: dict[str, Any] = {}
    given.origin("variables", "job_global_var")
    entries = given.value("job_global_var", [])
    for item in entries if isinstance(entries, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            continue
        value = item.get("value", "")
        if str(item.get("category")) == "3":
            whole = given.tree.whole_reference(value)
            value = f"${{{whole}}}" if whole else {"hosts": [{"address": ip} for ip in _addresses(value)]}
        else:
            value = given.rendered(value, "job_global_var", f"variable {item['name']}")
        variables[item["name"]] = value
    return {**given.name(), "plan_id": plan or {"id": 0}, "variables": variables}


def sleep_inputs(given: Inputs) -> dict[str, Any]:
    value = given.value("bk_timing", "")
    given.origin("seconds", "bk_timing")
    given.origin("until", "bk_timing")
    whole = given.tree.whole_reference(value)
    if whole is not None:
        return {"seconds": f"${{{whole}}}"}
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else None
    if text is not None and SECONDS.match(text):
        return {"seconds": int(text)}
    moment = DATETIME.match(text) if text is not None else None
    if moment:
        # bk-sops reads it in the project's time zone; here it is UTC.
        return {"until": f"{moment[1]}T{moment[2]}Z"}
    given.fail("bk_timing", f"a sleep is seconds or YYYY-MM-DD HH:MM:SS, not {value!r}")
    return {"seconds": 0}


def approval_inputs(given: Inputs) -> dict[str, Any]:
    given.origin("message", "description")
    message = given.text("description")
    return {"message": message if isinstance(message, str) else ""}


def http_inputs(given: Inputs) -> dict[str, Any]:
    method = str(given.value("bk_http_request_method", "GET") or "GET").upper()
    given.origin("method", "bk_http_request_method")
    given.origin("url", "bk_http_request_url")
    inputs: dict[str, Any] = {"method": method, "url": given.text("bk_http_request_url")}
    headers = {}
    listed = given.value("bk_http_request_header", [])
    given.origin("headers", "bk_http_request_header")
    for item in listed if isinstance(listed, list) else []:
        if isinstance(item, dict) and isinstance(item.get("name"), str) and item["name"].strip():
            value = str(item.get("value", ""))
            headers[item["name"].strip()] = given.rendered(
                value, "bk_http_request_header", f"header {item['name']}"
            )
    if method not in ("GET", "HEAD"):
        # bk-sops sends every other request's body as JSON.
        headers.setdefault("Content-Type", "application/json")
        body = given.text("bk_http_request_body")
        given.origin("body", "bk_http_request_body")
        if body:
            inputs["body"] = body
    if headers:
        inputs["headers"] = headers
    timeout = _number(given.value("bk_http_timeout", ""))
    given.origin("timeout", "bk_http_timeout")
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        inputs["timeout"] = min(abs(timeout), HTTP_TIMEOUT_MAX) or HTTP_TIMEOUT_MAX
    elif timeout not in (None, ""):
        given.fail("bk_http_timeout", f"the timeout is a whole number of seconds, not {timeout!r}")
    success = given.value("bk_http_success_exp", "")
    if isinstance(success, str) and success.strip():
        given.fail(
            "bk_http_success_exp",
            "a success condition over the response has no counterpart here: "
            "the http atom succeeds on a 2xx status",
        )
    return inputs


@dataclass(frozen=True)
class Component:
    atom: str
    inputs: Callable[[Inputs], dict[str, Any]]
    # {bk-sops output: the atom's output}
    outputs: Mapping[str, str]


JOB_OUTPUTS = {"job_inst_id": "job_id"}
COMPONENTS = {
    "job_fast_execute_script": Component("script", script_inputs, JOB_OUTPUTS),
    "job_fast_push_file": Component("file_transfer", transfer_inputs, JOB_OUTPUTS),
    "job_execute_task": Component("job_plan", plan_inputs, JOB_OUTPUTS),
    "sleep_timer": Component("sleep", sleep_inputs, {}),
    "pause_node": Component("approval", approval_inputs, {}),
    "bk_http_request": Component("http", http_inputs, {"status_code": "status_code", "data": "json"}),
}
