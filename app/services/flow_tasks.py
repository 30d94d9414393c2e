"""Flow tasks: creating one (values checked like a job launch), reading it, and the operations on the task
and its nodes. Each operation is refused with a Conflict naming the state that does not allow it, is
recorded on the task, and asks the engine to advance the task once committed."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from rq import Queue, Retry
from sqlalchemy import Row, Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from app.config import current as settings
from app.extensions import db, redis
from app.flows import engine
from app.flows.atoms import Failed
from app.flows.graph import FlowGraph, NodeType, VariableKind, value_problem
from app.models import Flow, FlowTask, NodeAttempt, NodeState
from app.models.base import utcnow
from app.secrets import MASK
from app.services import callbacks, dispatch, idempotency, records
from app.services.access import Action, Actor, require
from app.services.errors import Conflict, Invalid, NotFound
from app.services.idempotency import request_digest
from app.services.jobs import history_filters
from app.status import NODE_LIVE, FlowTaskStatus, NodeStatus


def tasks_query(project_id: int, filters: dict[str, Any]) -> Select:
    """The project's top-level tasks matching every filter given, newest first."""
    query = select(FlowTask).where(FlowTask.project_id == project_id, FlowTask.parent_node_id.is_(None))
    query = history_filters(query, FlowTask, filters, ("flow_id", "launched_by", "timed_job_id"))
    return query.order_by(FlowTask.created_at.desc(), FlowTask.id.desc())


def digest_of(flow_id: int, data: dict[str, Any]) -> str:
    """What a task creation asks for, whatever key it carries."""
    return request_digest({"flow_id": flow_id, **{k: v for k, v in data.items() if k != idempotency.FIELD}})


def replayed(project_id: int, flow_id: int, data: dict[str, Any]) -> FlowTask | None:
    """The task the request's idempotency key created, if it has one; Conflict when the key created a
    task for another request."""
    key = data.get(idempotency.FIELD)
    if not key:
        return None
    first = db.session.scalar(
        select(FlowTask).where(FlowTask.project_id == project_id, FlowTask.idempotency_key == key)
    )
    if first is not None and first.request_digest not in (None, digest_of(flow_id, data)):
        raise Conflict(
            f"key {key!r} created flow task {first.id} (flow {first.flow_id}) for another request",
            idempotency.FIELD,
        )
    return first


