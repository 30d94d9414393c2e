"""bk-sops pipeline trees and .dat exports translated into flow documents, and bamboo's conditions into
CEL: pure functions, over trees the tests write in bk-sops's format (tests/bk_sops_trees.py)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from app.flows import bk_sops, engine
from app.flows.bk_sops import BkSopsInvalid, decode_dat, translate
from app.flows.boolrule import Untranslatable, condition_to_cel
from app.flows.expressions import compile_condition
from app.flows.graph import NodeType, parse
from app.services.flows import map_references
from tests.bk_sops_trees import Tree, child_and_parent, dat_file, export_data, release_tree


def resolved(flow: dict[str, Any]) -> dict[str, Any]:
    """A translated flow with every reference (a name, an address, an id) as id 1, as an import would find
    them, and its import-only fields left out: a document the graph's checks take."""
    nodes = [
        {**node, "inputs": map_references(node["inputs"], lambda model, value, where: 1)}
        if "inputs" in node
        else node
        for node in flow["nodes"]
    ]
    variables = [
        {**variable, "default": {"hosts": [1]}}
        if variable["type"] == "host_list" and "default" in variable
        else variable
        for variable in flow["variables"]
    ]
    return {"variables": variables, "outputs": flow["outputs"], "nodes": nodes, "edges": flow["edges"]}


def errors_of(document: Any, name: str | None = "imported") -> dict[str, str]:
    with pytest.raises(BkSopsInvalid) as caught:
        translate(document, name)
    return {error.path: error.message for error in caught.value.errors}


def test_a_tree_with_gateways_becomes_a_graph_the_checks_take():
    tree = release_tree("10.0.0.5,0:10.0.0.6", account="root")
    [flow] = translate(tree.build(), "release").flows
    graph = parse(resolved(flow), engine.atoms())
    assert flow["name"] == "release" and flow["category"] == "other"
    assert graph.nodes["nfork"].type == NodeType.PARALLEL and graph.converge_of["nfork"] == "njoin"
    # The converge gateway that only gathers the exclusive gateway's branches is passed through.
    assert "nmeet" not in graph.nodes
    assert {graph.next_nodes(node) for node in ("nodd", "nprod", "nother")} == {("nend",)}
    assert graph.chosen("nwhich", {"env": "prod", "count": 5}) == ("nprod",)
    assert graph.chosen("nwhich", {"env": "prod", "count": 2}) == ("nother",)
    assert graph.chosen("nwhich", {"env": "test", "count": 9}) == ("nother",)
    assert graph.nodes["nprod"].name == "prod branch" and graph.nodes["nwhich"].name == "which env"
    hello = next(node for node in flow["nodes"] if node["id"] == "nhello")
    assert hello["inputs"]["targets"] == {"hosts": [{"address": "10.0.0.5"}, {"address": "10.0.0.6"}]}
    assert hello["inputs"]["account_id"] == "root"
    # _who is who here (names starting with _ are the built-ins'), in the script too.
    assert hello["inputs"]["script"] == {"language": "bash", "content": 'echo "hello ${who} from $env"'}
    assert {
        variable["name"]: (variable["type"], variable.get("default")) for variable in flow["variables"]
    } == {"env": ("string", "prod"), "count": ("number", 5), "who": ("string", "ops")}
    assert next(node for node in flow["nodes"] if node["id"] == "nother")["inputs"] == {"seconds": "${count}"}


def test_conditional_parallel_gateways_and_edges_meeting_at_once():
    tree = Tree()
    tree.constant("zone", "a")
    tree.gateway("ncond", "ConditionalParallelGateway", converge="njoin")
    tree.gateway("njoin", "ConvergeGateway")
    tree.gateway("nxor", "ExclusiveGateway")
    tree.sleep("na", "0")
    tree.sleep("nb", "0")
    tree.line(tree.start_id, "ncond")
    tree.line("ncond", "na", condition='${zone} in ("a", "c")')
    tree.line("ncond", "nb", condition="${zone} notin ('a')")
    tree.line("ncond", "njoin", default=True)
    tree.line("na", "njoin")
    tree.line("nb", "njoin")
    tree.line("njoin", "nxor")
    # Two branches of an exclusive gateway straight to one place: one edge, taken when either holds.
    tree.gateway("nmeet", "ConvergeGateway")
    tree.line("nxor", "nmeet", condition='${zone} == "a"')
    tree.line("nxor", "nmeet", condition='${zone} == "b"')
    tree.line("nmeet", tree.end_id)
    [flow] = translate(tree.build(), "zones").flows
    graph = parse(resolved(flow), engine.atoms())
    assert graph.converge_of["ncond"] == "njoin"
    assert graph.chosen("ncond", {"zone": "a"}) == ("na",)
    assert graph.chosen("ncond", {"zone": "b"}) == ("nb",)
    [meet] = [edge for edge in flow["edges"] if edge["from"] == "nxor"]
    assert meet["to"] == "nend" and meet["condition"] == '(zone == "a") || (zone == "b")'


