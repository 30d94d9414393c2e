"""Flow documents parsed into checked graphs: every rule, every error at once with its path."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import pairwise
from typing import Any

import pytest

from app.flows.graph import GraphInvalid, NodeType, TimeoutAction, parse


class ScriptSpec:
    unrendered = frozenset({"content"})
    outputs = None

    def check_inputs(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [] if isinstance(inputs.get("content"), str) else [("content", "a script body")]


class HttpSpec:
    unrendered = frozenset()
    outputs = frozenset({"status_code", "json"})

    def check_inputs(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [] if isinstance(inputs.get("url"), str) else [("url", "a URL")]


class SubflowSpec:
    unrendered = frozenset()
    outputs = None

    def check_inputs(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        return [] if isinstance(inputs.get("flow_id"), int) else [("flow_id", "a flow id")]


ATOMS = {"script": ScriptSpec(), "http": HttpSpec(), "subflow": SubflowSpec()}


def script(node_id: str, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "activity", "atom": "script", "inputs": {"content": "echo"}, **extra}


def chain(*middle: dict[str, Any], **document: Any) -> dict[str, Any]:
    nodes = [{"id": "start", "type": "start"}, *middle, {"id": "end", "type": "end"}]
    ids = [node["id"] for node in nodes]
    return {"nodes": nodes, "edges": [{"from": a, "to": b} for a, b in pairwise(ids)], **document}


def errors_of(document: dict[str, Any], **kwargs: Any) -> dict[str, str]:
    with pytest.raises(GraphInvalid) as caught:
        parse(document, ATOMS, **kwargs)
    found: dict[str, str] = {}
    for error in caught.value.errors:
        found[error.path] = f"{found[error.path]} | {error.message}" if error.path in found else error.message
    return found


def release() -> dict[str, Any]:
    """start → parallel(a, b) → converge → exclusive(version) → http | end."""
    return {
        "variables": [
            {"name": "version", "type": "string", "default": "2.0"},
            {"name": "code", "type": "number"},
        ],
        "outputs": ["code"],
        "nodes": [
            {"id": "start", "type": "start"},
            {"id": "fork", "type": "parallel"},
            script("a"),
            script("b", retryable=False, auto_retry={"times": 3, "interval": 2, "backoff": 2}),
            {"id": "join", "type": "converge"},
            {"id": "which", "type": "exclusive"},
            {
                "id": "notify",
                "type": "activity",
                "atom": "http",
                "inputs": {"url": "http://x/${version}"},
                "outputs": {"code": "status_code"},
                "timeout": {"seconds": 30, "action": "fail_and_skip"},
            },
            {"id": "end", "type": "end"},
        ],
        "edges": [
            {"from": "start", "to": "fork"},
            {"from": "fork", "to": "a"},
            {"from": "fork", "to": "b"},
            {"from": "a", "to": "join"},
            {"from": "b", "to": "join"},
            {"from": "join", "to": "which"},
            {"from": "which", "to": "notify", "condition": 'version.startsWith("2.")'},
            {"from": "which", "to": "end", "default": True},
            {"from": "notify", "to": "end"},
        ],
    }


def test_a_release_flow_parses_into_an_immutable_checked_graph() -> None:
    graph = parse(release(), ATOMS)
    assert graph.start == "start"
    assert graph.converge_of == {"fork": "join"}
    assert graph.split_of == {"join": "fork"}
    assert graph.next_nodes("fork") == ("a", "b")
    assert graph.chosen("which", {"version": "2.1"}) == ("notify",)
    assert graph.chosen("which", {"version": "3.0"}) == ("end",)
    assert graph.looping == frozenset()
    node = graph.nodes["b"]
    assert node.retryable is False and node.skippable is True
    assert node.auto_retry.times == 3 and node.auto_retry.delay(2) == 8
    assert graph.nodes["notify"].timeout.action == TimeoutAction.FAIL_AND_SKIP
    assert graph.nodes["notify"].outputs == {"code": "status_code"}
    assert graph.outputs == ("code",)
    with pytest.raises(TypeError):
        graph.nodes["x"] = node
    with pytest.raises(AttributeError):
        node.name = "other"


def test_every_error_is_reported_at_once_with_its_path() -> None:
    document = release()
    document["nodes"][6]["inputs"] = {"url": 5}
    document["nodes"][2]["atom"] = "teleport"
    document["edges"][6]["condition"] = "verzion == '2'"
    document["nodes"][3]["auto_retry"] = {"times": 11}
    document["nodes"][6]["outputs"] = {"code": "body", "missing": "json"}
    document["outputs"] = ["code", "nothing"]
    found = errors_of(document)
    assert found == {
        "nodes.6.inputs.url": "a URL",
        "nodes.2.atom": "one of http, script, subflow",
        "edges.6.condition": "no variable named verzion",
        "nodes.3.auto_retry.times": "an integer from 1 to 10",
        "nodes.6.outputs.code": "the atom has no output 'body'; it has json, status_code",
        "nodes.6.outputs.missing": "there is no variable 'missing'",
        "outputs.1": "there is no variable 'nothing'",
    }


def test_start_and_end_are_counted() -> None:
    document = chain(script("a"))
    document["nodes"].append({"id": "start2", "type": "start"})
    document["edges"].append({"from": "start2", "to": "a"})
    assert "exactly one start node, not 2" in errors_of(document)["nodes"]
    document = {"nodes": [{"id": "s", "type": "start"}, script("a")], "edges": [{"from": "s", "to": "a"}]}
    found = errors_of(document)
    assert found["nodes"] == "a flow has at least one end node"
    assert "exactly one leaving edge, not 0" in found["nodes.1"]


def test_unreachable_nodes_and_dead_ends_are_named() -> None:
    document = chain(script("a"))
    document["nodes"].insert(2, script("island"))
    document["nodes"].insert(2, {"id": "stuck", "type": "parallel"})
    document["edges"] += [{"from": "island", "to": "end"}, {"from": "a", "to": "stuck"}]
    document["edges"][1] = {"from": "a", "to": "end"}
    found = errors_of(document)
    assert "exactly one leaving edge, not 2" in found["nodes.1"]
    assert found["nodes.2"] == "a parallel gateway has at least one leaving edge"
    document["edges"].pop()
    document["nodes"].pop(2)
    assert errors_of(document) == {"nodes.2": "node 'island' cannot be reached from the start"}


def test_a_node_that_cannot_reach_an_end_is_named() -> None:
    document = chain({"id": "x", "type": "exclusive"}, script("a"))
    document["edges"] = [
        {"from": "start", "to": "x"},
        {"from": "x", "to": "a", "condition": "true"},
        {"from": "x", "to": "end", "default": True},
        {"from": "a", "to": "a2"},
    ]
    document["nodes"].insert(3, {"id": "a2", "type": "activity", "atom": "script", "inputs": {"content": ""}})
    document["edges"].append({"from": "a2", "to": "a"})
    found = errors_of(document)
    assert "node 'a' cannot reach an end" in found["nodes.2"]
    assert "node 'a' is on a cycle that does not pass through an exclusive gateway" in found["nodes.2"]


def test_edges_name_existing_nodes_once_and_conditions_belong_to_choosing_gateways() -> None:
    document = chain(script("a"))
    document["edges"] += [
        {"from": "a", "to": "ghost"},
        {"from": "start", "to": "a"},
        {"from": "start", "to": "end", "condition": "true", "weight": 3},
    ]
    found = errors_of(document)
    assert found["edges.2.to"] == "there is no node 'ghost'"
    assert found["edges.3"] == "a second edge from 'start' to 'a'"
    assert found["edges.4.weight"] == "unknown field"
    assert "only edges leaving" in found["edges.4.condition"]


def test_a_choosing_gateway_needs_a_condition_or_one_default_on_each_edge() -> None:
    document = chain({"id": "x", "type": "exclusive"})
    document["nodes"].insert(2, script("a"))
    document["edges"] = [
        {"from": "start", "to": "x"},
        {"from": "x", "to": "a"},
        {"from": "x", "to": "end", "default": True, "condition": "true"},
        {"from": "a", "to": "end"},
    ]
    found = errors_of(document)
    assert "has a condition or is its default" in found["edges.1.condition"]
    assert found["edges.2.condition"] == "an edge has a condition or is the default, not both"


def test_exclusive_tries_in_edge_order_conditional_parallel_takes_all_and_default_is_a_fallback() -> None:
    document = {
        "variables": [{"name": "n", "type": "number", "default": 1}],
        "nodes": [
            {"id": "s", "type": "start"},
            {"id": "x", "type": "exclusive"},
            {"id": "cp", "type": "conditional_parallel"},
            script("a"),
            script("b"),
            script("c"),
            {"id": "j", "type": "converge"},
            {"id": "e", "type": "end"},
        ],
        "edges": [
            {"from": "s", "to": "x"},
            {"from": "x", "to": "cp", "condition": "n > 0"},
            {"from": "x", "to": "e", "condition": "n > -10"},
            {"from": "cp", "to": "a", "condition": "n > 1"},
            {"from": "cp", "to": "b", "condition": "n > 2"},
            {"from": "cp", "to": "c", "default": True},
            {"from": "a", "to": "j"},
            {"from": "b", "to": "j"},
            {"from": "c", "to": "j"},
            {"from": "j", "to": "e"},
        ],
    }
    graph = parse(document, ATOMS)
    assert graph.chosen("x", {"n": 5}) == ("cp",)
    assert graph.chosen("x", {"n": -5}) == ("e",)
    assert graph.chosen("x", {"n": -50}) == ()
    assert graph.chosen("cp", {"n": 5}) == ("a", "b")
    assert graph.chosen("cp", {"n": 2}) == ("a",)
    assert graph.chosen("cp", {"n": 0}) == ("c",)
    assert graph.converge_of == {"cp": "j"}


def parallel(*branches: list[dict[str, Any]], join: bool = True) -> dict[str, Any]:
    nodes = [{"id": "s", "type": "start"}, {"id": "p", "type": "parallel"}]
    edges = [{"from": "s", "to": "p"}]
    for branch in branches:
        nodes += branch
        edges.append({"from": "p", "to": branch[0]["id"]})
        edges += [{"from": a["id"], "to": b["id"]} for a, b in pairwise(branch)]
        if join:
            edges.append({"from": branch[-1]["id"], "to": "j"})
    nodes += [{"id": "j", "type": "converge"}, {"id": "e", "type": "end"}]
    edges.append({"from": "j", "to": "e"})
    return {"nodes": nodes, "edges": edges}


def test_nested_parallel_gateways_pair_with_their_own_converge() -> None:
    inner = [
        {"id": "p2", "type": "parallel"},
        script("x"),
        script("y"),
        {"id": "j2", "type": "converge"},
    ]
    document = parallel(inner, [script("b")])
    document["edges"] = [
        edge
        for edge in document["edges"]
        if (edge["from"], edge["to"]) not in {("p2", "x"), ("x", "y"), ("y", "j2")}
    ]
    document["edges"] += [
        {"from": "p2", "to": "x"},
        {"from": "p2", "to": "y"},
        {"from": "x", "to": "j2"},
        {"from": "y", "to": "j2"},
    ]
    graph = parse(document, ATOMS)
    assert graph.converge_of == {"p": "j", "p2": "j2"}


def test_a_branch_that_escapes_its_converge_is_refused() -> None:
    document = parallel([script("a")], [script("b")])
    document["edges"] = [edge for edge in document["edges"] if edge != {"from": "b", "to": "j"}]
    document["edges"].append({"from": "b", "to": "e"})
    found = errors_of(document)
    assert found["nodes.5"] == "a branch of gateway 'p' reaches an end before its converge gateway"


def test_a_converge_that_gathers_other_edges_or_no_gateway_is_refused() -> None:
    document = chain(script("a"), {"id": "j", "type": "converge"})
    found = errors_of(document)
    assert found == {"nodes.2": "converge gateway 'j' gathers no parallel gateway's branches"}
    document = parallel([script("a")], [script("b")])
    document["nodes"].insert(1, {"id": "x", "type": "exclusive"})
    document["nodes"].insert(2, script("side"))
    document["edges"][0] = {"from": "s", "to": "x"}
    document["edges"] += [
        {"from": "x", "to": "p", "condition": "true"},
        {"from": "x", "to": "side", "default": True},
        {"from": "side", "to": "j"},
    ]
    found = errors_of(document)
    assert "gathers the branches of 'p' only, not edges from side" in found["nodes.6"]


def test_two_converges_for_one_gateway_are_refused() -> None:
    document = parallel([script("a")], [script("b")])
    document["nodes"].insert(-1, {"id": "j2", "type": "converge"})
    document["edges"] = [edge for edge in document["edges"] if edge != {"from": "b", "to": "j"}]
    document["edges"] += [{"from": "b", "to": "j2"}, {"from": "j2", "to": "e"}]
    found = errors_of(document)
    assert "meet at one converge gateway (found: j, j2)" in found["nodes.1"]


def test_a_loop_back_through_an_exclusive_gateway_is_allowed_and_marks_its_nodes() -> None:
    document = chain(script("work", run_limit=5), {"id": "again", "type": "exclusive"})
    document["variables"] = [{"name": "done", "type": "boolean", "default": False}]
    document["edges"][-1] = {"from": "again", "to": "end", "condition": "done"}
    document["edges"].append({"from": "again", "to": "work", "default": True})
    graph = parse(document, ATOMS)
    assert graph.looping == {"work", "again"}
    assert graph.nodes["work"].run_limit == 5
    assert graph.chosen("again", {"done": False}) == ("work",)


def test_a_cycle_not_through_an_exclusive_gateway_is_refused() -> None:
    document = parallel([script("a"), script("b")], [script("c")])
    document["edges"].append({"from": "b", "to": "a"})
    document["edges"] = [edge for edge in document["edges"] if edge != {"from": "b", "to": "j"}]
    found = errors_of(document)
    assert any(
        "on a cycle that does not pass through an exclusive gateway" in message for message in found.values()
    )


def test_references_must_name_declared_variables_unless_rendering_is_off() -> None:
    document = chain(
        {
            "id": "call",
            "type": "activity",
            "atom": "http",
            "inputs": {
                "url": "http://${host}/${_project.base}/${_system.task_id}/${_loop}",
                "body": {"value": "${not_a_variable}", "render": False},
                "headers": {"x": "${VAR:-fine}"},
            },
        },
        script("sh", inputs={"content": "echo ${anything} ${VAR:-x}"}),
    )
    document["variables"] = [{"name": "host", "type": "string"}]
    graph = parse(document, ATOMS)
    assert graph.nodes["call"].unrendered == {"body"}
    assert graph.nodes["call"].inputs["body"] == "${not_a_variable}"
    assert graph.nodes["sh"].unrendered == {"content"}
    document["nodes"][1]["inputs"]["body"] = "${not_a_variable}"
    document["nodes"][1]["inputs"]["headers"] = {"x": "${nope} ${VAR:-fine}"}
    found = errors_of(document, project_variables=["other"])
    assert set(found) == {"nodes.1.inputs.url", "nodes.1.inputs.body", "nodes.1.inputs.headers"}
    assert "the project has no variable 'base'" in found["nodes.1.inputs.url"]
    assert "${nope} names no variable" in found["nodes.1.inputs.headers"]


def test_builtins_are_checked() -> None:
    document = chain(
        {"id": "c", "type": "activity", "atom": "http", "inputs": {"url": "${_system.password}${_loop.x}"}}
    )
    found = errors_of(document)
    assert "_system has operator, task_id, task_name" in found["nodes.1.inputs.url"]
    assert "_loop is a number" in found["nodes.1.inputs.url"]


def test_variables_are_checked_each_with_its_path() -> None:
    document = chain(script("a"))
    document["variables"] = [
        {"name": "ok", "type": "string", "validation": "^v[0-9]+$", "default": "v1"},
        {"name": "bad", "type": "string", "validation": "^v[0-9]+$", "default": "x1"},
        {"name": "ok", "type": "string"},
        {"name": "9lives", "type": "string"},
        {"name": "_system", "type": "string"},
        {"name": "n", "type": "number", "default": "3"},
        {"name": "flag", "type": "boolean", "default": 1},
        {"name": "list", "type": "array", "default": "a"},
        {"name": "targets", "type": "host_list", "default": {"hosts": ["web1"]}},
        {"name": "what", "type": "object"},
        {"name": "re", "type": "string", "validation": "(unclosed"},
        {"name": "PATH", "type": "string", "default": "x"},
    ]
    found = errors_of(document)
    assert set(found) == {f"variables.{index}.{key}" for index, key in [
        (1, "default"), (2, "name"), (3, "name"), (4, "name"), (5, "default"), (6, "default"),
        (7, "default"), (8, "default"), (9, "type"), (10, "validation"), (11, "name"),
    ]}  # fmt: skip
    assert "validation" in found["variables.1.default"]
    assert found["variables.2.name"] == "variable 'ok' is defined twice"


def test_node_options_are_checked() -> None:
    document = chain(
        script(
            "a",
            retryable="yes",
            timeout={"seconds": 0, "action": "explode"},
            auto_retry={"times": 2, "interval": -1, "backoff": 0.5},
            run_limit=0,
            colour="red",
        )
    )
    found = errors_of(document)
    assert set(found) == {
        "nodes.1.retryable",
        "nodes.1.timeout.seconds",
        "nodes.1.timeout.action",
        "nodes.1.auto_retry.interval",
        "nodes.1.auto_retry.backoff",
        "nodes.1.run_limit",
        "nodes.1.colour",
    }


def test_gateways_take_no_atom_options() -> None:
    document = parallel([script("a")], [script("b")])
    document["nodes"][1]["retryable"] = True
    document["nodes"][1]["inputs"] = {}
    found = errors_of(document)
    assert found == {
        "nodes.1.inputs": "a parallel node has no inputs",
        "nodes.1.retryable": "a parallel node has no retryable",
    }


def test_node_ids_are_unique_and_well_formed() -> None:
    document = chain(script("a"), script("a"), script("bad id"))
    found = errors_of(document)
    assert found["nodes.2.id"] == "node 'a' is defined twice"
    assert "a node id" in found["nodes.3.id"]


def test_a_subflow_node_runs_a_flow_named_in_its_inputs() -> None:
    document = chain({"id": "sub", "type": "subflow", "inputs": {"flow_id": 4, "values": {}}})
    graph = parse(document, ATOMS)
    assert graph.nodes["sub"].atom == "subflow"
    assert graph.subflow_ids() == {4}
    document["nodes"][1]["inputs"] = {"flow_id": "four"}
    assert errors_of(document) == {"nodes.1.inputs.flow_id": "a flow id"}


def test_stages_become_the_same_graph_with_their_names_kept() -> None:
    document = {
        "variables": [{"name": "v", "type": "string"}],
        "stages": [
            {
                "name": "prepare",
                "nodes": [
                    {"id": "a", "atom": "script", "inputs": {"content": "x"}},
                    {"id": "b", "atom": "script", "inputs": {"content": "y"}},
                ],
            },
            {
                "name": "deploy",
                "mode": "parallel",
                "nodes": [
                    {"id": "c", "atom": "script", "inputs": {"content": "x"}},
                    {"id": "d", "atom": "http", "inputs": {"url": "${v}"}},
                ],
            },
            {
                "name": "check",
                "mode": "parallel",
                "nodes": [{"id": "e", "atom": "script", "inputs": {"content": "x"}}],
            },
        ],
    }
    graph = parse(document, ATOMS)
    assert graph.next_nodes("start") == ("a",)
    assert graph.next_nodes("a") == ("b",)
    assert graph.next_nodes("b") == ("stages.1.parallel",)
    assert graph.next_nodes("stages.1.parallel") == ("c", "d")
    assert graph.converge_of == {"stages.1.parallel": "stages.1.converge"}
    assert graph.next_nodes("stages.1.converge") == ("e",)
    assert graph.next_nodes("e") == ("end",)
    assert [graph.nodes[node_id].stage for node_id in ("a", "b", "c", "d", "e")] == [
        "prepare",
        "prepare",
        "deploy",
        "deploy",
        "check",
    ]
    assert graph.nodes["stages.1.parallel"].type == NodeType.PARALLEL


def test_stage_errors_name_the_stage_path() -> None:
    document = {
        "stages": [
            {"name": "one", "mode": "sideways", "nodes": [{"id": "a", "atom": "http", "inputs": {}}]},
            {"name": "two", "nodes": []},
            {"nodes": [{"id": "g", "type": "parallel"}]},
        ]
    }
    found = errors_of(document)
    assert found["stages.0.mode"] == "serial or parallel"
    assert found["stages.0.nodes.0.inputs.url"] == "a URL"
    assert found["stages.1.nodes"] == "a stage runs at least one node"
    assert found["stages.2.name"] == "a stage has a name"
    assert found["stages.2.nodes.0.type"] == "a stage holds activity and subflow nodes"


def test_a_document_that_is_not_a_graph_says_so() -> None:
    assert errors_of({}) == {
        "nodes": "missing | a flow has exactly one start node, not 0 | a flow has at least one end node",
        "edges": "missing",
    }
    found = errors_of({"nodes": "x", "edges": [], "variables": {}})
    assert found["nodes"].startswith("a list |")
    assert found["variables"] == "a list of variable definitions"
    assert "give stages or nodes" in errors_of({"stages": [], "nodes": []})["stages"]


def test_a_long_chain_parses() -> None:
    document = chain(*(script(f"n{index}") for index in range(3000)))
    graph = parse(document, ATOMS)
    assert len(graph.nodes) == 3002
    assert graph.next_nodes("n2999") == ("end",)