def task_values(
    graph: FlowGraph, secret_defaults: dict[str, Any], given: dict[str, Any], field: str = "variables"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(public, secret) values of a new task: what was given, else the defaults; every value checked."""
    for name, value in given.items():
        where = f"{field}.{name}"
        variable = graph.variables.get(name)
        if variable is None:
            raise Invalid(f"there is no variable {name!r}", where)
        if not variable.changeable:
            raise Invalid(f"variable {name!r} cannot be changed when a task is created", where)
        problem = value_problem(variable, value)
        if problem:
            raise Invalid(problem, where)
    public, secret = {}, {}
    for name, variable in graph.variables.items():
        if name in given:
            value = given[name]
        elif name in secret_defaults:
            value = secret_defaults[name]
        else:
            value = variable.default
        if value is None and variable.required:
            raise Invalid(f"variable {name!r} is required: give it a value", f"{field}.{name}")
        (secret if variable.kind == VariableKind.SECRET else public)[name] = value
    return public, secret


def create_task(
    actor: Actor,
    project_id: int,
    flow_id: int,
    data: dict[str, Any],
    parent: NodeState | None = None,
    version_number: int | None = None,
    timed_job_id: int | None = None,
) -> FlowTask:
    """A task of the flow's newest version (or `version_number`), started unless data says start: false;
    `timed_job_id` names the timed job whose run starts it."""
    require(actor, project_id, Action.OPERATE)
    flow = records.get(Flow, flow_id, project_id)
    version = flow.current
    if version_number is not None:
        version = next((row for row in flow.versions if row.version == version_number), None)
        if version is None:
            raise Invalid(f"flow {flow_id} has no version {version_number}", "version")
    graph = engine.graph_of(version)
    public, secret = task_values(graph, version.secret_default_values, data.get("variables", {}))
    skip = data.get("skip_nodes", [])
    for index, node_id in enumerate(skip):
        node = graph.nodes.get(node_id)
        if node is None:
            raise Invalid(f"there is no node {node_id!r}", f"skip_nodes.{index}")
        if not node.optional:
            raise Invalid(f"node {node_id!r} is not optional: it cannot be left out", f"skip_nodes.{index}")
    start = data.get("start", True)
    now = utcnow()
    task = FlowTask(
        project_id=project_id,
        flow_id=flow.id,
        flow_version_id=version.id,
        name=data.get("name") or flow.name,
        status=FlowTaskStatus.RUNNING if start else FlowTaskStatus.CREATED,
        values=public,
        secret_values=json.dumps(secret) if secret else None,
        launch_values={
            **public,
            **dict.fromkeys((name for name, value in secret.items() if value is not None), MASK),
        },
        skip_nodes=list(skip),
        launched_by=actor.username,
        timed_job_id=timed_job_id,
        callback_url=data.get("callback_url"),
        idempotency_key=data.get(idempotency.FIELD),
        request_digest=digest_of(flow_id, data) if data.get(idempotency.FIELD) else None,
        parent_node_id=parent.id if parent else None,
        started_at=now if start else None,
        advanced_at=now,
    )
    for node in graph.nodes.values():
        status = NodeStatus.READY if node.id == graph.start else NodeStatus.WAITING
        task.nodes.append(NodeState(node_id=node.id, status=status))
    db.session.add(task)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        first = replayed(project_id, flow_id, data)
        if first is None:
            raise
        return first
    if start:
        engine.enqueue([task.id])
    return task


def get_task(
    actor: Actor, project_id: int, task_id: int, action: Action = Action.READ, *, with_nodes: bool = True
) -> FlowTask:
    """The task; with its node states loaded as objects, for an operation to change them."""
    require(actor, project_id, action)
    task = engine.load_task(task_id) if with_nodes else db.session.get(FlowTask, task_id)
    if task is None or task.project_id != project_id:
        raise NotFound(f"flow task {task_id} does not exist")
    return task


def task_graph(task: FlowTask) -> FlowGraph:
    return engine.graph_of(task.flow_version)


def operate_task(actor: Actor, project_id: int, task_id: int, operation: str, reason: str = "") -> FlowTask:
    """start, pause, resume or revoke the task."""
    task = get_task(actor, project_id, task_id, Action.OPERATE)
    allowed = {
        "start": {FlowTaskStatus.CREATED},
        "pause": {FlowTaskStatus.RUNNING},
        "resume": {FlowTaskStatus.PAUSED},
        "revoke": {
            FlowTaskStatus.CREATED,
            FlowTaskStatus.RUNNING,
            FlowTaskStatus.PAUSED,
            FlowTaskStatus.FAILED,
        },
    }
    if task.status not in allowed[operation]:
        raise Conflict(f"task {task.id} is {task.status}: it cannot be {DONE[operation]}", "status")

    def change(work: engine.Pass) -> None:
        if operation == "start":
            task.started_at = work.now
        if operation == "revoke":
            task.status = FlowTaskStatus.REVOKED
            task.ended_at = work.now
            for state in work.states.values():
                if NodeStatus(state.status) in NODE_LIVE:
                    work.to_cancel.append((state, dict(state.waiting)))
                    state.status = NodeStatus.REVOKED
                    engine.finish(work, state, engine.STOP_REASON_REVOKED)
        else:
            task.status = FlowTaskStatus.PAUSED if operation == "pause" else FlowTaskStatus.RUNNING

    return transition(actor, task, operation, None, reason, change)


DONE = {
    "start": "started",
    "pause": "paused",
    "resume": "resumed",
    "revoke": "revoked",
    "retry": "retried",
    "skip": "skipped",
    "force_fail": "force-failed",
    "pause_before": "paused before it starts",
    "approve": "approved",
    "reject": "rejected",
    "choose_branch": "given a branch",
    "callback": "called back",
}


def transition(
    actor: Actor,
    task: FlowTask,
    operation: str,
    node_id: str | None,
    reason: str,
    change: Callable[[engine.Pass], None],
) -> FlowTask:
    """Apply an operation in one versioned transaction, record it, and let the engine go on."""
    graph = task_graph(task)
    work = engine.Pass(
        task, graph, {state.node_id: state for state in task.nodes}, engine.task_values(task), utcnow()
    )
    change(work)
    if task.status != FlowTaskStatus.REVOKED:
        engine.settle_task(work)
    task.record(actor.username, operation, node_id, reason)
    try:
        engine.commit(work)
    except StaleDataError as exc:
        db.session.rollback()
        raise Conflict(
            f"task {task.id} changed while this was asked; look at it again and retry", "status"
        ) from exc
    engine.after_pass(work)
    engine.enqueue([work.task_id])
    return task


def node_of(task: FlowTask, node_id: str) -> NodeState:
    state = next((state for state in task.nodes if state.node_id == node_id), None)
    if state is None:
        raise NotFound(f"task {task.id} has no node {node_id!r}")
    return state


def operate_node(
    actor: Actor, project_id: int, task_id: int, node_id: str, operation: str, data: dict[str, Any]
) -> FlowTask:
    """retry, skip, force_fail, pause_before, resume, approve, reject, choose_branch or callback a node."""
    task = get_task(actor, project_id, task_id, Action.OPERATE)
    state = node_of(task, node_id)
    graph = task_graph(task)
    node = graph.nodes[node_id]
    status = NodeStatus(state.status)
    if task.status in (FlowTaskStatus.SUCCESS, FlowTaskStatus.REVOKED):
        raise Conflict(f"task {task.id} is {task.status}: its nodes can no longer be operated", "status")

    def refuse(why: str) -> Conflict:
        return Conflict(
            f"node {node_id!r} is {state.status}: it cannot be {DONE[operation]} ({why})", "status"
        )

    runnable = node.type in (NodeType.ACTIVITY, NodeType.SUBFLOW)
    atom = engine.atoms()[node.atom] if node.atom else None
    context = None

    def change(work: engine.Pass) -> None:
        nonlocal context
        current = work.states[node_id]
        if operation == "retry":
            if data.get("inputs") is not None:
                current.override_inputs = checked_inputs(node, data["inputs"])
            current.status = NodeStatus.READY
            current.retries = 0
            current.error = None
            current.due_at = None
        elif operation == "skip":
            if status == NodeStatus.FAILED:
                current.status = NodeStatus.SKIPPED
                engine.finish(work, current, f"skipped by {actor.username}")
                engine.send_on(work, node)
            else:
                task.skip_nodes = [*task.skip_nodes, node_id]
        elif operation == "force_fail":
            work.to_cancel.append((current, dict(current.waiting)))
            engine.fail(work, current, node, Failed(f"force-failed by {actor.username}"), retry=False)
        elif operation == "pause_before":
            current.paused_before = True
        elif operation == "resume":
            current.paused_before = False
        elif operation == "choose_branch":
            targets = tuple(data.get("branches") or ())
            known = {edge.target for edge in graph.outgoing(node_id)}
            if not targets or not set(targets) <= known:
                raise Invalid(f"name branches among {', '.join(sorted(known))}", "branches")
            if node.type == NodeType.EXCLUSIVE and len(targets) != 1:
                raise Invalid("an exclusive gateway takes exactly one branch", "branches")
            engine.take_branches(work, current, node, targets)
        else:
            context = engine.context_of(work, current)
            context.actor = actor
            outcome = atom.operate(context, operation, data)
            engine.apply_outcome(work, current, node, outcome)

    if operation == "retry":
        if not runnable or status != NodeStatus.FAILED:
            raise refuse("only a failed activity or subflow is retried")
        if not node.retryable:
            raise refuse("the node is not retryable")
    elif operation == "skip":
        if not runnable or status not in (NodeStatus.FAILED, NodeStatus.WAITING, NodeStatus.READY):
            raise refuse("only a failed activity or one not started yet is skipped")
        if not node.skippable:
            raise refuse("the node is not skippable")
        if node_id in task.skip_nodes:
            raise refuse("it is to be skipped already")
    elif operation == "force_fail":
        if status not in NODE_LIVE:
            raise refuse("only a running or waiting node is force-failed")
    elif operation == "pause_before":
        if status not in (NodeStatus.WAITING, NodeStatus.READY) or state.paused_before:
            raise refuse("only a node not started yet, and not paused already, is paused before it starts")
    elif operation == "resume":
        if not state.paused_before:
            raise refuse("only a node paused before it starts is resumed")
    elif operation == "choose_branch":
        if (
            node.type not in (NodeType.EXCLUSIVE, NodeType.CONDITIONAL_PARALLEL)
            or status != NodeStatus.FAILED
        ):
            raise refuse("only a failed exclusive or conditional parallel gateway is given a branch")
    elif operation in ("approve", "reject", "callback"):
        if atom is None or operation not in atom.operations:
            raise refuse(f"the node does not take {operation}")
        wanted = NodeStatus.WAITING_CALLBACK if operation == "callback" else NodeStatus.WAITING_USER
        if status != wanted:
            raise refuse(f"only a node in {wanted} takes it")
    if task.status == FlowTaskStatus.FAILED and operation in ("retry", "skip", "choose_branch"):
        task.status = FlowTaskStatus.RUNNING
    return transition(actor, task, operation, node_id, data.get("reason", ""), change)


def checked_inputs(node: Any, inputs: Any) -> dict[str, Any]:
    if not isinstance(inputs, dict):
        raise Invalid("an object of the atom's inputs", "inputs")
    problems = engine.atoms()[node.atom].check_inputs(inputs)
    if problems:
        path, message = problems[0]
        raise Invalid(message, f"inputs.{path}" if path else "inputs")
    return inputs


def post_callback_after(task: FlowTask) -> None:
    """Queue the POST of the task's final state to its callback URL (retried as a job's is)."""
    queue = Queue(settings().queue_name, connection=redis.client)
    queue.enqueue_call(
        "app.services.flow_tasks.post_callback",
        args=(task.id, str(task.status)),
        retry=Retry(max=dispatch.CALLBACK_RETRIES, interval=dispatch.CALLBACK_RETRY_INTERVALS),
        result_ttl=3600,
        failure_ttl=86400,
    )


def callback_payload(task: FlowTask, status: str) -> dict[str, Any]:
    return {
        "flow_task_id": task.id,
        "project_id": task.project_id,
        "flow_id": task.flow_id,
        "name": task.name,
        "status": status,
        "launched_by": task.launched_by,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "ended_at": task.ended_at.isoformat() if task.ended_at else None,
        "outputs": task_outputs(task),
    }


def post_callback(task_id: int, status: str) -> int:
    """POST the task's state to its callback URL; raises on a refusal or an error, so the queue retries."""
    task = db.session.get(FlowTask, task_id)
    if task is None or not task.callback_url:
        return 0
    return callbacks.post_json(task.callback_url, callback_payload(task, status))