@pytest.mark.parametrize(
    "condition, kinds, values, expected",
    [
        ('${a} == "x"', {"a": "string"}, {"a": "x"}, True),
        ("${a} == 'x'", {"a": "string"}, {"a": "y"}, False),
        ('"${a}" == "x"', {"a": "string"}, {"a": "x"}, True),
        # bamboo reads a rendered value that looks like a number as one.
        ("${n} > 3", {"n": "string"}, {"n": "5"}, True),
        ("${n} > 3", {"n": "number"}, {"n": 2}, False),
        ("${n} >= 2.5", {"n": "number"}, {"n": 2.5}, True),
        ("${n} == 5", {"n": "number"}, {"n": 5.0}, True),
        ("${n} != 5", {"n": "string"}, {"n": "5"}, False),
        ("${ok} == True", {"ok": "boolean"}, {"ok": True}, True),
        ("${ok} == true", {"ok": "string"}, {"ok": "True"}, True),
        ("${ok} != False", {"ok": "string"}, {"ok": "false"}, False),
        ("${a} in (1, 2, 3)", {"a": "string"}, {"a": "2"}, True),
        ('${a} notin ("x", "y")', {"a": "string"}, {"a": "x"}, False),
        # A bare word is text once rendered.
        ("${a} == prod", {"a": "string"}, {"a": "prod"}, True),
        # and/or group to the right, as bamboo evaluates them: a and (b or c).
        ('${a} == "x" and ${b} == "y" or ${c} == "z"', {}, {"a": "no", "b": "no", "c": "z"}, False),
        ('${a} == "x" and ${b} == "y" or ${c} == "z"', {}, {"a": "x", "b": "no", "c": "z"}, True),
        ('${a} == "x" OR ${b} == "y" AND ${c} == "z"', {}, {"a": "no", "b": "y", "c": "no"}, False),
        ('(${a} == "x" or ${b} == "y") and ${c} == "z"', {}, {"a": "no", "b": "y", "c": "z"}, True),
        ("1 == 1", {}, {}, True),
        ("1 == 0", {}, {}, False),
        ("${_loop} < 3", {}, {"_loop": 2}, True),
        ("${_system.task_name} == nightly", {}, {"_system": {"task_name": "nightly"}}, True),
        ("*", {}, {}, True),
    ],
)
def test_simple_conditions_translate_to_cel_that_agrees_with_bamboo(condition, kinds, values, expected):
    renames = {name: name for name in ("a", "b", "c", "n", "ok")}
    cel = condition_to_cel(condition, renames, kinds)
    declared = set(values) | {"_system", "_loop"}
    assert compile_condition(cel, declared).holds(values) is expected, cel


def test_a_condition_follows_the_renames():
    assert (
        condition_to_cel('${_result} == "ok"', {"_result": "result"}, {"result": "string"})
        == 'result == "ok"'
    )


@pytest.mark.parametrize(
    "condition",
    [
        '${len(items.split(","))} > 1',
        "${a + 1} == 2",
        "${a} issuperset (1, 2)",
        "${a} = 1",
        '${a} == "x" || ${b} == "y"',
        '${a} == "x" && true',
        "not ${a} == 1",
        '"v-${a}" == "v-1"',
        "${a.b} == 1",
        "${a} > true",
        "(1, 2) == ${a}",
        "${a} in ${b}",
        "${a} ==",
        '${a} == "x" and',
        "(${a} == 1",
        "",
    ],
)
def test_other_conditions_do_not_translate(condition):
    with pytest.raises(Untranslatable):
        condition_to_cel(condition, {"a": "a", "b": "b"}, {})


