"""/projects/{pid}/flows (versioned graphs, their tasks), /projects/{pid}/variables (what every flow of
the project reads as ${_project.NAME}) and /projects/{pid}/flow-tasks (runs, and operations on them and
their nodes)."""

from __future__ import annotations

from typing import Any

from flask import jsonify
from flask.views import MethodView
from flask_smorest import Blueprint

from app.api.auth import current_actor
from app.api.crud import project_resource
from app.api.exchange import FORMAT_OF_SUFFIX, exported, import_body, sent_document
from app.api.launching import take_idempotency_key
from app.api.paging import SelectPage, filter_arguments
from app.models import Flow, ProjectVariable
from app.schemas.flow import (
    FlowExportArgs,
    FlowImportArgs,
    FlowImportResultSchema,
    FlowImportTextSchema,
    FlowListArgs,
    FlowNodeOperationSchema,
    FlowOperationSchema,
    FlowSchema,
    FlowTaskCreateSchema,
    FlowTaskListArgs,
    FlowTaskSchema,
    FlowVersionSchema,
    NodeStateSchema,
    ProjectVariableSchema,
)
from app.services import flow_exchange, flow_tasks, flows, records
from app.services.access import Action, require
from app.services.errors import NotFound

TASK_OPERATIONS = ("start", "pause", "resume", "revoke")
EXPORTED = {
    "application/json": {"schema": {"type": "object"}},
    "application/yaml": {"schema": {"type": "string"}},
}
NODE_OPERATIONS = (
    "retry", "skip", "force_fail", "pause_before", "resume", "approve", "reject", "choose_branch", "callback"
)  # fmt: skip

blp = Blueprint("flows", __name__, url_prefix="/api/v1/projects", description="Flows, their tasks and nodes")

project_resource(
    blp,
    "flows",
    Flow,
    FlowSchema,
    create=lambda pid, data: flows.create_flow(current_actor(), pid, data),
    update=lambda row, data: flows.update_flow(current_actor(), row, data),
    filters=FlowListArgs,
    query=flows.flows_query,
)
project_resource(
    blp,
    "variables",
    ProjectVariable,
    ProjectVariableSchema,
    create=lambda pid, data: flows.create_variable(current_actor(), pid, data),
    update=lambda row, data: flows.update_variable(current_actor(), row, data),
    write=Action.ADMIN,
)


@blp.route("/<int:pid>/flows/<int:item_id>/versions")
class FlowVersions(MethodView):
    @blp.response(200, FlowVersionSchema(many=True))
    def get(self, pid: int, item_id: int):
        """Every version of the flow, oldest first."""
        require(current_actor(), pid, Action.READ)
        return records.get(Flow, item_id, pid).versions


@blp.route("/<int:pid>/flows/<int:item_id>/versions/<int:number>")
class FlowVersion(MethodView):
    @blp.response(200, FlowVersionSchema)
    def get(self, pid: int, item_id: int, number: int):
        """One version of the flow, as it was saved."""
        require(current_actor(), pid, Action.READ)
        return flows.flow_version(pid, item_id, number)


@blp.route("/<int:pid>/flows/<int:item_id>/export")
class FlowExport(MethodView):
    @filter_arguments(blp, FlowExportArgs)
    @blp.response(200, content_type="application/json")
    @blp.doc(responses={"200": {"description": "the document, as a download", "content": EXPORTED}})
    def get(self, args: dict[str, Any], pid: int, item_id: int):
        """The flow (its newest version, or `version`) and the flows it runs as subflows (those first) as
        one JSON or YAML document: references by name, secrets left out. It imports into any project."""
        document = flow_exchange.export_document(current_actor(), pid, item_id, args.get("version"))
        return exported(document, args["format"], document["flows"][-1]["name"])