def task_outputs(task: FlowTask) -> dict[str, Any]:
    """The flow's outputs: the variables it lists, secrets masked."""
    graph = task_graph(task)
    secrets = engine.secret_names(graph)
    return {name: MASK if name in secrets else task.values.get(name) for name in graph.outputs}


def shown_values(task: FlowTask) -> dict[str, Any]:
    return {**task.values, **dict.fromkeys(task.secret_value_map, MASK)}


# What a read shows of each node and attempt, read as rows: a task may have thousands of nodes.
NODE_COLUMNS = (
    NodeState.id,
    NodeState.node_id,
    NodeState.status,
    NodeState.runs,
    NodeState.retries,
    NodeState.paused_before,
    NodeState.waiting,
    NodeState.inputs,
    NodeState.outputs,
    NodeState.error,
    NodeState.due_at,
    NodeState.job_instance_id,
    NodeState.started_at,
    NodeState.ended_at,
)
ATTEMPT_COLUMNS = (
    NodeAttempt.node_state_id,
    NodeAttempt.number,
    NodeAttempt.run,
    NodeAttempt.status,
    NodeAttempt.inputs,
    NodeAttempt.outputs,
    NodeAttempt.error,
    NodeAttempt.job_instance_id,
    NodeAttempt.child_task_id,
    NodeAttempt.started_at,
    NodeAttempt.ended_at,
)
ATTEMPT_FIELDS = ("number", "run", "status", "inputs", "outputs", "error", "job_instance_id", "child_task_id")


