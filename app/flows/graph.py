"""A flow's graph as data: parse a document (nodes and edges, or stages) into a checked, immutable
structure, and answer the engine's "what comes next".

Nothing here touches the database: references to accounts, hosts, scripts and other flows are checked by
the service that saves a flow; the atoms' own input checks come in through the `AtomSpec` protocol.
Every error of a document is reported at once, each with the JSON path of what is wrong.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any, Protocol

from app.flows.expressions import Condition, ConditionError, compile_condition, references
from app.services.danger import compile_pattern
from app.services.errors import Invalid
from app.services.variables import NAME, VARIABLES_MAX, check_name, check_value

NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
NODES_MAX = 20000
RUN_LIMIT_DEFAULT = 100
RUN_LIMIT_MAX = 10000
AUTO_RETRY_TIMES_MAX = 10
AUTO_RETRY_INTERVAL_MAX = 86400
NODE_TIMEOUT_MAX = 7 * 86400
# Names every flow can read besides its own variables.
BUILTINS = frozenset({"_system", "_project", "_loop"})
SYSTEM_FIELDS = frozenset({"task_id", "task_name", "operator"})


class NodeType(StrEnum):
    START = "start"
    END = "end"
    ACTIVITY = "activity"
    SUBFLOW = "subflow"
    PARALLEL = "parallel"
    EXCLUSIVE = "exclusive"
    CONDITIONAL_PARALLEL = "conditional_parallel"
    CONVERGE = "converge"


GATEWAYS = frozenset(
    {NodeType.PARALLEL, NodeType.EXCLUSIVE, NodeType.CONDITIONAL_PARALLEL, NodeType.CONVERGE}
)
# Gateways whose branches meet again at a converge gateway.
SPLITS = frozenset({NodeType.PARALLEL, NodeType.CONDITIONAL_PARALLEL})
# Gateways whose leaving edges carry conditions.
CHOOSERS = frozenset({NodeType.EXCLUSIVE, NodeType.CONDITIONAL_PARALLEL})
# Nodes that run something and so take node options.
RUNNABLE = frozenset({NodeType.ACTIVITY, NodeType.SUBFLOW})
SUBFLOW_ATOM = "subflow"


class VariableKind(StrEnum):
    STRING = "string"
    NUMBER = "number"
    BOOLEAN = "boolean"
    SECRET = "secret"
    HOST_LIST = "host_list"
    ARRAY = "array"


class TimeoutAction(StrEnum):
    FAIL = "fail"
    # The node fails and the flow goes on as if it had been skipped.
    FAIL_AND_SKIP = "fail_and_skip"


class StageMode(StrEnum):
    SERIAL = "serial"
    PARALLEL = "parallel"


class AtomSpec(Protocol):
    """What the graph needs to know of an atom to check a node that runs it."""

    # Inputs never rendered (a script's content and parameters).
    unrendered: frozenset[str]
    # The outputs it promises; None when it may give any (a script's OPSFLOW_SET keys).
    outputs: frozenset[str] | None

    def check_inputs(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Every problem of the inputs as (path under inputs, message); none when they are fine."""
        ...


@dataclass(frozen=True)
class GraphError:
    path: str
    message: str


class GraphInvalid(Exception):
    """A document that is not a valid flow, with every problem found."""

    def __init__(self, errors: Iterable[GraphError]) -> None:
        self.errors = tuple(errors)
        super().__init__("; ".join(f"{error.path}: {error.message}" for error in self.errors))


@dataclass(frozen=True)
class AutoRetry:
    times: int
    interval: int
    backoff: float

    def delay(self, retries_done: int) -> float:
        """Seconds to wait before the retry after `retries_done` earlier ones."""
        return self.interval * self.backoff**retries_done


@dataclass(frozen=True)
class NodeTimeout:
    seconds: int
    action: TimeoutAction


@dataclass(frozen=True)
class Node:
    id: str
    type: NodeType
    name: str
    # Where the node was written in the document (nodes.3, or stages.1.nodes.0).
    path: str
    atom: str | None = None
    inputs: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    # Inputs whose `${}` stay as written.
    unrendered: frozenset[str] = frozenset()
    # {flow variable: atom output}
    outputs: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    stage: str | None = None
    retryable: bool = True
    skippable: bool = True
    ignore_error: bool = False
    optional: bool = False
    auto_retry: AutoRetry | None = None
    timeout: NodeTimeout | None = None
    run_limit: int = RUN_LIMIT_DEFAULT