@pytest.mark.parametrize(
    "literal",
    [
        "'x\" || true || \"'",
        "'x\\\") || true || (\\\"'",
        "'\" + string(1) + \"'",
        "'}; drop table flow; --'",
    ],
)
def test_what_a_condition_quotes_stays_a_string(literal):
    cel = condition_to_cel(f"${{a}} == {literal}", {"a": "a"}, {"a": "string"})
    condition = compile_condition(cel, {"a"})
    assert condition.names == {"a"}
    assert condition.holds({"a": "anything"}) is False
    assert condition.holds({"a": literal[1:-1]}) is True


def test_a_complex_condition_is_refused_naming_the_gateway():
    tree = release_tree()
    flow_id = next(fid for fid, flow in tree.flows.items() if flow["target"] == "nprod")
    tree.gateways["nwhich"]["conditions"][flow_id]["evaluate"] = "${len(env)} > 3"
    errors = errors_of(tree.build())
    path = f"gateways.nwhich.conditions.{flow_id}.evaluate"
    assert set(errors) == {path}, errors
    assert "gateway 'nwhich' (which env)" in errors[path] and "Mako" in errors[path]


def test_an_unknown_component_is_refused_naming_the_node_and_its_code():
    tree = release_tree()
    tree.component("ncmdb", "cc_transfer_host_module", {"cc_host_ip": "10.0.0.5"}, name="move hosts")
    tree.activities["nother"]["component"]["code"] = "bk_notify"
    errors = errors_of(tree.build())
    assert set(errors) == {"activities.ncmdb.component.code", "activities.nother.component.code"}, errors
    assert "'ncmdb' (move hosts)" in errors["activities.ncmdb.component.code"]
    assert "'cc_transfer_host_module'" in errors["activities.ncmdb.component.code"]
    assert "'bk_notify'" in errors["activities.nother.component.code"]


def test_node_options_map_to_ours():
    tree = Tree()
    tree.sleep(
        "nnap",
        "1",
        retryable=False,
        skippable=False,
        error_ignorable=True,
        optional=True,
        stage_name="warm up",
        auto_retry={"enable": True, "interval": 5, "times": 3},
        timeout_config={"enable": True, "seconds": 30, "action": "forced_fail_and_skip"},
    )
    tree.chain(tree.start_id, "nnap", tree.end_id)
    [flow] = translate(tree.build(), "options").flows
    node = parse(resolved(flow), engine.atoms()).nodes["nnap"]
    assert (node.retryable, node.skippable, node.ignore_error, node.optional) == (False, False, True, True)
    assert node.stage == "warm up"
    assert (node.auto_retry.times, node.auto_retry.interval) == (3, 5)
    assert (node.timeout.seconds, node.timeout.action) == (30, "fail_and_skip")


def test_constants_become_variables():
    tree = Tree()
    tree.constant("version", "1.2", validation="^\\d+\\.\\d+$", desc="the release")
    tree.constant("token", "ciphertext", "password")
    tree.constant("replicas", "3", "int", show_type="hide")
    tree.constant("region", {"default": "sh", "items": []}, "select", is_meta=True)
    tree.constant("servers", "10.0.0.5\n10.0.0.6", "textarea")
    tree.constant("derived", "${version}-final")
    tree.script("nrun", "echo $version", "${servers}")
    tree.chain(tree.start_id, "nrun", tree.end_id)
    tree.outputs = ["${version}"]
    [flow] = translate(tree.build(), "constants").flows
    variables = {variable["name"]: variable for variable in flow["variables"]}
    assert variables["version"] == {
        "name": "version",
        "type": "string",
        "default": "1.2",
        "show": True,
        "changeable": True,
        "validation": "^\\d+\\.\\d+$",
        "description": "the release",
    }
    # A password's value never comes along; a hidden constant is not asked for.
    assert variables["token"]["type"] == "secret" and "default" not in variables["token"]
    assert (variables["replicas"]["type"], variables["replicas"]["default"]) == ("number", 3)
    assert not variables["replicas"]["show"] and not variables["replicas"]["changeable"]
    assert variables["region"]["default"] == "sh"
    # A constant a node targets becomes a host list, its IPs hosts by address.
    assert variables["servers"]["type"] == "host_list"
    assert variables["servers"]["default"] == {"hosts": [{"address": "10.0.0.5"}, {"address": "10.0.0.6"}]}
    assert "default" not in variables["derived"]
    assert flow["outputs"] == ["version"]
    assert flow["nodes"][1]["inputs"]["targets"] == "${servers}"
    parse(resolved(flow), engine.atoms())