def node_rows(task_id: int, node_id: str | None = None) -> list[tuple[Row, list[Any]]]:
    """The task's node states (or the one named), in order, each with its attempts: two queries."""
    states = select(*NODE_COLUMNS).where(NodeState.task_id == task_id)
    attempts = select(*ATTEMPT_COLUMNS).join(NodeState).where(NodeState.task_id == task_id)
    if node_id is not None:
        states = states.where(NodeState.node_id == node_id)
        attempts = attempts.where(NodeState.node_id == node_id)
    by_state = defaultdict(list)
    for attempt in db.session.execute(attempts.order_by(NodeAttempt.node_state_id, NodeAttempt.number)):
        by_state[attempt.node_state_id].append(attempt._mapping)
    return [(state, by_state[state.id]) for state in db.session.execute(states.order_by(NodeState.id))]


def node_entry(task: FlowTask, graph: FlowGraph, state: Row, attempts: list[Any]) -> dict[str, Any]:
    """One node's state, rendered inputs, attempts and what it waits for, as the API shows it (JSON values:
    a task's read renders thousands of them, too many to pass through its schema one field at a time)."""
    node = graph.nodes[state.node_id]
    kept = state.waiting or {}
    waiting_for = None
    if state.status == NodeStatus.WAITING_USER:
        waiting_for = {"approvers": kept.get("approvers"), "timeout_at": kept.get("timeout_at")}
    elif state.status == NodeStatus.WAITING_CALLBACK:
        waiting_for = {
            "token": kept.get("token"),
            "url": f"/api/v1/projects/{task.project_id}/flow-tasks/{task.id}/nodes/{state.node_id}/callback",
        }
    return {
        "id": state.node_id,
        "name": node.name,
        "type": node.type,
        "atom": node.atom,
        "stage": node.stage,
        "status": state.status,
        "runs": state.runs,
        "retries": state.retries,
        "paused_before": state.paused_before,
        "inputs": state.inputs,
        "outputs": state.outputs,
        "error": state.error,
        "due_at": iso(state.due_at),
        "job_instance_id": state.job_instance_id,
        "waiting_for": waiting_for,
        "started_at": iso(state.started_at),
        "ended_at": iso(state.ended_at),
        "attempts": [
            {
                **{name: attempt[name] for name in ATTEMPT_FIELDS},
                "started_at": iso(attempt["started_at"]),
                "ended_at": iso(attempt["ended_at"]),
            }
            for attempt in attempts
        ],
    }


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def node_view(actor: Actor, project_id: int, task_id: int, node_id: str) -> dict[str, Any]:
    """One node of a task, read alone (a task of thousands of nodes is not loaded for it)."""
    require(actor, project_id, Action.READ)
    task = records.get(FlowTask, task_id, project_id)
    found = node_rows(task.id, node_id)
    if not found:
        raise NotFound(f"task {task_id} has no node {node_id!r}")
    return node_entry(task, task_graph(task), *found[0])


def read_task(actor: Actor, project_id: int, task_id: int) -> dict[str, Any]:
    """The task as GET shows it, its nodes read as rows."""
    return task_view(get_task(actor, project_id, task_id, with_nodes=False))


def task_view(task: FlowTask) -> dict[str, Any]:
    """The task with every node's state, attempts and what it waits for."""
    graph = task_graph(task)
    nodes = [node_entry(task, graph, state, attempts) for state, attempts in node_rows(task.id)]
    return {
        "id": task.id,
        "project_id": task.project_id,
        "flow_id": task.flow_id,
        "flow_version": task.flow_version.version,
        "name": task.name,
        "status": task.status,
        "launch_values": task.launch_values,
        "values": shown_values(task),
        "outputs": task_outputs(task),
        "skip_nodes": task.skip_nodes,
        "operations": task.operations,
        "launched_by": task.launched_by,
        "timed_job_id": task.timed_job_id,
        "callback_url": task.callback_url,
        "parent_node_id": task.parent_node_id,
        "error": task.error,
        "created_at": task.created_at,
        "started_at": task.started_at,
        "ended_at": task.ended_at,
        "nodes": nodes,
    }