@dataclass(frozen=True)
class Edge:
    index: int
    source: str
    target: str
    condition: Condition | None = None
    default: bool = False


@dataclass(frozen=True)
class Variable:
    name: str
    kind: VariableKind
    default: Any = None
    required: bool = False
    changeable: bool = True
    show: bool = True
    validation: str | None = None
    description: str = ""


@dataclass(frozen=True)
class FlowGraph:
    """A checked flow: its nodes in document order, edges, variables and the pairing of gateways."""

    nodes: Mapping[str, Node]
    edges: tuple[Edge, ...]
    variables: Mapping[str, Variable]
    outputs: tuple[str, ...]
    start: str
    # {parallel or conditional parallel gateway: its converge gateway} and the reverse.
    converge_of: Mapping[str, str]
    split_of: Mapping[str, str]
    # Nodes on a loop (they run up to their run limit).
    looping: frozenset[str]
    _outgoing: Mapping[str, tuple[Edge, ...]]
    _incoming: Mapping[str, tuple[Edge, ...]]

    def outgoing(self, node_id: str) -> tuple[Edge, ...]:
        """The edges leaving a node, in document order (the order an exclusive gateway tries them)."""
        return self._outgoing.get(node_id, ())

    def incoming(self, node_id: str) -> tuple[Edge, ...]:
        return self._incoming.get(node_id, ())

    def next_nodes(self, node_id: str) -> tuple[str, ...]:
        """Where a node that is not a choosing gateway leads."""
        return tuple(edge.target for edge in self.outgoing(node_id))

    def chosen(self, node_id: str, values: Mapping[str, Any]) -> tuple[str, ...]:
        """The targets a choosing gateway takes for these values: an exclusive gateway its first edge
        whose condition holds, a conditional parallel every such edge; neither: the default edge; none
        of these: no target (the gateway fails). A condition that cannot be evaluated raises
        ConditionError."""
        node = self.nodes[node_id]
        edges = self.outgoing(node_id)
        taken = []
        for edge in edges:
            if edge.condition is not None and edge.condition.holds(values):
                taken.append(edge.target)
                if node.type == NodeType.EXCLUSIVE:
                    break
        if not taken:
            taken = [edge.target for edge in edges if edge.default]
        return tuple(taken)

    def runnable(self) -> Iterable[Node]:
        return (node for node in self.nodes.values() if node.type in RUNNABLE)

    def subflow_ids(self) -> set[int]:
        """The flows this flow's subflow nodes run."""
        return {
            node.inputs["flow_id"]
            for node in self.nodes.values()
            if node.type == NodeType.SUBFLOW and isinstance(node.inputs.get("flow_id"), int)
        }


class _Errors:
    def __init__(self) -> None:
        self.found: list[GraphError] = []

    def add(self, path: str, message: str) -> None:
        self.found.append(GraphError(path, message))


def parse(
    document: Mapping[str, Any],
    atoms: Mapping[str, AtomSpec],
    project_variables: Collection[str] | None = None,
) -> FlowGraph:
    """The checked graph of a flow document, or GraphInvalid with every problem.

    The document holds `variables`, `outputs`, and either `nodes` and `edges` or `stages`. When
    `project_variables` is given, `${_project.NAME}` must name one of them."""
    errors = _Errors()
    variables = _parse_variables(document.get("variables", []), errors)
    if "stages" in document:
        if "nodes" in document or "edges" in document:
            errors.add("stages", "give stages or nodes and edges, not both")
        node_documents, edge_documents = stages_to_graph(document["stages"], errors)
    else:
        node_documents = _list(document.get("nodes"), "nodes", errors)
        edge_documents = [
            (f"edges.{index}", edge)
            for index, edge in enumerate(_list(document.get("edges"), "edges", errors))
        ]
        node_documents = [(f"nodes.{index}", node) for index, node in enumerate(node_documents)]
    declared = set(variables) | BUILTINS
    nodes = _parse_nodes(node_documents, atoms, variables, project_variables, errors)
    edges = _parse_edges(edge_documents, nodes, declared, errors)
    outputs = _parse_outputs(document.get("outputs", []), variables, errors)
    graph = _structure(nodes, edges, variables, outputs, errors)
    if errors.found:
        raise GraphInvalid(errors.found)
    assert graph is not None
    return graph