def test_components_map_to_atoms_and_their_inputs():
    tree = Tree()
    tree.constant("url", "http://127.0.0.1:9/hook")
    tree.component(
        "nlib",
        "job_fast_execute_script",
        {
            "job_script_source": "general",
            "job_script_list_general": "1001",
            "job_ip_list": "10.0.0.5",
            "job_script_param": "--mode 'fast run'",
            "job_account": "deploy",
        },
    )
    tree.component(
        "npush",
        "job_fast_push_file",
        {
            "job_source_files": [{"ip": "10.0.0.9", "files": "/srv/a.tar\n/srv/b.tar", "account": "root"}],
            "job_ip_list": "10.0.0.5,10.0.0.6",
            "job_account": "deploy",
            "job_target_path": "/opt/in",
            "job_timeout": "120",
            "download_speed_limit": "2",
        },
    )
    tree.component(
        "nplan",
        "job_execute_task",
        {
            "job_task_id": 42,
            "job_global_var": [
                {"category": 1, "name": "ver", "value": "${url}"},
                {"category": 3, "name": "servers", "value": "10.0.0.5"},
            ],
        },
    )
    tree.component(
        "ncall",
        "bk_http_request",
        {
            "bk_http_request_method": "post",
            "bk_http_request_url": "${url}",
            "bk_http_request_body": '{"a": 1}',
            "bk_http_request_header": [{"name": "X-Ticket", "value": "T-1"}],
            "bk_http_timeout": 300,
            "bk_http_success_exp": "",
        },
    )
    tree.component("nask", "pause_node", {"description": "go on with ${url}?"})
    tree.sleep("nuntil", "2026-12-01 10:00:00")
    tree.chain(tree.start_id, "nlib", "npush", "nplan", "ncall", "nask", "nuntil", tree.end_id)
    tree.output_of("job", "nlib", "job_inst_id")
    tree.output_of("code", "ncall", "status_code")
    [flow] = translate(tree.build(), "components").flows
    nodes = {node["id"]: node for node in flow["nodes"]}
    assert nodes["nlib"]["atom"] == "script"
    assert nodes["nlib"]["inputs"]["script"] == {"version_id": {"id": 1001}}
    assert nodes["nlib"]["inputs"]["params"] == ["--mode", "fast run"]
    assert nodes["nlib"]["inputs"]["account_id"] == "deploy"
    assert nodes["nlib"]["outputs"] == {"job": "job_id"}
    push = nodes["npush"]["inputs"]
    assert nodes["npush"]["atom"] == "file_transfer"
    assert push["sources"] == [
        {"path": "/srv/a.tar", "source_hosts": {"hosts": [{"address": "10.0.0.9"}]}, "account_id": "root"},
        {"path": "/srv/b.tar", "source_hosts": {"hosts": [{"address": "10.0.0.9"}]}, "account_id": "root"},
    ]
    assert (push["target_path"], push["timeout"], push["speed_limit"], push["mode"]) == (
        "/opt/in",
        120,
        2048,
        "force",
    )
    assert nodes["nplan"]["inputs"] == {
        "name": "nplan",
        "plan_id": {"id": 42},
        "variables": {"ver": "${url}", "servers": {"hosts": [{"address": "10.0.0.5"}]}},
    }
    call = nodes["ncall"]["inputs"]
    assert nodes["ncall"]["atom"] == "http" and nodes["ncall"]["outputs"] == {"code": "status_code"}
    assert (call["method"], call["url"], call["body"], call["timeout"]) == ("POST", "${url}", '{"a": 1}', 60)
    assert call["headers"] == {"X-Ticket": "T-1", "Content-Type": "application/json"}
    assert nodes["nask"] == {**nodes["nask"], "atom": "approval", "inputs": {"message": "go on with ${url}?"}}
    assert nodes["nuntil"]["inputs"] == {"until": "2026-12-01T10:00:00Z"}
    parse(resolved(flow), engine.atoms())


