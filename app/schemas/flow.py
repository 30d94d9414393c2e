"""Schemas of flows, their versions, project variables, flow tasks and their operations."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from marshmallow import Schema, ValidationError, fields, post_dump, validate, validates_schema

from app.config import INTEGER_MAX
from app.flows.graph import VariableKind
from app.models import FlowCategory
from app.schemas.fields import IDENTIFIER, Id, Rendered
from app.schemas.query import FilterArgs
from app.secrets import MASK
from app.status import FlowTaskStatus, NodeStatus

CATEGORIES = [str(category) for category in FlowCategory]
TASK_STATUSES = [str(status) for status in FlowTaskStatus]
NODE_STATUSES = [str(status) for status in NodeStatus]
FLOW_TIMEOUT_MAX = 30 * 86400
GRAPH_DESCRIPTION = "checked when saved; every problem is reported at once with its path (details.errors)"


def shown_document(document: dict[str, Any], secret_defaults: dict[str, Any]) -> dict[str, Any]:
    """A version's document as shown: a secret's default is ****** when it has one."""
    variables = [
        {**definition, "default": MASK if definition.get("name") in secret_defaults else None}
        if definition.get("type") == VariableKind.SECRET
        else definition
        for definition in document.get("variables", [])
    ]
    return {**document, "variables": variables}


class FlowSchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=validate.Length(min=1, max=255))
    description = fields.String(validate=validate.Length(max=4096))
    category = fields.String(load_default="other", validate=validate.OneOf(CATEGORIES))
    timeout = fields.Integer(
        strict=True,
        allow_none=True,
        validate=validate.Range(1, FLOW_TIMEOUT_MAX),
        metadata={"description": "seconds a task may run in all"},
    )
    variables = fields.List(
        fields.Raw(),
        metadata={
            "description": "{name, type (string, number, boolean, secret, host_list, array), default, "
            "required, changeable, show, validation, description}"
        },
    )
    nodes = fields.List(fields.Raw(), metadata={"description": f"the graph's nodes; {GRAPH_DESCRIPTION}"})
    edges = fields.List(fields.Raw(), metadata={"description": "{from, to, condition (CEL) | default}"})
    stages = fields.List(
        fields.Raw(),
        metadata={"description": "instead of nodes and edges: [{name, mode: serial|parallel, nodes}]"},
    )
    outputs = fields.List(fields.String(), metadata={"description": "variables a task shows as its result"})
    version = fields.Integer(dump_only=True, metadata={"description": "raised by every change of the graph"})
    created_by = fields.String(dump_only=True)
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)

    @validates_schema
    def one_form(self, data, partial=None, **kwargs) -> None:
        if "stages" in data and ("nodes" in data or "edges" in data):
            raise ValidationError("give stages or nodes and edges, not both", "stages")
        if not partial and "stages" not in data and "nodes" not in data:
            raise ValidationError("give nodes and edges, or stages", "nodes")

    @post_dump(pass_original=True)
    def with_graph(self, data: dict, flow, **kwargs) -> dict:
        version = flow.current
        return {**data, **shown_document(version.document, version.secret_default_values)}


class FlowVersionSchema(Schema):
    flow_id = fields.Integer()
    version = fields.Integer()
    created_by = fields.String()
    created_at = fields.DateTime()

    @post_dump(pass_original=True)
    def with_graph(self, data: dict, version, **kwargs) -> dict:
        return {**data, **shown_document(version.document, version.secret_default_values)}


class FlowListArgs(FilterArgs):
    category = fields.String(validate=validate.OneOf(CATEGORIES))
    name = fields.String(validate=validate.Length(min=1), metadata={"description": "part of the name"})


class ProjectVariableSchema(Schema):
    id = fields.Integer(dump_only=True)
    project_id = fields.Integer(dump_only=True)
    name = fields.String(required=True, validate=[validate.Length(min=1, max=64), IDENTIFIER])
    value = fields.Raw(required=True, metadata={"description": "any JSON value; flows read ${_project.NAME}"})
    description = fields.String(validate=validate.Length(max=4096))
    created_at = fields.DateTime(dump_only=True)
    updated_at = fields.DateTime(dump_only=True)


class FlowTaskCreateSchema(Schema):
    name = fields.String(validate=validate.Length(min=1, max=255))
    variables = fields.Dict(
        keys=fields.String(), load_default=dict, metadata={"description": "values by name"}
    )
    skip_nodes = fields.List(
        fields.String(), load_default=list, metadata={"description": "optional nodes to leave out"}
    )
    start = fields.Boolean(load_default=True, metadata={"description": "false: created, started later"})
    callback_url = fields.Url(
        schemes={"http", "https"},
        require_tld=False,
        validate=validate.Length(max=2048),
        metadata={"description": "POSTed the task's state when it ends"},
    )
    idempotency_key = fields.String(validate=validate.Length(min=1, max=255))


class NodeAttemptSchema(Schema):
    number = fields.Integer()
    run = fields.Integer(metadata={"description": "which run of the node (a loop runs it again)"})
    status = fields.String(metadata={"enum": NODE_STATUSES})
    inputs = fields.Raw(metadata={"description": "as rendered, secrets masked"})
    outputs = fields.Raw()
    error = fields.String()
    job_instance_id = fields.Integer()
    child_task_id = fields.Integer()
    started_at = fields.DateTime()
    ended_at = fields.DateTime()


class NodeStateSchema(Schema):
    id = fields.String()
    name = fields.String()
    type = fields.String()
    atom = fields.String()
    stage = fields.String()
    status = fields.String(metadata={"enum": NODE_STATUSES})
    runs = fields.Integer()
    retries = fields.Integer(metadata={"description": "automatic retries used in this run"})
    paused_before = fields.Boolean()
    inputs = fields.Raw(metadata={"description": "as rendered when it last started, secrets masked"})
    outputs = fields.Raw()
    error = fields.String()
    due_at = fields.DateTime()
    job_instance_id = fields.Integer()
    waiting_for = fields.Raw(
        metadata={"description": "an approval's approvers and message, a callback's token"}
    )
    started_at = fields.DateTime()
    ended_at = fields.DateTime()
    attempts = fields.List(fields.Nested(NodeAttemptSchema))


class FlowTaskSchema(Schema):
    id = fields.Integer()
    project_id = fields.Integer()
    flow_id = fields.Integer()
    flow_version = fields.Method("version_number", metadata={"description": "the flow version it runs"})
    name = fields.String()
    status = fields.String(metadata={"enum": TASK_STATUSES})
    variables = fields.Raw(attribute="launch_values", metadata={"description": "as launched, secrets masked"})
    values = fields.Raw(metadata={"description": "every variable's value now, secrets masked"})
    outputs = fields.Raw(metadata={"description": "the flow's outputs"})
    skip_nodes = fields.List(fields.String())
    operations = fields.List(fields.Dict(), metadata={"description": "who did what, when and why"})
    launched_by = fields.String()
    timed_job_id = fields.Integer(metadata={"description": "the timed job whose run started it"})
    callback_url = fields.String()
    parent_node_id = fields.Integer()
    error = fields.String(metadata={"description": "why the task stopped, when it was not a node's failure"})
    created_at = fields.DateTime()
    started_at = fields.DateTime()
    ended_at = fields.DateTime()
    nodes = Rendered(fields.Nested(NodeStateSchema))

    def version_number(self, task: Any) -> int:
        return task["flow_version"] if isinstance(task, dict) else task.flow_version.version


class FlowTaskListArgs(FilterArgs):
    status = fields.List(
        fields.String(validate=validate.OneOf(TASK_STATUSES)), metadata={"description": "repeatable"}
    )
    flow_id = Id()
    launched_by = fields.String()
    timed_job_id = Id(metadata={"description": "tasks started by this timed job's runs"})
    name = fields.String(
        validate=validate.Length(min=1), metadata={"description": "part of the name, any case"}
    )
    created_after = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "inclusive"})
    created_before = fields.AwareDateTime(default_timezone=UTC, metadata={"description": "exclusive"})


class FlowOperationSchema(Schema):
    reason = fields.String(load_default="", validate=validate.Length(max=4096))


class FlowNodeOperationSchema(FlowOperationSchema):
    inputs = fields.Dict(
        keys=fields.String(), allow_none=True, metadata={"description": "retry: new inputs for the node"}
    )
    branches = fields.List(fields.String(), metadata={"description": "choose_branch: the nodes to go on to"})
    token = fields.String(validate=validate.Length(max=255), metadata={"description": "callback: its token"})
    data = fields.Dict(keys=fields.String(), metadata={"description": "callback: becomes the node's outputs"})


class FlowExportArgs(FilterArgs):
    format = fields.String(load_default="json", validate=validate.OneOf(["json", "yaml"]))
    version = fields.Integer(
        validate=validate.Range(1, INTEGER_MAX),
        metadata={"description": "the flow's version to export; none: its newest"},
    )


class FlowImportArgs(FilterArgs):
    name = fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={"description": "the flow's name, for a bk-sops pipeline tree (which carries none)"},
    )


class FlowImportTextSchema(Schema):
    """A document sent as text: an export in JSON or YAML, or a bk-sops tree or .dat export."""

    format = fields.String(
        validate=validate.OneOf(["json", "yaml", "bk_sops"]),
        metadata={"description": "json, yaml, or bk_sops (a pipeline tree, or the text of a .dat export)"},
    )
    content = fields.String(required=True, metadata={"description": "the document's text"})


class FlowImportResultSchema(Schema):
    flows = fields.List(fields.Nested(FlowSchema), metadata={"description": "subflows first"})