def _list(value: Any, path: str, errors: _Errors) -> list:
    if value is None:
        errors.add(path, "missing")
        return []
    if not isinstance(value, list):
        errors.add(path, "a list")
        return []
    return value


def _parse_variables(documents: Any, errors: _Errors) -> dict[str, Variable]:
    if not isinstance(documents, list):
        errors.add("variables", "a list of variable definitions")
        return {}
    if len(documents) > VARIABLES_MAX:
        errors.add("variables", f"at most {VARIABLES_MAX} variables")
    variables: dict[str, Variable] = {}
    for index, definition in enumerate(documents):
        where = f"variables.{index}"
        if not isinstance(definition, Mapping):
            errors.add(where, "a variable definition is an object")
            continue
        unknown = set(definition) - {
            "name", "type", "default", "required", "changeable", "show", "validation", "description"
        }  # fmt: skip
        for key in sorted(unknown):
            errors.add(f"{where}.{key}", "unknown field")
        name = definition.get("name")
        if not isinstance(name, str) or not NAME.match(name) or len(name) > 64:
            errors.add(f"{where}.name", "a variable name is letters, digits and _, not starting with a digit")
            continue
        if name.startswith("_"):
            errors.add(f"{where}.name", "names starting with _ are the built-ins' (_system, _project, _loop)")
            continue
        try:
            check_name(name, f"{where}.name")
        except Invalid as exc:
            errors.add(f"{where}.name", exc.message)
            continue
        if name in variables:
            errors.add(f"{where}.name", f"variable {name!r} is defined twice")
            continue
        try:
            kind = VariableKind(definition.get("type"))
        except ValueError:
            errors.add(f"{where}.type", f"one of {', '.join(VariableKind)}")
            continue
        flags = {}
        for flag, default in (("required", False), ("changeable", True), ("show", True)):
            flags[flag] = definition.get(flag, default)
            if not isinstance(flags[flag], bool):
                errors.add(f"{where}.{flag}", "true or false")
        validation = definition.get("validation")
        if validation is not None:
            if kind not in (VariableKind.STRING, VariableKind.SECRET) or not isinstance(validation, str):
                errors.add(f"{where}.validation", "a regular expression, for string and secret variables")
                validation = None
            else:
                try:
                    compile_pattern(validation)
                except Invalid as exc:
                    errors.add(f"{where}.validation", exc.message)
                    validation = None
        description = definition.get("description", "")
        if not isinstance(description, str) or len(description) > 4096:
            errors.add(f"{where}.description", "a text of at most 4096 characters")
        variable = Variable(
            name=name,
            kind=kind,
            default=definition.get("default"),
            validation=validation,
            description=description if isinstance(description, str) else "",
            **{flag: value is True for flag, value in flags.items()},
        )
        if variable.default is not None:
            problem = value_problem(variable, variable.default)
            if problem:
                errors.add(f"{where}.default", problem)
        variables[name] = variable
    return variables


def value_problem(variable: Variable, value: Any) -> str | None:
    """Why a value does not fit a variable, or None when it does."""
    if variable.kind == VariableKind.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return "a number variable takes a number"
        return None
    if variable.kind == VariableKind.BOOLEAN:
        return None if isinstance(value, bool) else "a boolean variable takes true or false"
    try:
        check_value(variable.kind, value, "")
    except Invalid as exc:
        return exc.message
    if variable.validation and not compile_pattern(variable.validation).fullmatch(value):
        return f"does not match the variable's validation {variable.validation!r}"
    return None


