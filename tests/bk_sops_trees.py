"""Pipeline trees in bk-sops's format, written by the tests themselves: a small builder, so that each test
says what its tree holds and the builder fills in what bk-sops would (incoming and outgoing lists, the
{hook, value} form of component inputs, the options every node carries)."""

from __future__ import annotations

import base64
import json
from itertools import pairwise
from typing import Any


class Tree:
    def __init__(self, start: str = "nstart", end: str = "nend") -> None:
        self.start_id, self.end_id = start, end
        self.activities: dict[str, dict] = {}
        self.gateways: dict[str, dict] = {}
        self.flows: dict[str, dict] = {}
        self.constants: dict[str, dict] = {}
        self.outputs: list[str] = []

    def component(self, node_id: str, code: str, data: dict[str, Any], name: str = "", **options: Any) -> str:
        self.activities[node_id] = {
            "id": node_id,
            "type": "ServiceActivity",
            "name": name or node_id,
            "component": {
                "code": code,
                "data": {key: {"hook": False, "value": value} for key, value in data.items()},
                "version": "legacy",
            },
            "error_ignorable": False,
            "retryable": True,
            "skippable": True,
            "optional": False,
            "stage_name": "",
            "labels": [],
            "loop": None,
            "auto_retry": {"enable": False, "interval": 0, "times": 1},
            "timeout_config": {"enable": False, "seconds": 10, "action": "forced_fail"},
            **options,
        }
        return node_id

    def sleep(self, node_id: str, seconds: Any, **options: Any) -> str:
        return self.component(node_id, "sleep_timer", {"bk_timing": seconds, "force_check": True}, **options)

    def script(self, node_id: str, content: str, ips: str, account: str = "", **options: Any) -> str:
        data = {
            "job_script_source": "manual",
            "job_script_type": "1",
            "job_content": content,
            "job_script_param": "",
            "job_ip_list": ips,
            "job_account": account,
            "job_script_timeout": "60",
        }
        return self.component(node_id, "job_fast_execute_script", data, **options)

    def subprocess(
        self, node_id: str, template_id: str, constants: dict[str, Any] | None = None, **options
    ) -> str:
        self.activities[node_id] = {
            "id": node_id,
            "type": "SubProcess",
            "name": node_id,
            "template_id": template_id,
            "version": "v1",
            "constants": {key: {"value": value} for key, value in (constants or {}).items()},
            "hooked_constants": [],
            "error_ignorable": False,
            "retryable": True,
            "isSkipped": True,
            "optional": False,
            "stage_name": "",
            "labels": [],
            "loop": None,
            **options,
        }
        return node_id

    def gateway(self, node_id: str, kind: str, converge: str | None = None, name: str = "") -> str:
        gateway: dict[str, Any] = {"id": node_id, "type": kind, "name": name, "labels": []}
        if converge:
            gateway["converge_gateway_id"] = converge
        if kind in ("ExclusiveGateway", "ConditionalParallelGateway"):
            gateway["conditions"] = {}
        self.gateways[node_id] = gateway
        return node_id

    def line(self, source: str, target: str, condition: str | None = None, default: bool = False) -> str:
        flow_id = f"l{len(self.flows) + 1:02d}{source[-4:]}{target[-4:]}"
        self.flows[flow_id] = {"id": flow_id, "source": source, "target": target, "is_default": False}
        gateway = self.gateways.get(source)
        if condition is not None:
            gateway["conditions"][flow_id] = {
                "evaluate": condition,
                "name": condition,
                "tag": f"branch_{flow_id}",
            }
        if default:
            gateway["default_condition"] = {"flow_id": flow_id, "name": "default", "tag": f"branch_{flow_id}"}
        return flow_id

    def chain(self, *node_ids: str) -> None:
        for source, target in pairwise(node_ids):
            self.line(source, target)

    def constant(self, key: str, value: Any = "", custom_type: str = "input", **extra: Any) -> None:
        self.constants[f"${{{key}}}"] = {
            "key": f"${{{key}}}",
            "name": key,
            "desc": "",
            "custom_type": custom_type,
            "source_tag": f"{custom_type}.{custom_type}" if custom_type else "",
            "source_type": "custom",
            "source_info": {},
            "show_type": "show",
            "validation": "",
            "value": value,
            "index": len(self.constants),
            "version": "legacy",
            **extra,
        }

    def output_of(self, key: str, node_id: str, output: str) -> None:
        """A constant that takes a node's output."""
        self.constant(key, "", "", source_type="component_outputs", source_info={node_id: [output]})

    def build(self) -> dict[str, Any]:
        nodes = {
            self.start_id: {"id": self.start_id, "type": "EmptyStartEvent", "name": "", "labels": []},
            self.end_id: {"id": self.end_id, "type": "EmptyEndEvent", "name": "", "labels": []},
            **self.activities,
            **self.gateways,
        }
        incoming: dict[str, list[str]] = {node_id: [] for node_id in nodes}
        outgoing: dict[str, list[str]] = {node_id: [] for node_id in nodes}
        for flow_id, flow in self.flows.items():
            outgoing[flow["source"]].append(flow_id)
            incoming[flow["target"]].append(flow_id)
        for node_id, node in nodes.items():
            many = node["type"].endswith("Gateway") and node["type"] != "ConvergeGateway"
            node["outgoing"] = outgoing[node_id] if many else (outgoing[node_id] or [""])[0]
            node["incoming"] = incoming[node_id]
        tree = {
            "start_event": nodes[self.start_id],
            "end_event": nodes[self.end_id],
            "activities": self.activities,
            "gateways": self.gateways,
            "flows": self.flows,
            "constants": self.constants,
            "outputs": self.outputs,
            "line": [],
            "location": [],
        }
        return json.loads(json.dumps(tree))