@pytest.mark.parametrize(
    "code, data, key",
    [
        ("sleep_timer", {"bk_timing": "${int(wait) * 60}"}, "bk_timing"),
        ("sleep_timer", {"bk_timing": "soon"}, "bk_timing"),
        ("pause_node", {"description": "${', '.join(hosts)}"}, "description"),
        (
            "job_fast_execute_script",
            {
                "job_script_source": "manual",
                "job_script_type": "2",
                "job_content": "dir",
                "job_ip_list": "10.0.0.5",
            },
            "job_script_type",
        ),
        (
            "job_fast_execute_script",
            {
                "job_script_source": "manual",
                "job_script_type": "1",
                "job_content": "echo",
                "job_ip_list": "10.0.0.5",
                "job_script_param": "${version}",
            },
            "job_script_param",
        ),
        (
            "job_fast_execute_script",
            {
                "job_script_source": "manual",
                "job_script_type": "4",
                "job_content": "print('${version}')",
                "job_ip_list": "1.2.3.4",
            },
            "job_content",
        ),
        (
            "job_fast_execute_script",
            {"job_script_source": "manual", "job_script_type": "1", "job_content": "echo", "job_ip_list": ""},
            "job_ip_list",
        ),
        (
            "job_fast_execute_script",
            {"job_script_source": "public", "job_script_list_public": "latest", "job_ip_list": "10.0.0.5"},
            "job_script_list_public",
        ),
        ("job_execute_task", {"job_task_id": "my plan", "job_global_var": []}, "job_task_id"),
        (
            "bk_http_request",
            {"bk_http_request_url": "http://x", "bk_http_success_exp": "resp.result == True"},
            "bk_http_success_exp",
        ),
    ],
)
def test_inputs_that_do_not_translate_are_refused_naming_the_field(code, data, key):
    tree = Tree()
    tree.constant("version", "1")
    tree.component("nbad", code, data)
    tree.chain(tree.start_id, "nbad", tree.end_id)
    errors = errors_of(tree.build())
    path = f"activities.nbad.component.data.{key}.value"
    assert set(errors) == {path}, errors
    assert errors[path].startswith("node 'nbad'")


def test_an_output_without_counterpart_is_refused_naming_the_constant():
    tree = Tree()
    tree.sleep("nnap", "0")
    tree.chain(tree.start_id, "nnap", tree.end_id)
    tree.output_of("_result", "nnap", "_result")
    errors = errors_of(tree.build())
    assert list(errors) == ["constants.${_result}.source_info.nnap"], errors
    assert "'_result'" in errors["constants.${_result}.source_info.nnap"]


@pytest.mark.parametrize(
    "change, path",
    [
        (
            lambda tree: tree["activities"].update({"../../etc": tree["activities"].pop("nnap")}),
            "activities.../../etc",
        ),
        (lambda tree: tree["constants"].update({"${a;rm -rf /}": {"value": "x"}}), "constants.${a;rm -rf /}"),
        (
            lambda tree: tree["constants"].update({"{{ lookup('pipe','id') }}": {"value": "x"}}),
            "constants.{{ lookup('pipe','id') }}",
        ),
        (
            lambda tree: tree["gateways"].update({"nodd": {"type": "SubCanvas", "id": "nodd"}}),
            "gateways.nodd.type",
        ),
        (lambda tree: tree.pop("flows"), "flows"),
    ],
)
def test_ids_and_keys_that_are_not_names_are_refused(change, path):
    tree = Tree()
    tree.sleep("nnap", "0")
    tree.chain(tree.start_id, "nnap", tree.end_id)
    built = tree.build()
    change(built)
    assert path in errors_of(built)