def stages_to_graph(stages: Any, errors: _Errors) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """The nodes and edges of a stages document, each with its path: the stages run one after another,
    a parallel stage between a parallel and a converge gateway. Nodes keep their stage's name."""
    if not isinstance(stages, list) or not stages:
        errors.add("stages", "a non-empty list of stages")
        return [], []
    nodes: list[tuple[str, Any]] = [("stages", {"id": "start", "type": NodeType.START})]
    edges: list[tuple[str, Any]] = []
    last = "start"

    def link(source: str, target: str, path: str) -> None:
        edges.append((path, {"from": source, "to": target}))

    for index, stage in enumerate(stages):
        where = f"stages.{index}"
        if not isinstance(stage, Mapping):
            errors.add(where, "a stage is an object {name, mode, nodes}")
            continue
        name = stage.get("name")
        if not isinstance(name, str) or not name or len(name) > 255:
            errors.add(f"{where}.name", "a stage has a name")
            name = f"stage-{index + 1}"
        mode = stage.get("mode", StageMode.SERIAL)
        if mode not in tuple(StageMode):
            errors.add(f"{where}.mode", "serial or parallel")
            mode = StageMode.SERIAL
        members = stage.get("nodes")
        if not isinstance(members, list) or not members:
            errors.add(f"{where}.nodes", "a stage runs at least one node")
            continue
        placed = []
        for position, member in enumerate(members):
            path = f"{where}.nodes.{position}"
            if not isinstance(member, Mapping):
                errors.add(path, "a node is an object")
                continue
            member = {"type": NodeType.ACTIVITY, **member, "stage": name}
            if member["type"] not in RUNNABLE:
                errors.add(f"{path}.type", "a stage holds activity and subflow nodes")
            nodes.append((path, member))
            if isinstance(member.get("id"), str):
                placed.append((path, member["id"]))
        if mode == StageMode.PARALLEL and len(placed) > 1:
            split, join = f"{where}.parallel", f"{where}.converge"
            nodes.append((where, {"id": split, "type": NodeType.PARALLEL, "stage": name}))
            nodes.append((where, {"id": join, "type": NodeType.CONVERGE, "stage": name}))
            link(last, split, where)
            for path, node_id in placed:
                link(split, node_id, path)
                link(node_id, join, path)
            last = join
        else:
            for path, node_id in placed:
                link(last, node_id, path)
                last = node_id
    nodes.append(("stages", {"id": "end", "type": NodeType.END}))
    link(last, "end", "stages")
    return nodes, edges


NODE_FIELDS = frozenset(
    {
        "id", "type", "name", "atom", "inputs", "outputs", "stage", "retryable", "skippable",
        "ignore_error", "optional", "auto_retry", "timeout", "run_limit",
    }
)  # fmt: skip


def _parse_nodes(
    documents: list[tuple[str, Any]],
    atoms: Mapping[str, AtomSpec],
    variables: Mapping[str, Variable],
    project_variables: Collection[str] | None,
    errors: _Errors,
) -> dict[str, Node]:
    nodes: dict[str, Node] = {}
    if len(documents) > NODES_MAX:
        errors.add("nodes", f"at most {NODES_MAX} nodes")
    for where, document in documents:
        if not isinstance(document, Mapping):
            errors.add(where, "a node is an object")
            continue
        for key in sorted(set(document) - NODE_FIELDS):
            errors.add(f"{where}.{key}", "unknown field")
        node_id = document.get("id")
        if not isinstance(node_id, str) or not NODE_ID.match(node_id):
            errors.add(f"{where}.id", "a node id is 1 to 64 letters, digits, '.', '_' or '-'")
            continue
        if node_id in nodes:
            errors.add(f"{where}.id", f"node {node_id!r} is defined twice")
            continue
        try:
            kind = NodeType(document.get("type"))
        except ValueError:
            errors.add(f"{where}.type", f"one of {', '.join(NodeType)}")
            continue
        name = document.get("name", node_id)
        if not isinstance(name, str) or not name or len(name) > 255:
            errors.add(f"{where}.name", "a name of 1 to 255 characters")
            name = node_id
        node = Node(id=node_id, type=kind, name=name, path=where, stage=document.get("stage"))
        if kind in RUNNABLE:
            node = _parse_runnable(node, document, atoms, variables, project_variables, errors)
        else:
            for key in sorted(set(document) & (NODE_FIELDS - {"id", "type", "name", "stage"})):
                errors.add(f"{where}.{key}", f"a {kind} node has no {key}")
        nodes[node_id] = node
    return nodes