def export_data(templates: dict[str, tuple[str, dict]], timeout_minutes: int = 20) -> dict[str, Any]:
    """An export's data: {pipeline template id: (name, tree)} as bk-sops writes them in a .dat file."""
    task_templates = {
        str(number): {
            "id": number,
            "category": "OpsTools",
            "pipeline_template_id": template_id,
            "pipeline_template_str_id": template_id,
            "time_out": timeout_minutes,
            "project_id": 1,
            "is_deleted": False,
        }
        for number, template_id in enumerate(templates, start=1)
    }
    pipelines = {
        template_id: {
            "template_id": template_id,
            "name": name,
            "description": f"{name}, from bk-sops",
            "creator": "someone",
            "create_time": "2026-01-02 03:04:05 UTC",
            "edit_time": "2026-01-02 03:04:05 UTC",
            "editor": "",
            "is_deleted": False,
            "tree": tree,
        }
        for template_id, (name, tree) in templates.items()
    }
    return {
        "template": task_templates,
        "pipeline_template_data": {"template": pipelines, "refs": {}},
        "exporter_version": 1,
        "template_source": "project",
    }


def dat_file(templates: dict[str, tuple[str, dict]]) -> bytes:
    """A .dat export file: base64 of JSON {template_data, digest}."""
    data = {"template_data": export_data(templates), "digest": "0" * 32}
    return base64.b64encode(json.dumps(data, sort_keys=True).encode())


def release_tree(ips: str = "127.0.0.1", account: str = "", other: str = "nother") -> Tree:
    """start -> parallel (a sleep; a script on `ips`) -> converge -> exclusive: a condition whose string
    holds CEL, then env and count (a script), else the default (a sleep named `other`) -> a converge of
    those branches -> end."""
    tree = Tree()
    tree.constant("env", "prod")
    tree.constant("count", "5", "int")
    tree.constant("_who", "ops")
    tree.gateway("nfork", "ParallelGateway", converge="njoin")
    tree.gateway("njoin", "ConvergeGateway")
    tree.sleep("nnap", "0")
    tree.script("nhello", 'echo "hello ${_who} from $env"', ips, account=account)
    tree.gateway("nwhich", "ExclusiveGateway", name="which env")
    tree.gateway("nmeet", "ConvergeGateway")
    tree.sleep("nodd", "0", name="never taken")
    tree.script("nprod", 'echo "prod: $count"', ips, account=account, name="prod branch")
    tree.sleep("nother", "${count}", name=other)
    tree.line(tree.start_id, "nfork")
    tree.line("nfork", "nnap")
    tree.line("nfork", "nhello")
    tree.line("nnap", "njoin")
    tree.line("nhello", "njoin")
    tree.line("njoin", "nwhich")
    tree.line("nwhich", "nodd", condition="${env} == 'x\" || true || \"'")
    tree.line("nwhich", "nprod", condition='${env} == "prod" and ${count} > 3')
    tree.line("nwhich", "nother", default=True)
    tree.line("nodd", "nmeet")
    tree.line("nprod", "nmeet")
    tree.line("nother", "nmeet")
    tree.line("nmeet", tree.end_id)
    return tree


def child_and_parent(child_name: str = "child", parent_name: str = "parent") -> dict[str, tuple[str, dict]]:
    """Two templates of an export: a child that sleeps ${pause} seconds and outputs it, and a parent that
    runs it as a subprocess with pause = its own ${wait}, and outputs what the child did as ${waited}."""
    child = Tree(start="cstart", end="cend")
    child.constant("pause", "0")
    child.constant("_result", "")
    child.sleep("cnap", "${pause}")
    child.chain(child.start_id, "cnap", child.end_id)
    child.outputs = ["${pause}"]
    parent = Tree()
    parent.constant("wait", "0")
    parent.subprocess("nsub", "tchild", {"${pause}": "${wait}"}, error_ignorable=True)
    parent.chain(parent.start_id, "nsub", parent.end_id)
    parent.output_of("waited", "nsub", "${pause}")
    parent.outputs = ["${waited}"]
    return {"tparent": (parent_name, parent.build()), "tchild": (child_name, child.build())}