@blp.route("/<int:pid>/flows/import")
class FlowImport(MethodView):
    @filter_arguments(blp, FlowImportArgs)
    @blp.doc(
        requestBody=import_body(
            ["json", "yaml", "bk_sops"],
            "an exported document, a bk-sops pipeline tree (or {name, pipeline_tree}), or {format, content}",
        )
    )
    @blp.response(201, FlowImportResultSchema)
    def post(self, args: dict[str, Any], pid: int):
        """Create the flows of a document, all or none: an export of this service, a bk-sops pipeline
        tree, or a bk-sops .dat export. Sent as the JSON body, its text as the body, `{format, content}`,
        or a multipart upload in `file` (a .dat file is a bk-sops export). Every reference the project
        lacks is reported at once (422, each with its path); a name taken already is a 409."""
        document, form = sent_document(FlowImportTextSchema, {**FORMAT_OF_SUFFIX, ".dat": "bk_sops"})
        created = flow_exchange.import_document(current_actor(), pid, document, args.get("name"), form)
        return {"flows": created}


@blp.route("/<int:pid>/flows/<int:item_id>/tasks")
class FlowTasks(MethodView):
    @blp.arguments(FlowTaskCreateSchema)
    @blp.response(201, FlowTaskSchema)
    def post(self, data: dict[str, Any], pid: int, item_id: int):
        """Create a task of the flow's newest version, started unless start is false; a repeated request
        with the same Idempotency-Key answers with the first task."""
        take_idempotency_key(data)
        actor = current_actor()
        require(actor, pid, Action.OPERATE)
        records.get(Flow, item_id, pid)
        first = flow_tasks.replayed(pid, item_id, data)
        if first is not None:
            return flow_tasks.task_view(first), 201, {"Idempotent-Replayed": "true"}
        return flow_tasks.task_view(flow_tasks.create_task(actor, pid, item_id, data))


@blp.route("/<int:pid>/flow-tasks")
class TaskList(MethodView):
    @filter_arguments(blp, FlowTaskListArgs)
    @blp.response(200, FlowTaskSchema(many=True, exclude=("nodes", "values", "outputs", "operations")))
    @blp.paginate(SelectPage)
    def get(self, filters: dict[str, Any], pid: int):
        """Tasks matching every filter given, newest first, paged."""
        require(current_actor(), pid, Action.READ)
        return flow_tasks.tasks_query(pid, filters)


@blp.route("/<int:pid>/flow-tasks/<int:tid>")
class Task(MethodView):
    @blp.response(200, FlowTaskSchema)
    def get(self, pid: int, tid: int):
        """A task: its state, values, outputs, operations, and every node's state and attempts."""
        return flow_tasks.read_task(current_actor(), pid, tid)


@blp.route("/<int:pid>/flow-tasks/<int:tid>/<string:op>")
class TaskOperation(MethodView):
    @blp.arguments(FlowOperationSchema)
    @blp.response(200, FlowTaskSchema)
    def post(self, data: dict[str, Any], pid: int, tid: int, op: str):
        """start, pause (at node boundaries), resume or revoke (final; running jobs are cancelled)."""
        if op not in TASK_OPERATIONS:
            raise NotFound(f"no task operation {op!r}: {', '.join(TASK_OPERATIONS)}")
        task = flow_tasks.operate_task(current_actor(), pid, tid, op, data["reason"])
        return flow_tasks.task_view(task)


@blp.route("/<int:pid>/flow-tasks/<int:tid>/nodes/<string:node>")
class TaskNode(MethodView):
    @blp.response(200, NodeStateSchema)
    def get(self, pid: int, tid: int, node: str):
        """One node of a task: its state, attempts and what it waits for."""
        # The service renders a node as the API shows it (the schema documents it).
        return jsonify(flow_tasks.node_view(current_actor(), pid, tid, node))


@blp.route("/<int:pid>/flow-tasks/<int:tid>/nodes/<string:node>/<string:op>")
class NodeOperation(MethodView):
    @blp.arguments(FlowNodeOperationSchema)
    @blp.response(200, FlowTaskSchema)
    def post(self, data: dict[str, Any], pid: int, tid: int, node: str, op: str):
        """retry (optionally with new inputs), skip, force_fail, pause_before, resume, approve, reject,
        choose_branch (branches) or callback (token, data); 409 when the node's state does not allow it."""
        if op not in NODE_OPERATIONS:
            raise NotFound(f"no node operation {op!r}: {', '.join(NODE_OPERATIONS)}")
        task = flow_tasks.operate_node(current_actor(), pid, tid, node, op, data)
        return flow_tasks.task_view(task)