def _parse_runnable(
    node: Node,
    document: Mapping[str, Any],
    atoms: Mapping[str, AtomSpec],
    variables: Mapping[str, Variable],
    project_variables: Collection[str] | None,
    errors: _Errors,
) -> Node:
    where = node.path
    if node.type == NodeType.SUBFLOW:
        if "atom" in document:
            errors.add(f"{where}.atom", "a subflow node runs a flow: name it in inputs.flow_id")
        atom_name = SUBFLOW_ATOM
    else:
        atom_name = document.get("atom")
    spec = atoms.get(atom_name) if isinstance(atom_name, str) else None
    if spec is None and node.type == NodeType.ACTIVITY:
        errors.add(f"{where}.atom", f"one of {', '.join(sorted(atoms))}")
    raw_inputs = document.get("inputs", {})
    if not isinstance(raw_inputs, Mapping):
        errors.add(f"{where}.inputs", "an object of the atom's inputs")
        raw_inputs = {}
    inputs, unrendered = unwrap_inputs(raw_inputs)
    if spec is not None:
        unrendered |= spec.unrendered & set(inputs)
        for path, message in spec.check_inputs(inputs):
            errors.add(f"{where}.inputs.{path}" if path else f"{where}.inputs", message)
    declared = set(variables) | BUILTINS
    for name, value in inputs.items():
        if name in unrendered:
            continue
        for reference in references(value):
            problem = reference_problem(reference.name, reference.field, declared, project_variables)
            if problem:
                errors.add(f"{where}.inputs.{name}", problem)
    outputs = document.get("outputs", {})
    if not isinstance(outputs, Mapping):
        errors.add(f"{where}.outputs", "an object {flow variable: atom output}")
        outputs = {}
    for variable, output in outputs.items():
        if variable not in variables:
            errors.add(f"{where}.outputs.{variable}", f"there is no variable {variable!r}")
        if not isinstance(output, str) or not output:
            errors.add(f"{where}.outputs.{variable}", "the name of one of the atom's outputs")
        elif spec is not None and spec.outputs is not None and output not in spec.outputs:
            errors.add(
                f"{where}.outputs.{variable}",
                f"the atom has no output {output!r}; it has {', '.join(sorted(spec.outputs))}",
            )
    flags = {}
    for flag, default in (
        ("retryable", True),
        ("skippable", True),
        ("ignore_error", False),
        ("optional", False),
    ):
        flags[flag] = document.get(flag, default)
        if not isinstance(flags[flag], bool):
            errors.add(f"{where}.{flag}", "true or false")
            flags[flag] = default
    run_limit = document.get("run_limit", RUN_LIMIT_DEFAULT)
    if not _integer(run_limit, 1, RUN_LIMIT_MAX):
        errors.add(f"{where}.run_limit", f"an integer from 1 to {RUN_LIMIT_MAX}")
        run_limit = RUN_LIMIT_DEFAULT
    return Node(
        id=node.id,
        type=node.type,
        name=node.name,
        path=where,
        stage=node.stage,
        atom=atom_name if spec is not None else None,
        inputs=MappingProxyType(dict(inputs)),
        unrendered=frozenset(unrendered),
        outputs=MappingProxyType(dict(outputs)),
        auto_retry=_parse_auto_retry(document.get("auto_retry"), f"{where}.auto_retry", errors),
        timeout=_parse_timeout(document.get("timeout"), f"{where}.timeout", errors),
        run_limit=run_limit,
        **flags,
    )


def unwrap_inputs(raw: Mapping[str, Any]) -> tuple[dict[str, Any], set[str]]:
    """Inputs with `{"value": X, "render": false}` unwrapped to X, and the names of those inputs."""
    inputs, unrendered = {}, set()
    for name, value in raw.items():
        if isinstance(value, Mapping) and set(value) == {"value", "render"} and value["render"] is False:
            inputs[name] = value["value"]
            unrendered.add(name)
        else:
            inputs[name] = value
    return inputs, unrendered


def reference_problem(
    name: str, field: str | None, declared: Collection[str], project_variables: Collection[str] | None
) -> str | None:
    """Why `${name.field}` names nothing a flow can read, or None when it names something."""
    shown = f"${{{name}{'.' + field if field else ''}}}"
    if name not in declared:
        return f'{shown} names no variable (turn rendering off with {{"value": ..., "render": false}})'
    if name == "_system" and field not in SYSTEM_FIELDS:
        return f"{shown}: _system has {', '.join(sorted(SYSTEM_FIELDS))}"
    if name == "_project":
        if field is None:
            return f"{shown}: name a project variable, as ${{_project.NAME}}"
        if project_variables is not None and field not in project_variables:
            return f"{shown}: the project has no variable {field!r}"
    if name == "_loop" and field is not None:
        return f"{shown}: _loop is a number"
    return None


