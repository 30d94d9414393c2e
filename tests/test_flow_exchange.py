"""Flows exported and imported through the API (both databases, real workers and engine): a round trip
into another project, every missing reference at once, taken names, every form of body, and flows
exported from bk-sops (a pipeline tree, a .dat export) imported and run."""

from __future__ import annotations

import base64
import io
import json
import uuid
from typing import Any

import pytest
import yaml

from tests.bk_sops_trees import child_and_parent, dat_file, release_tree
from tests.conftest import IMPORT_FORMS, add_local_host, sent_as
from tests.test_flows import chain, create_task, ended, nodes_of, wait_task

FORMAT = "opsflow-flows/1"
HOSTILE = "{{ lookup('pipe', 'id') }} $(rm -rf /) '; drop table flow; --"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def nap(node_id: str, **extra: Any) -> dict:
    return {"id": node_id, "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}, **extra}


def export(service, pid: int, flow_id: int, **query: Any) -> Any:
    return service.api("GET", f"/projects/{pid}/flows/{flow_id}/export", 200, query_string=query)


def import_flows(service, pid: int, expect: int, **sent: Any) -> Any:
    return service.api("POST", f"/projects/{pid}/flows/import", expect, **sent).get_json()


def references(service, project: dict, script_text: str) -> dict[str, Any]:
    """What the exported flow refers to, made in `project` under the same names."""
    pid = project["id"]
    host = add_local_host(service, project, "web-1")
    group = service.post(f"/projects/{pid}/groups", {"name": "web", "hosts": [host["id"]]}, 201).get_json()
    dynamic = service.post(f"/projects/{pid}/dynamic-groups", {"name": "all-web"}, 201).get_json()
    account = service.post(
        f"/projects/{pid}/accounts", {"name": "deploy", "username": "deploy", "password": "pw-1"}, 201
    ).get_json()
    script = service.post(f"/projects/{pid}/scripts", {"name": "greet", "language": "bash"}, 201).get_json()
    version = service.post(
        f"/projects/{pid}/scripts/{script['id']}/versions", {"version": "1", "content": script_text}, 201
    ).get_json()
    service.post(f"/projects/{pid}/scripts/{script['id']}/versions/{version['id']}/publish", expect=200)
    stored = service.api("POST", f"/projects/{pid}/files?name=app.tar", 201, data=b"payload").get_json()
    template = service.post(
        f"/projects/{pid}/job-templates", {"name": "gate", "steps": [{"name": "ok?", "type": "manual"}]}, 201
    ).get_json()
    plan = service.post(
        f"/projects/{pid}/job-plans", {"name": "nightly", "template_id": template["id"]}, 201
    ).get_json()
    return {
        "host": host,
        "group": group,
        "dynamic": dynamic,
        "account": account,
        "script": script,
        "version": version,
        "file": stored,
        "plan": plan,
    }


def release_flows(service, project: dict, made: dict[str, Any]) -> tuple[dict, dict]:
    """A child flow and a parent that runs it (pinned) with a node of each atom that refers to something."""
    pid = project["id"]
    child = service.post(
        f"/projects/{pid}/flows",
        {
            "name": unique("child"),
            **chain(
                {
                    "id": "greet",
                    "type": "activity",
                    "atom": "script",
                    "inputs": {
                        "script": {"version_id": made["version"]["id"]},
                        "targets": {
                            "groups": [made["group"]["id"]],
                            "dynamic_groups": [made["dynamic"]["id"]],
                        },
                        "account_id": made["account"]["id"],
                    },
                },
                variables=[
                    {"name": "servers", "type": "host_list", "default": {"hosts": [made["host"]["id"]]}},
                    {"name": "key", "type": "secret", "default": "k-secret-1"},
                ],
            ),
        },
        201,
    ).get_json()
    parent = service.post(
        f"/projects/{pid}/flows",
        {
            "name": f"release {HOSTILE}",
            "description": HOSTILE,
            "category": "publish",
            "timeout": 600,
            "variables": [{"name": "note", "type": "string", "default": HOSTILE}],
            "stages": [
                {
                    "name": "ship",
                    "mode": "parallel",
                    "nodes": [
                        {
                            "id": "push",
                            "atom": "file_transfer",
                            "inputs": {
                                "sources": [
                                    {"file_id": made["file"]["id"]},
                                    {
                                        "path": "/etc/hostname",
                                        "source_hosts": {"hosts": [made["host"]["id"]]},
                                    },
                                ],
                                "target_path": "/tmp/in",
                                "targets": {"hosts": [made["host"]["id"]]},
                            },
                        },
                        {"id": "plan", "atom": "job_plan", "inputs": {"plan_id": made["plan"]["id"]}},
                    ],
                },
                {
                    "name": "after",
                    "nodes": [
                        {"id": "sub", "type": "subflow", "inputs": {"flow_id": child["id"], "version": 1}},
                        {
                            "id": "call",
                            "atom": "http",
                            "inputs": {
                                "url": "http://127.0.0.1:9/hook",
                                "headers": {"Authorization": "Bearer literal-token", "X-Note": "${note}"},
                                "body": {"hosts": [1, 2], "note": "${note}"},
                            },
                        },
                    ],
                },
            ],
        },
        201,
    ).get_json()
    return child, parent


def test_an_export_imports_into_another_project_and_reads_back_equal(service, project):
    pid = project["id"]
    made = references(service, project, "echo greet")
    child, parent = release_flows(service, project, made)
    # A later version of the child does not change what the parent runs: version 1.
    service.api("PATCH", f"/projects/{pid}/flows/{child['id']}", 200, json={"outputs": []})
    service.api("PATCH", f"/projects/{pid}/flows/{child['id']}", 200, json={"variables": []})
    exported = export(service, pid, parent["id"])
    assert "attachment" in exported.headers["Content-Disposition"]
    document = exported.get_json()
    assert document["format"] == FORMAT
    assert [flow["name"] for flow in document["flows"]] == [child["name"], parent["name"]]
    first, second = document["flows"]
    assert first["nodes"][1]["inputs"] == {
        "script": {"version_id": {"script": "greet", "version": "1"}},
        "targets": {"groups": ["web"], "dynamic_groups": ["all-web"]},
        "account_id": "deploy",
    }
    assert first["variables"][0]["default"] == {"hosts": ["web-1"]}
    assert first["variables"][1] == {"name": "key", "type": "secret", "default": None}
    ship, after = second["stages"]
    assert ship["nodes"][0]["inputs"]["sources"] == [
        {"file_id": "app.tar"},
        {"path": "/etc/hostname", "source_hosts": {"hosts": ["web-1"]}},
    ]
    assert ship["nodes"][1]["inputs"] == {"plan_id": "nightly"}
    assert after["nodes"][0]["inputs"] == {"flow_id": child["name"], "version": 1}
    call = after["nodes"][1]["inputs"]
    # A literal credential stays here: the header reads a secret asked for when a task is created.
    assert call["headers"] == {"Authorization": "${secret_call_authorization}", "X-Note": "${note}"}
    assert call["body"] == {"hosts": [1, 2], "note": "${note}"}
    assert second["variables"][-1]["name"] == "secret_call_authorization"
    assert second["variables"][-1]["required"] is True and second["variables"][-1]["default"] is None
    assert "k-secret-1" not in exported.get_data(as_text=True)
    assert "literal-token" not in exported.get_data(as_text=True)
    as_yaml = export(service, pid, parent["id"], format="yaml")
    assert as_yaml.mimetype == "application/yaml" and yaml.safe_load(as_yaml.get_data()) == document
    older = export(service, pid, child["id"], version=1).get_json()
    assert older["flows"][0]["variables"][0]["name"] == "servers"
    service.api("GET", f"/projects/{pid}/flows/{child['id']}/export", 404, query_string={"version": 9})

    other = service.post("/projects", {"name": unique("other")}, 201).get_json()
    oid = other["id"]
    missing = import_flows(service, oid, 422, json=document)["error"]
    assert missing["field"] == "flows.0.variables.0.default.hosts.0", missing
    assert {problem["path"] for problem in missing["details"]["errors"]} >= {
        "flows.0.nodes.1.inputs.script.version_id",
        "flows.0.nodes.1.inputs.account_id",
        "flows.1.stages.0.nodes.0.inputs.sources.0.file_id",
        "flows.1.stages.0.nodes.1.inputs.plan_id",
    }, missing
    assert service.get(f"/projects/{oid}/flows") == []
    references(service, other, "echo other greet")
    imported = import_flows(
        service, oid, 201, data=as_yaml.get_data(), headers={"Content-Type": "application/yaml"}
    )["flows"]
    assert [flow["name"] for flow in imported] == [child["name"], parent["name"]]
    assert [flow["version"] for flow in imported] == [1, 1]
    again = export(service, oid, imported[1]["id"]).get_json()
    # The imported copy exports as the original did: the header's secret is a variable of it now.
    assert again == document, json.dumps([again, document])
    taken = import_flows(service, oid, 409, json=document)["error"]
    assert taken["field"] == "flows.0.name", taken
    assert len(service.get(f"/projects/{oid}/flows")) == 2


def test_an_import_reports_every_missing_reference_at_once(service, project):
    pid = project["id"]
    inner, outer = unique("inner"), unique("outer")
    document = {
        "format": FORMAT,
        "flows": [
            {
                "name": inner,
                **chain(
                    {
                        "id": "run",
                        "type": "activity",
                        "atom": "script",
                        "inputs": {
                            "script": {"script_id": "nowhere"},
                            "targets": {"hosts": ["h1", "${servers}"], "groups": ["g1"]},
                            "account_id": "deploy",
                        },
                    },
                    variables=[{"name": "servers", "type": "host_list", "default": {"groups": ["web"]}}],
                ),
            },
            {
                "name": outer,
                **chain(
                    {"id": "plan", "type": "activity", "atom": "job_plan", "inputs": {"plan_id": "nightly"}},
                    {"id": "sub", "type": "subflow", "inputs": {"flow_id": inner}},
                    {"id": "lost", "type": "subflow", "inputs": {"flow_id": "no such flow"}},
                    {
                        "id": "ask",
                        "type": "activity",
                        "atom": "approval",
                        "inputs": {"message": "${_project.app}?"},
                    },
                ),
            },
        ],
    }
    error = import_flows(service, pid, 422, json=document)["error"]
    assert {problem["path"] for problem in error["details"]["errors"]} == {
        "flows.0.variables.0.default.groups.0",
        "flows.0.nodes.1.inputs.script.script_id",
        "flows.0.nodes.1.inputs.targets.hosts.0",
        "flows.0.nodes.1.inputs.targets.groups.0",
        "flows.0.nodes.1.inputs.account_id",
        "flows.1.nodes.1.inputs.plan_id",
        "flows.1.nodes.3.inputs.flow_id",
        "flows.1.nodes.4.inputs.message",
    }, error
    assert error["message"].startswith("8 references find nothing in this project"), error
    assert service.get(f"/projects/{pid}/flows") == []


@pytest.mark.parametrize("form", IMPORT_FORMS)
def test_a_flow_imports_in_every_form_an_inventory_does(service, project, form):
    pid = project["id"]
    name = unique("imported")
    document = {"format": FORMAT, "flows": [{"name": name, **chain(nap("nap"))}]}
    sent = sent_as(form, document)
    imported = import_flows(service, pid, 201, **sent)["flows"]
    assert [flow["name"] for flow in imported] == [name]
    assert [flow["name"] for flow in service.get(f"/projects/{pid}/flows")] == [name]


@pytest.mark.parametrize(
    "document, field",
    [
        ({"format": "opsflow-job-templates/1", "templates": []}, "format"),
        ({"format": FORMAT, "flows": []}, "flows"),
        ({"format": FORMAT, "flows": [{"nodes": []}]}, "flows.0.name"),
        ({"format": FORMAT, "flows": [{"name": "x", "owner": "me", "nodes": []}]}, "flows.0.owner"),
        (
            {"format": FORMAT, "flows": [{"name": "x", **chain(nap("a")), "category": "fun"}]},
            "flows.0.category",
        ),
        (
            {"format": FORMAT, "flows": [{"name": "x", **chain({**nap("a"), "inputs": {"seconds": -1}})}]},
            "flows.0.nodes.1.inputs.seconds",
        ),
        (
            {
                "format": FORMAT,
                "flows": [
                    {"name": "a", **chain({"id": "s", "type": "subflow", "inputs": {"flow_id": "b"}})},
                    {"name": "b", **chain(nap("n"))},
                ],
            },
            "flows.0.nodes.1.inputs.flow_id",
        ),
        (
            {"format": FORMAT, "flows": [{"name": "x", **chain(nap("a"))}, {"name": "x", **chain(nap("a"))}]},
            "flows.1.name",
        ),
        ([1, 2], "format"),
        ("just some words", "format"),
    ],
)
def test_bad_documents_are_refused_naming_the_field(service, project, document, field):
    error = import_flows(service, project["id"], 422, json=document)["error"]
    assert error["field"] == field, error
    assert service.get(f"/projects/{project['id']}/flows") == []


def test_a_flow_that_fails_its_checks_names_every_problem_under_its_place(service, project):
    pid = project["id"]
    good = {"name": unique("good"), **chain(nap("a"))}
    bad = {
        "name": unique("bad"),
        **chain({**nap("b"), "inputs": {"seconds": "x"}}, {"id": "gw", "type": "parallel"}),
    }
    error = import_flows(service, pid, 422, json={"format": FORMAT, "flows": [good, bad]})["error"]
    paths = {problem["path"] for problem in error["details"]["errors"]}
    assert "flows.1.nodes.1.inputs.seconds" in paths and all(path.startswith("flows.1.") for path in paths), (
        error
    )
    assert service.get(f"/projects/{pid}/flows") == []


def test_a_bk_sops_tree_with_parallel_and_exclusive_gateways_imports_and_runs(service, project):
    pid = project["id"]
    add_local_host(service, project, "controller")
    name = f"bk release {HOSTILE}"
    tree = release_tree(other=HOSTILE).build()
    [flow] = import_flows(service, pid, 201, json=tree, query_string={"name": name})["flows"]
    assert flow["name"] == name and flow["version"] == 1
    assert {node["id"] for node in flow["nodes"]} >= {"nfork", "njoin", "nwhich", "nprod"}
    assert "nmeet" not in {node["id"] for node in flow["nodes"]}

    task = wait_task(service, project, create_task(service, project, flow)["id"], ended)
    assert task["status"] == "success", json.dumps(task)
    nodes = nodes_of(task)
    assert {nodes[node]["status"] for node in ("nnap", "nhello", "njoin", "nprod")} == {"success"}
    assert nodes["nodd"]["status"] != "success" and nodes["nother"]["status"] != "success"
    [hello] = service.host_results(pid, nodes["nhello"]["job_instance_id"])
    assert hello["stdout"] == "hello ops from prod\n"
    [prod] = service.host_results(pid, nodes["nprod"]["job_instance_id"])
    assert prod["stdout"] == "prod: 5\n"

    task = create_task(service, project, flow, variables={"env": "test", "count": 1})
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success", json.dumps(task)
    assert nodes_of(task)["nother"]["status"] == "success"
    assert nodes_of(task)["nprod"]["status"] != "success"


def test_a_bk_sops_dat_export_imports_with_its_subprocess_and_runs(service, project):
    pid = project["id"]
    names = {"tchild": unique("bk child"), "tparent": unique("bk parent")}
    exported = dat_file(child_and_parent(names["tchild"], names["tparent"]))
    sent = {
        "data": {"file": (io.BytesIO(exported), "bk_sops_common_20260102.dat")},
        "content_type": "multipart/form-data",
    }
    imported = import_flows(service, pid, 201, **sent)["flows"]
    assert [flow["name"] for flow in imported] == [names["tchild"], names["tparent"]]
    assert imported[1]["timeout"] == 1200
    task = create_task(service, project, imported[1], variables={"wait": "1"})
    task = wait_task(service, project, task["id"], ended)
    assert task["status"] == "success", json.dumps(task)
    assert task["outputs"] == {"waited": "1"}
    # The same export as {format, content}, and as the body's text: its names are taken now.
    text = exported.decode()
    taken = import_flows(service, pid, 409, json={"format": "bk_sops", "content": text})["error"]
    assert taken["field"] == "template_data.pipeline_template_data.template.tchild.name", taken
    import_flows(service, pid, 409, data=text, headers={"Content-Type": "text/plain"})
    assert len(service.get(f"/projects/{pid}/flows")) == 2


def test_bk_sops_documents_that_do_not_import_name_the_place(service, project):
    pid = project["id"]
    tree = release_tree(other=HOSTILE)
    tree.component("nmove", "cc_transfer_host_module", {"cc_host_ip": "127.0.0.1"}, name="move hosts")
    tree.line("nnap", "nmove")
    unknown = import_flows(service, pid, 422, json=tree.build(), query_string={"name": "x"})["error"]
    assert unknown["field"] == "activities.nmove.component.code", unknown
    assert "'nmove' (move hosts)" in unknown["message"] and "cc_transfer_host_module" in unknown["message"]

    tree = release_tree(other=HOSTILE)
    flow_id = next(fid for fid, flow in tree.flows.items() if flow["target"] == "nprod")
    tree.gateways["nwhich"]["conditions"][flow_id]["evaluate"] = '${env.upper()} == "PROD"'
    complex_condition = import_flows(service, pid, 422, json=tree.build(), query_string={"name": "x"})[
        "error"
    ]
    assert complex_condition["field"] == f"gateways.nwhich.conditions.{flow_id}.evaluate", complex_condition
    assert "gateway 'nwhich' (which env)" in complex_condition["message"]

    # The tree translates, but the project has no host at 127.0.0.1, nor the account named: both said.
    tree = release_tree(other=HOSTILE)
    tree.activities["nhello"]["component"]["data"]["job_account"]["value"] = "root"
    missing = import_flows(service, pid, 422, json={"name": "x", "pipeline_tree": tree.build()})["error"]
    problems = {problem["path"]: problem["message"] for problem in missing["details"]["errors"]}
    nowhere = "there is no host with address '127.0.0.1' in this project"
    data = "pipeline_tree.activities.{}.component.data.{}.value"
    assert problems == {
        data.format("nhello", "job_ip_list"): nowhere,
        data.format("nhello", "job_account"): "there is no account named 'root' in this project",
        data.format("nprod", "job_ip_list"): nowhere,
    }, missing

    nameless = import_flows(service, pid, 422, json=release_tree(other=HOSTILE).build())["error"]
    assert nameless["field"] == "name"
    not_dat = import_flows(
        service, pid, 422, json={"format": "bk_sops", "content": base64.b64encode(b"{}").decode()}
    )
    assert not_dat["error"]["field"] == "document", not_dat
    assert service.get(f"/projects/{pid}/flows") == []


def test_an_export_holds_one_version_of_each_flow(service, project):
    pid = project["id"]
    child = service.post(
        f"/projects/{pid}/flows", {"name": unique("child"), **chain(nap("a"))}, 201
    ).get_json()
    service.api("PATCH", f"/projects/{pid}/flows/{child['id']}", 200, json=chain(nap("b")))
    subflows = [
        {"id": "pinned", "type": "subflow", "inputs": {"flow_id": child["id"], "version": 1}},
        {"id": "newest", "type": "subflow", "inputs": {"flow_id": child["id"]}},
    ]
    parent = service.post(
        f"/projects/{pid}/flows", {"name": unique("parent"), **chain(*subflows)}, 201
    ).get_json()
    error = service.api("GET", f"/projects/{pid}/flows/{parent['id']}/export", 409).get_json()["error"]
    assert error["field"] == "version" and "versions" not in error["message"], error
    assert "version 1 (nodes.1)" in error["message"] and "version 2 (nodes.2)" in error["message"], error