def test_a_tree_needs_a_name_which_a_create_template_body_carries():
    tree = release_tree().build()
    assert errors_of(tree, None) == {"name": "a bk-sops pipeline tree carries no name: give one (?name=)"}
    [flow] = translate({"name": "from body", "pipeline_tree": tree, "timeout": 30}).flows
    assert (flow["name"], flow["timeout"]) == ("from body", 1800)
    assert "pipeline_tree.activities.nprod.component.code" in errors_of(
        {
            "name": "x",
            "pipeline_tree": {
                **tree,
                "activities": {
                    **tree["activities"],
                    "nprod": {**tree["activities"]["nprod"], "component": {"code": "nope", "data": {}}},
                },
            },
        }
    )


def test_a_dat_export_decodes_and_its_subprocesses_come_first():
    data = decode_dat(dat_file(child_and_parent()).decode())
    translated = translate(data)
    child, parent = translated.flows
    assert (child["name"], parent["name"]) == ("child", "parent")
    assert child["timeout"] == 1200 and child["description"] == "child, from bk-sops"
    [sub] = [node for node in parent["nodes"] if node["id"] == "nsub"]
    assert sub["type"] == "subflow" and sub["ignore_error"] is True
    assert sub["inputs"] == {"flow_id": "child", "values": {"pause": "${wait}"}}
    assert sub["outputs"] == {"waited": "pause"}
    assert (
        translated.origins["flows.1.nodes.1"]
        == "template_data.pipeline_template_data.template.tparent.tree.activities.nsub"
    )
    assert translate(export_data(child_and_parent())).flows == translated.flows


def test_a_dat_export_that_misses_a_subprocess_or_runs_itself_is_refused():
    templates = child_and_parent()
    templates["tparent"][1]["activities"]["nsub"]["template_id"] = "tgone"
    errors = errors_of(export_data(templates))
    assert list(errors) == ["pipeline_template_data.template.tparent.tree.activities.nsub.template_id"], (
        errors
    )
    templates["tparent"][1]["activities"]["nsub"]["template_id"] = "tparent"
    assert "runs itself" in " ".join(errors_of(export_data(templates)).values())


@pytest.mark.parametrize(
    "text",
    [
        "not base64 at all!",
        base64.b64encode(b"[1, 2]").decode(),
        base64.b64encode(json.dumps({"x": 1}).encode()).decode(),
    ],
)
def test_what_is_not_a_dat_export_is_said_so(text):
    with pytest.raises(BkSopsInvalid) as caught:
        decode_dat(text)
    assert caught.value.errors[0].path == "document"
    assert "not a bk-sops .dat export" in caught.value.errors[0].message


def test_is_bk_sops_tells_the_shapes_apart():
    tree = release_tree().build()
    assert bk_sops.is_bk_sops(tree) and bk_sops.is_bk_sops({"pipeline_tree": tree})
    assert bk_sops.is_bk_sops({"template_data": {}}) and bk_sops.is_bk_sops(export_data(child_and_parent()))
    assert not bk_sops.is_bk_sops({"format": "opsflow-flows/1", "flows": []})


def malformed(change) -> dict:
    tree = release_tree()
    built = tree.build()
    change(built)
    return built


@pytest.mark.parametrize(
    "document",
    [
        malformed(lambda tree: tree["activities"]["nnap"].update(component="sleep_timer")),
        malformed(lambda tree: tree["activities"]["nnap"]["component"].update(data=[1])),
        malformed(
            lambda tree: tree["activities"]["nnap"].update(timeout_config={"enable": True, "action": {}})
        ),
        malformed(lambda tree: tree["constants"].update({"${odd}": {"value": {"a": 1}}})),
        malformed(lambda tree: tree["flows"].update(lbad=["nstart", "nend"])),
        malformed(lambda tree: tree["gateways"]["nwhich"].update(conditions=[], default_condition="x")),
        malformed(lambda tree: tree.update(start_event={"id": None})),
        malformed(lambda tree: tree.update(outputs=[{"x": 1}])),
        {"activities": 1, "start_event": 2},
        {"pipeline_tree": {}, "name": "x"},
        {"template_data": {"template": [], "pipeline_template_data": {"template": {"t": []}}}},
        {"pipeline_template_data": {"template": {"t": {"name": 5, "tree": {"activities": {}}}}}},
        [],
    ],
)
def test_malformed_documents_are_refused_with_their_problems(document):
    with pytest.raises(BkSopsInvalid) as caught:
        translate(document, "x")
    assert caught.value.errors and all(error.path for error in caught.value.errors)