def _integer(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _parse_auto_retry(value: Any, where: str, errors: _Errors) -> AutoRetry | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        errors.add(where, "an object {times, interval, backoff}")
        return None
    for key in sorted(set(value) - {"times", "interval", "backoff"}):
        errors.add(f"{where}.{key}", "unknown field")
    times, interval, backoff = value.get("times"), value.get("interval", 0), value.get("backoff", 1)
    valid = True
    if not _integer(times, 1, AUTO_RETRY_TIMES_MAX):
        errors.add(f"{where}.times", f"an integer from 1 to {AUTO_RETRY_TIMES_MAX}")
        valid = False
    if not _integer(interval, 0, AUTO_RETRY_INTERVAL_MAX):
        errors.add(f"{where}.interval", f"seconds, an integer from 0 to {AUTO_RETRY_INTERVAL_MAX}")
        valid = False
    if isinstance(backoff, bool) or not isinstance(backoff, int | float) or not 1 <= backoff <= 10:
        errors.add(f"{where}.backoff", "a factor from 1 to 10")
        valid = False
    return AutoRetry(times, interval, float(backoff)) if valid else None


def _parse_timeout(value: Any, where: str, errors: _Errors) -> NodeTimeout | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        errors.add(where, "an object {seconds, action}")
        return None
    for key in sorted(set(value) - {"seconds", "action"}):
        errors.add(f"{where}.{key}", "unknown field")
    seconds, action = value.get("seconds"), value.get("action", TimeoutAction.FAIL)
    valid = True
    if not _integer(seconds, 1, NODE_TIMEOUT_MAX):
        errors.add(f"{where}.seconds", f"an integer from 1 to {NODE_TIMEOUT_MAX}")
        valid = False
    if action not in tuple(TimeoutAction):
        errors.add(f"{where}.action", "fail or fail_and_skip")
        valid = False
    return NodeTimeout(seconds, TimeoutAction(action)) if valid else None


def _parse_edges(
    documents: list[tuple[str, Any]], nodes: Mapping[str, Node], declared: set[str], errors: _Errors
) -> list[Edge]:
    edges = []
    seen = set()
    for index, (where, document) in enumerate(documents):
        if not isinstance(document, Mapping):
            errors.add(where, "an edge is an object {from, to}")
            continue
        for key in sorted(set(document) - {"from", "to", "condition", "default"}):
            errors.add(f"{where}.{key}", "unknown field")
        source, target = document.get("from"), document.get("to")
        known = True
        for key, node_id in (("from", source), ("to", target)):
            if not isinstance(node_id, str) or node_id not in nodes:
                errors.add(f"{where}.{key}", f"there is no node {node_id!r}")
                known = False
        if not known:
            continue
        if (source, target) in seen:
            errors.add(where, f"a second edge from {source!r} to {target!r}")
            continue
        seen.add((source, target))
        condition = None
        default = document.get("default", False)
        if not isinstance(default, bool):
            errors.add(f"{where}.default", "true or false")
            default = False
        if nodes[source].type in CHOOSERS:
            if "condition" in document and default:
                errors.add(f"{where}.condition", "an edge has a condition or is the default, not both")
            elif "condition" in document:
                try:
                    condition = compile_condition(document["condition"], declared)
                except ConditionError as exc:
                    errors.add(f"{where}.condition", str(exc))
            elif not default:
                errors.add(f"{where}.condition", f"an edge leaving {nodes[source].type} gateway "
                           f"{source!r} has a condition or is its default")  # fmt: skip
        else:
            for key in ("condition", "default"):
                if key in document:
                    errors.add(f"{where}.{key}", "only edges leaving an exclusive or conditional parallel "
                               "gateway have conditions")  # fmt: skip
        edges.append(Edge(index, source, target, condition, default))
    return edges


def _parse_outputs(value: Any, variables: Mapping[str, Variable], errors: _Errors) -> tuple[str, ...]:
    if not isinstance(value, list):
        errors.add("outputs", "a list of variable names")
        return ()
    for index, name in enumerate(value):
        if name not in variables:
            errors.add(f"outputs.{index}", f"there is no variable {name!r}")
    return tuple(name for name in value if name in variables)


def _structure(
    nodes: dict[str, Node],
    edges: list[Edge],
    variables: dict[str, Variable],
    outputs: tuple[str, ...],
    errors: _Errors,
) -> FlowGraph | None:
    outgoing: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    incoming: dict[str, list[Edge]] = {node_id: [] for node_id in nodes}
    for edge in edges:
        outgoing[edge.source].append(edge)
        incoming[edge.target].append(edge)
    starts = [node for node in nodes.values() if node.type == NodeType.START]
    ends = [node for node in nodes.values() if node.type == NodeType.END]
    if len(starts) != 1:
        errors.add("nodes", f"a flow has exactly one start node, not {len(starts)}")
    if not ends:
        errors.add("nodes", "a flow has at least one end node")
    for node in nodes.values():
        out, into = outgoing[node.id], incoming[node.id]
        if node.type == NodeType.START:
            if into:
                errors.add(node.path, "no edge leads into the start node")
            if len(out) != 1:
                errors.add(node.path, "the start node has one leaving edge")
        elif node.type == NodeType.END:
            if out:
                errors.add(node.path, "no edge leaves an end node")
        elif node.type in RUNNABLE or node.type == NodeType.CONVERGE:
            if len(out) != 1:
                errors.add(node.path, f"a{'n' if node.type == NodeType.ACTIVITY else ''} {node.type} node "
                           f"has exactly one leaving edge, not {len(out)}")  # fmt: skip
        else:
            if not out:
                errors.add(node.path, f"a {node.type} gateway has at least one leaving edge")
            if node.type in CHOOSERS and sum(edge.default for edge in out) > 1:
                errors.add(node.path, "a gateway has at most one default edge")
    if errors.found or len(starts) != 1:
        return None
    start = starts[0].id
    _check_reachability(nodes, outgoing, incoming, start, errors)
    looping = _check_cycles(nodes, outgoing, errors)
    converge_of = _pair_gateways(nodes, outgoing, incoming, errors)
    if errors.found:
        return None
    return FlowGraph(
        nodes=MappingProxyType(nodes),
        edges=tuple(edges),
        variables=MappingProxyType(variables),
        outputs=outputs,
        start=start,
        converge_of=MappingProxyType(converge_of),
        split_of=MappingProxyType({join: split for split, join in converge_of.items()}),
        looping=looping,
        _outgoing=MappingProxyType({key: tuple(value) for key, value in outgoing.items()}),
        _incoming=MappingProxyType({key: tuple(value) for key, value in incoming.items()}),
    )


def _walk(first: str, step: Mapping[str, list[Edge]], forward: bool) -> set[str]:
    seen = {first}
    stack = [first]
    while stack:
        for edge in step[stack.pop()]:
            following = edge.target if forward else edge.source
            if following not in seen:
                seen.add(following)
                stack.append(following)
    return seen


def _check_reachability(
    nodes: Mapping[str, Node],
    outgoing: Mapping[str, list[Edge]],
    incoming: Mapping[str, list[Edge]],
    start: str,
    errors: _Errors,
) -> None:
    reached = _walk(start, outgoing, forward=True)
    finishing: set[str] = set()
    for node in nodes.values():
        if node.type == NodeType.END:
            finishing |= _walk(node.id, incoming, forward=False)
    for node in nodes.values():
        if node.id not in reached:
            errors.add(node.path, f"node {node.id!r} cannot be reached from the start")
        elif node.id not in finishing:
            errors.add(node.path, f"node {node.id!r} cannot reach an end")


def _check_cycles(
    nodes: Mapping[str, Node], outgoing: Mapping[str, list[Edge]], errors: _Errors
) -> frozenset[str]:
    """Every cycle must leave through an exclusive gateway: without the edges leaving exclusive gateways
    the graph has none. The nodes on a cycle are returned (they run up to their run limit)."""
    state: dict[str, int] = {}
    reported = False
    for root in nodes:
        if root in state or reported:
            continue
        stack = [(root, iter(outgoing[root]))]
        state[root] = 1
        while stack and not reported:
            node_id, pending = stack[-1]
            edge = next((edge for edge in pending if nodes[edge.source].type != NodeType.EXCLUSIVE), None)
            if edge is None:
                state[node_id] = 2
                stack.pop()
            elif state.get(edge.target) == 1:
                errors.add(nodes[edge.target].path, f"node {edge.target!r} is on a cycle that does not "
                           "pass through an exclusive gateway; a loop goes back through one")  # fmt: skip
                reported = True
            elif edge.target not in state:
                state[edge.target] = 1
                stack.append((edge.target, iter(outgoing[edge.target])))
    return frozenset(_strongly_connected(nodes, outgoing))


def _strongly_connected(nodes: Mapping[str, Node], outgoing: Mapping[str, list[Edge]]) -> set[str]:
    """The nodes on some cycle (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cyclic: set[str] = set()
    counter = 0
    for root in nodes:
        if root in index:
            continue
        work = [(root, 0)]
        while work:
            node_id, position = work.pop()
            if position == 0:
                index[node_id] = low[node_id] = counter
                counter += 1
                stack.append(node_id)
                on_stack.add(node_id)
            edges = outgoing[node_id]
            if position < len(edges):
                work.append((node_id, position + 1))
                target = edges[position].target
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node_id] = min(low[node_id], index[target])
                continue
            if low[node_id] == index[node_id]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node_id:
                        break
                if len(component) > 1 or any(edge.target == node_id for edge in edges):
                    cyclic.update(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node_id])
    return cyclic


def _pair_gateways(
    nodes: Mapping[str, Node],
    outgoing: Mapping[str, list[Edge]],
    incoming: Mapping[str, list[Edge]],
    errors: _Errors,
) -> dict[str, str]:
    """Each parallel and conditional parallel gateway's converge gateway: the one node where every path
    from its branches stops, which gathers nothing else."""
    converge_of: dict[str, str] = {}
    blocks: dict[str, set[str]] = {}
    failed: set[str] = set()

    def pair(split: str, visiting: frozenset[str]) -> str | None:
        if split in converge_of:
            return converge_of[split]
        if split in failed or split in visiting:
            return None
        visiting = visiting | {split}
        joins: set[str] = set()
        block: set[str] = {split}
        stack = [edge.target for edge in outgoing[split]]
        while stack:
            node_id = stack.pop()
            node = nodes[node_id]
            if node.type == NodeType.CONVERGE:
                joins.add(node_id)
                continue
            if node_id in block:
                continue
            block.add(node_id)
            if node.type == NodeType.END:
                errors.add(
                    node.path, f"a branch of gateway {split!r} reaches an end before its converge gateway"
                )
                failed.add(split)
                return None
            if node.type in SPLITS:
                inner = pair(node_id, visiting)
                if inner is None:
                    failed.add(split)
                    return None
                block |= blocks[node_id]
                stack.extend(edge.target for edge in outgoing[inner])
                continue
            stack.extend(edge.target for edge in outgoing[node_id])
        if len(joins) != 1:
            found = ", ".join(sorted(joins)) or "none"
            errors.add(nodes[split].path, f"the branches of gateway {split!r} meet at one converge gateway "
                       f"(found: {found})")  # fmt: skip
            failed.add(split)
            return None
        join = joins.pop()
        strays = [edge.source for edge in incoming[join] if edge.source not in block]
        if strays:
            errors.add(nodes[join].path, f"converge gateway {join!r} gathers the branches of {split!r} only, "
                       f"not edges from {', '.join(sorted(strays))}")  # fmt: skip
            failed.add(split)
            return None
        converge_of[split] = join
        blocks[split] = block | {join}
        return join

    for node in nodes.values():
        if node.type in SPLITS:
            pair(node.id, frozenset())
    paired: dict[str, str] = {}
    for split, join in converge_of.items():
        if join in paired:
            errors.add(
                nodes[join].path, f"converge gateway {join!r} gathers both {paired[join]!r} and {split!r}"
            )
        paired[join] = split
    for node in nodes.values():
        if node.type == NodeType.CONVERGE and node.id not in paired and not failed:
            errors.add(node.path, f"converge gateway {node.id!r} gathers no parallel gateway's branches")
    return converge_of
