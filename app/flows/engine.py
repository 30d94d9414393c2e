"""The flow engine's front door: advancing a task, and asking for it to be advanced.

`advance(task_id)` runs on the `flows` queue (engine workers, which never run Ansible). One call goes
through every node that can move: nodes whose job ended or whose due time came are finished, the
branches they lead to are marked ready, gateways, `sleep 0` and other nodes that end at once are passed
in the same call, and every ready node is started, all ready branches together.

Each pass is one transaction guarded by the task's version (SQLAlchemy's version_id_col), and each
writes the task row whatever else it changed: a pass that read a task another process changed meanwhile
fails on commit, is rolled back, and looks again, so a re-delivered event, a second engine or a repeated
callback changes nothing. Starting an atom (launching a job instance, calling an HTTP API) happens after
that commit, with the node already marked running; a launch carries a key unique to the attempt, so a
start repeated after a crash launches nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from marshmallow import ValidationError
from rq import Queue
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.exc import StaleDataError

from app.extensions import db, redis
from app.flows import wakeups
from app.flows.atoms import Atom, Context, Failed, Finished, Outcome, Waiting, registry
from app.flows.expressions import ConditionError, render
from app.flows.graph import FlowGraph, Node, NodeType, TimeoutAction, VariableKind, parse
from app.models import Flow, FlowTask, FlowVersion, NodeAttempt, NodeState, ProjectVariable
from app.models.base import utcnow
from app.services.access import Actor
from app.services.errors import ServiceError
from app.status import FLOW_TASK_ENDED, NODE_LIVE, FlowTaskStatus, NodeStatus

log = logging.getLogger(__name__)

QUEUE_NAME = "flows"
# A pass that lost a race to another process looks again, at most this many times in one call.
PASSES_MAX = 1000
# A node marked running whose atom never said what it waits for (its engine died in between) is
# started again after this long; its launch key keeps a job from being launched twice.
START_GRACE_SECONDS = 30
STOP_REASON_REVOKED = "the task was revoked"
TASK_TIMED_OUT = "the task ran longer than its flow's timeout"


@lru_cache(maxsize=64)
def atoms() -> dict[str, Atom]:
    return registry()


@lru_cache(maxsize=256)
def _graph(version_id: int, document_key: str) -> FlowGraph:
    version = db.session.get(FlowVersion, version_id)
    return parse(version.document, atoms())


def graph_of(version: FlowVersion) -> FlowGraph:
    """The checked graph of a flow version (versions never change, so it is parsed once per process)."""
    return _graph(version.id, str(version.created_at))


def engine_actor(task: FlowTask) -> Actor:
    """The engine acts for the task's launcher: its job instances are theirs."""
    from app.models import User

    user = db.session.scalar(select(User).where(User.username == task.launched_by))
    if user is None:
        return Actor(user_id=0, username=task.launched_by or "flow", is_admin=True)
    return Actor(user_id=user.id, username=user.username, is_admin=True)


def enqueue(task_ids: Iterable[int]) -> None:
    """Ask the engine workers to advance these tasks; call after the commit that made them movable."""
    queue = Queue(QUEUE_NAME, connection=redis.client)
    for task_id in sorted(set(task_ids)):
        queue.enqueue_call("app.flows.engine.advance", args=(task_id,), result_ttl=0, failure_ttl=86400)


def advance(task_id: int) -> None:
    """Move the task as far as it goes now (the RQ entry point)."""
    try:
        for _ in range(PASSES_MAX):
            try:
                moved = one_pass(task_id)
            except StaleDataError:
                db.session.rollback()
                continue
            if not moved:
                return
        log.warning("task %s: still moving after %s passes; the sweep goes on with it", task_id, PASSES_MAX)
    finally:
        # Engine workers run one advance after another in one process: each starts from a fresh session.
        db.session.remove()


@dataclass
class Pass:
    """What one pass changed and must do once it has committed."""

    task: FlowTask
    graph: FlowGraph
    states: dict[str, NodeState]
    values: dict[str, Any]
    now: datetime
    to_start: list[NodeState] = field(default_factory=list)
    to_cancel: list[tuple[NodeState, dict[str, Any]]] = field(default_factory=list)
    changed: bool = False
    # The task's state when the pass began: an end is announced once, when the state changes.
    status_before: str = ""
    project_values: dict[str, Any] | None = None
    # The task's flow timeout has passed: nothing starts, and the task stays failed.
    timed_out: bool = False
    # Read before the commit, so that nothing after it loads the task again.
    task_id: int = 0
    status_after: str = ""
    due: datetime | None = None
    _actor: Actor | None = None

    def __post_init__(self) -> None:
        self.status_before = self.status_before or self.task.status
        self.task_id = self.task.id

    @property
    def actor(self) -> Actor:
        """Whom the engine acts for, looked up once the pass starts an atom."""
        if self._actor is None:
            self._actor = engine_actor(self.task)
        return self._actor


def one_pass(task_id: int) -> bool:
    """One transaction: settle what ended, move tokens, mark ready nodes running; after the commit start
    their atoms. True when another pass may move more: an atom's start or a cancel was recorded after the
    commit (everything else that could move has moved in this pass)."""
    task = load_task(task_id)
    if task is None or task.status in (
        FlowTaskStatus.CREATED,
        FlowTaskStatus.SUCCESS,
        FlowTaskStatus.REVOKED,
    ):
        db.session.rollback()
        return False
    graph = graph_of(task.flow_version)
    work = Pass(task, graph, {state.node_id: state for state in task.nodes}, task_values(task), utcnow())
    # The pass's changes go out in one flush at its commit, not piecemeal before each read.
    with db.session.no_autoflush:
        for state in list(work.states.values()):
            if NodeStatus(state.status) in NODE_LIVE:
                look_at_live(work, state)
        deadline = task_deadline(task)
        if deadline is not None and work.now >= deadline:
            time_out(work)
        progress = True
        while progress:
            progress = False
            for state in list(work.states.values()):
                if state.status == NodeStatus.READY and startable(work, state):
                    progress |= start_node(work, state)
        settle_task(work)
    if not work.changed:
        db.session.rollback()
        return False
    commit(work)
    after_pass(work)
    return bool(work.to_start or work.to_cancel)


def commit(work: Pass) -> None:
    """Write the pass. The task row is written whatever else changed: its version guards the whole pass."""
    task = work.task
    task.advanced_at = work.now
    work.status_after = task.status
    work.due = next_due(work)
    db.session.commit()


def load_task(task_id: int) -> FlowTask | None:
    """The task as it is now, with its node states and their attempts (two queries more, not one per node)."""
    db.session.expire_all()
    return db.session.get(
        FlowTask, task_id, options=[selectinload(FlowTask.nodes).selectinload(NodeState.attempts)]
    )


def task_values(task: FlowTask) -> dict[str, Any]:
    return {**task.values, **task.secret_value_map}


def builtins(work: Pass, state: NodeState) -> dict[str, Any]:
    """_system, _project (read once per pass) and the node's _loop."""
    task = work.task
    if work.project_values is None:
        work.project_values = {
            row.name: row.value
            for row in db.session.scalars(
                select(ProjectVariable).where(ProjectVariable.project_id == task.project_id)
            )
        }
    return {
        "_system": {"task_id": task.id, "task_name": task.name, "operator": task.launched_by},
        "_project": work.project_values,
        "_loop": state.runs,
    }


def secret_names(graph: FlowGraph) -> frozenset[str]:
    return frozenset(
        name for name, variable in graph.variables.items() if variable.kind == VariableKind.SECRET
    )


def context_of(work: Pass, state: NodeState, inputs: dict[str, Any] | None = None) -> Context:
    graph = work.graph
    return Context(
        task=work.task,
        state=state,
        inputs=inputs if inputs is not None else {},
        actor=work.actor,
        values=work.values,
        kinds={name: variable.kind for name, variable in graph.variables.items()},
        secrets=secret_names(graph),
        launch_key=f"flow-{work.task.id}-{state.node_id}-{len(state.attempts)}"[:255],
    )


def task_deadline(task: FlowTask) -> datetime | None:
    """When a running task's flow timeout ends it."""
    flow = db.session.get(Flow, task.flow_id)
    if flow is None or not flow.timeout or task.started_at is None or task.status == FlowTaskStatus.SUCCESS:
        return None
    return task.started_at + timedelta(seconds=flow.timeout)


def time_out(work: Pass) -> None:
    """The task ran longer than its flow's timeout: what runs is stopped and failed, nothing new starts."""
    work.timed_out = True
    for state in work.states.values():
        if NodeStatus(state.status) in NODE_LIVE:
            work.to_cancel.append((state, dict(state.waiting)))
            fail(work, state, work.graph.nodes[state.node_id], Failed(TASK_TIMED_OUT), retry=False)
    if work.task.status != FlowTaskStatus.FAILED or work.task.error != TASK_TIMED_OUT:
        work.task.status = FlowTaskStatus.FAILED
        work.task.error = TASK_TIMED_OUT
        work.changed = True


def startable(work: Pass, state: NodeState) -> bool:
    if work.task.status != FlowTaskStatus.RUNNING or state.paused_before or work.timed_out:
        return False
    return state.due_at is None or state.due_at <= work.now


def look_at_live(work: Pass, state: NodeState) -> None:
    """A running or waiting node: has its job ended, its time come, its timeout passed?"""
    node = work.graph.nodes[state.node_id]
    atom = atoms()[node.atom]
    if state.status == NodeStatus.RUNNING and not state.waiting:
        started = state.started_at or work.now
        if work.now - started > timedelta(seconds=START_GRACE_SECONDS):
            work.to_start.append(state)
        return
    context = context_of(work, state)
    if (
        node.timeout
        and state.started_at
        and work.now >= state.started_at + timedelta(seconds=node.timeout.seconds)
    ):
        work.to_cancel.append((state, dict(state.waiting)))
        error = f"timed out after {node.timeout.seconds}s"
        if node.timeout.action == TimeoutAction.FAIL_AND_SKIP:
            end_attempt(state, NodeStatus.FAILED, error=error)
            state.status = NodeStatus.SKIPPED
            finish(work, state, error)
            send_on(work, node)
        else:
            fail(work, state, node, Failed(error), retry=False)
        return
    outcome = atom.check(context)
    if outcome is not None:
        apply_outcome(work, state, node, outcome)


def start_node(work: Pass, state: NodeState) -> bool:
    """Start a ready node: a gateway, start or end passes at once; a skipped node passes without output; an
    activity is marked running and its atom started after the commit."""
    node = work.graph.nodes[state.node_id]
    work.changed = True
    if state.node_id in work.task.skip_nodes and node.type in (NodeType.ACTIVITY, NodeType.SUBFLOW):
        state.status = NodeStatus.SKIPPED
        finish(work, state, "left out when the task was created")
        send_on(work, node)
        return True
    if node.type in (NodeType.ACTIVITY, NodeType.SUBFLOW):
        if node.id in work.graph.looping and state.runs >= node.run_limit and not state.retries:
            state.status = NodeStatus.FAILED
            state.error = f"ran {state.runs} times: its run limit"
            state.ended_at = work.now
            return True
        if not state.retries:
            state.runs += 1
        state.status = NodeStatus.RUNNING
        state.started_at = work.now
        state.ended_at = None
        state.due_at = None
        state.due_reason = None
        state.waiting = {}
        state.error = None
        state.outputs = None
        inputs, shown = rendered_inputs(work, state, node)
        state.inputs = shown
        state.attempts.append(
            NodeAttempt(
                number=len(state.attempts) + 1, run=state.runs, status=NodeStatus.RUNNING, inputs=shown
            )
        )
        atom = atoms()[node.atom]
        if atom.immediate:
            context = context_of(work, state, inputs)
            apply_outcome(work, state, node, started(atom, context, work.task.id, state.node_id))
            return True
        work.to_start.append(state)
        return False
    state.runs += 1
    state.started_at = state.started_at or work.now
    if node.type == NodeType.END:
        state.status = NodeStatus.SUCCESS
        state.ended_at = work.now
        work.task.status = FlowTaskStatus.SUCCESS
        return True
    if node.type in (NodeType.EXCLUSIVE, NodeType.CONDITIONAL_PARALLEL):
        values = {**work.values, **builtins(work, state)}
        try:
            targets = work.graph.chosen(node.id, values)
        except ConditionError as exc:
            return gateway_failed(work, state, str(exc))
        if not targets:
            return gateway_failed(work, state, "no condition holds and the gateway has no default edge")
        take_branches(work, state, node, targets)
        return True
    targets = work.graph.next_nodes(node.id)
    state.status = NodeStatus.SUCCESS
    state.ended_at = work.now
    state.arrived = 0
    if node.type == NodeType.PARALLEL:
        expect(work, node, len(targets))
    for target in targets:
        arrive(work, target)
    return True


def take_branches(work: Pass, state: NodeState, node: Node, targets: tuple[str, ...]) -> None:
    state.status = NodeStatus.SUCCESS
    state.ended_at = work.now
    state.error = None
    state.outputs = {"branches": list(targets)}
    if node.type == NodeType.CONDITIONAL_PARALLEL:
        expect(work, node, len(targets))
    for target in targets:
        arrive(work, target)


def gateway_failed(work: Pass, state: NodeState, error: str) -> bool:
    state.status = NodeStatus.FAILED
    state.error = error
    state.ended_at = work.now
    return True


def expect(work: Pass, node: Node, branches: int) -> None:
    join = work.states[work.graph.converge_of[node.id]]
    join.expected = branches
    join.arrived = 0


def rendered_inputs(work: Pass, state: NodeState, node: Node) -> tuple[dict[str, Any], dict[str, Any]]:
    """The node's inputs with references replaced by the values of this moment, and as shown (masked)."""
    source = state.override_inputs if state.override_inputs is not None else dict(node.inputs)
    values = {**work.values, **builtins(work, state)}
    secrets = secret_names(work.graph)
    inputs, shown = {}, {}
    for name, value in source.items():
        if name in node.unrendered:
            inputs[name] = shown[name] = value
        else:
            inputs[name], shown[name] = render(value, values, secrets)
    return inputs, atoms()[node.atom].shown(shown)


def arrive(work: Pass, node_id: str) -> None:
    """A branch reaches a node: a converge gateway counts it; any other node becomes ready (again, on a
    loop)."""
    state = work.states[node_id]
    node = work.graph.nodes[node_id]
    if node.type == NodeType.CONVERGE:
        state.arrived += 1
        if state.arrived >= state.expected:
            state.status = NodeStatus.READY
        elif state.status != NodeStatus.WAITING:
            state.status = NodeStatus.WAITING
        return
    if state.status in (NodeStatus.READY, NodeStatus.PAUSED) or NodeStatus(state.status) in NODE_LIVE:
        return
    state.status = NodeStatus.READY
    state.retries = 0
    state.override_inputs = None


def apply_outcome(work: Pass, state: NodeState, node: Node, outcome: Outcome) -> None:
    work.changed = True
    if isinstance(outcome, Waiting):
        state.status = outcome.status
        state.waiting = {**outcome.kept, "started": True}
        state.job_instance_id = outcome.job_instance_id
        if outcome.job_instance_id:
            state.attempts[-1].job_instance_id = outcome.job_instance_id
        if outcome.child_task_id:
            state.attempts[-1].child_task_id = outcome.child_task_id
        state.due_at = earliest(outcome.due_at, timeout_at(state, node))
        state.due_reason = "wait" if state.due_at else None
    elif isinstance(outcome, Finished):
        end_attempt(state, NodeStatus.SUCCESS, outputs=outcome.outputs)
        state.status = NodeStatus.SUCCESS
        state.outputs = outcome.outputs
        finish(work, state)
        write_outputs(work, node, outcome.outputs)
        send_on(work, node)
    else:
        fail(work, state, node, outcome)


def fail(work: Pass, state: NodeState, node: Node, outcome: Failed, retry: bool = True) -> None:
    end_attempt(state, NodeStatus.FAILED, outputs=outcome.outputs, error=outcome.error)
    state.outputs = outcome.outputs or None
    if retry and node.auto_retry and state.retries < node.auto_retry.times:
        delay = node.auto_retry.delay(state.retries)
        state.retries += 1
        state.status = NodeStatus.READY
        state.error = outcome.error
        state.due_at = work.now + timedelta(seconds=delay)
        state.due_reason = "retry"
        state.waiting = {}
        return
    state.status = NodeStatus.FAILED
    finish(work, state, outcome.error)
    if node.ignore_error:
        state.error = f"{outcome.error} (ignored)"
        send_on(work, node)


def finish(work: Pass, state: NodeState, error: str | None = None) -> None:
    work.changed = True
    state.ended_at = work.now
    state.due_at = None
    state.due_reason = None
    state.error = error


def end_attempt(
    state: NodeState, status: NodeStatus, outputs: dict | None = None, error: str | None = None
) -> None:
    if not state.attempts or state.attempts[-1].ended_at is not None:
        return
    attempt = state.attempts[-1]
    attempt.status = status
    attempt.outputs = outputs or None
    attempt.error = error
    attempt.ended_at = utcnow()


def write_outputs(work: Pass, node: Node, outputs: dict[str, Any]) -> None:
    """A node's outputs reach the flow's variables through its declared mapping only."""
    secrets = secret_names(work.graph)
    public, secret = dict(work.task.values), work.task.secret_value_map
    for variable, output in node.outputs.items():
        if output not in outputs:
            continue
        value = outputs[output]
        work.values[variable] = value
        if variable in secrets:
            secret[variable] = value
        else:
            public[variable] = value
    work.task.values = public
    if secret:
        import json

        work.task.secret_values = json.dumps(secret)


def send_on(work: Pass, node: Node) -> None:
    for target in work.graph.next_nodes(node.id):
        arrive(work, target)


def timeout_at(state: NodeState, node: Node) -> datetime | None:
    if node.timeout is None or state.started_at is None:
        return None
    return state.started_at + timedelta(seconds=node.timeout.seconds)


def earliest(*times: datetime | None) -> datetime | None:
    present = [time for time in times if time is not None]
    return min(present) if present else None


def settle_task(work: Pass) -> None:
    """The task's state from its nodes': success once an end is reached; failed when a node failed and
    nothing else can move; running again when an operation revived it."""
    task = work.task
    if task.status == FlowTaskStatus.SUCCESS:
        if task.ended_at is None:
            task.ended_at = work.now
            work.changed = True
            stop_the_rest(work)
        return
    if task.status not in (FlowTaskStatus.RUNNING, FlowTaskStatus.FAILED) or work.timed_out:
        return
    states = work.states.values()
    moving = any(
        NodeStatus(state.status) in NODE_LIVE
        or (state.status == NodeStatus.READY and not state.paused_before)
        for state in states
    )
    failed = any(
        state.status == NodeStatus.FAILED and not (state.error or "").endswith("(ignored)")
        for state in states
    )
    wanted = FlowTaskStatus.FAILED if failed and not moving else FlowTaskStatus.RUNNING
    if task.status != wanted:
        task.status = wanted
        work.changed = True


def stop_the_rest(work: Pass) -> None:
    for state in work.states.values():
        if NodeStatus(state.status) in NODE_LIVE:
            work.to_cancel.append((state, dict(state.waiting)))
            state.status = NodeStatus.REVOKED
            finish(work, state, "the task ended")


def after_pass(work: Pass) -> None:
    """After the commit: start the atoms of nodes marked running, cancel what stopped, schedule wake-ups,
    and tell a parent task that its subflow ended."""
    for state, kept in work.to_cancel:
        cancel_node(work, state, kept)
    for state in work.to_start:
        start_atom(work, state)
    schedule(work)
    if work.status_after in FLOW_TASK_ENDED and work.status_after != work.status_before:
        ended(work.task)


def cancel_node(work: Pass, state: NodeState, kept: dict[str, Any]) -> None:
    node = work.graph.nodes[state.node_id]
    if node.atom is None:
        return
    context = context_of(work, state)
    context.kept_before = kept
    try:
        atoms()[node.atom].cancel(context)
    except Exception:
        log.exception("task %s: cancelling node %s failed", work.task.id, state.node_id)
        db.session.rollback()


def start_atom(work: Pass, state: NodeState) -> None:
    node = work.graph.nodes[state.node_id]
    atom = atoms()[node.atom]
    inputs, _ = rendered_inputs(work, state, node)
    context = context_of(work, state, inputs)
    attempt = len(state.attempts)
    outcome = started(atom, context, work.task.id, state.node_id, rollback=True)
    record_start(work.task.id, state.node_id, attempt, outcome)


def started(atom: Atom, context: Context, task_id: int, node_id: str, rollback: bool = False) -> Outcome:
    """What the atom's start answered; bad inputs or a refused launch is a failure of the node."""
    try:
        return atom.start(context)
    except ValidationError as exc:
        error = f"inputs: {exc.messages}"
    except ServiceError as exc:
        error = f"{exc.field + ': ' if exc.field else ''}{exc.message}"
    except Exception as exc:
        log.exception("task %s: node %s failed to start", task_id, node_id)
        error = f"could not start: {exc}"
    if rollback:
        db.session.rollback()
    return Failed(error)


def record_start(task_id: int, node_id: str, attempt: int, outcome: Outcome) -> None:
    """Write what an atom's start answered, unless the node moved meanwhile (force-failed, revoked)."""
    recorded = record(task_id, node_id, attempt, outcome, lambda waiting: not waiting)
    if recorded and isinstance(outcome, Waiting) and outcome.after is not None:
        outcome.after()


def record_answer(task_id: int, node_id: str, attempt: int, outcome: Outcome) -> None:
    """Write the answer of a call the node waits for (app.flows.calls), unless the node moved meanwhile,
    and advance the task."""
    if record(task_id, node_id, attempt, outcome, lambda waiting: bool(waiting.get("call"))):
        enqueue([task_id])


def record(
    task_id: int, node_id: str, attempt: int, outcome: Outcome, expected: Callable[[dict], bool]
) -> bool:
    """Apply an outcome to the node if it still runs that attempt and what it waits for is `expected`;
    whether it was applied."""
    for _ in range(10):
        try:
            task = load_task(task_id)
            work = Pass(
                task,
                graph_of(task.flow_version),
                {s.node_id: s for s in task.nodes},
                task_values(task),
                utcnow(),
            )
            state = work.states[node_id]
            if (
                state.status != NodeStatus.RUNNING
                or len(state.attempts) != attempt
                or not expected(state.waiting or {})
            ):
                db.session.rollback()
                return False
            apply_outcome(work, state, work.graph.nodes[node_id], outcome)
            commit(work)
            schedule(work)
            return True
        except StaleDataError:
            db.session.rollback()
    return False


def next_due(work: Pass) -> datetime | None:
    """The task's earliest due time: a node's, or the end of the flow's timeout."""
    task = work.task
    dues = [state.due_at for state in work.states.values() if state.due_at is not None]
    deadline = task_deadline(task) if task.status in (FlowTaskStatus.RUNNING, FlowTaskStatus.PAUSED) else None
    if deadline is not None:
        dues.append(deadline)
    return min(dues) if dues else None


def schedule(work: Pass) -> None:
    """Put the task's earliest due time, as its pass left it, among the wake-ups."""
    if work.due is not None:
        wakeups.add(redis.client, work.task_id, work.due)


def ended(task: FlowTask) -> None:
    """A task has ended (or stopped failing): its parent's subflow node may move, its callback is posted."""
    if task.parent_node_id is not None:
        parent = db.session.get(NodeState, task.parent_node_id)
        if parent is not None:
            enqueue([parent.task_id])
    if task.callback_url:
        from app.services.flow_tasks import post_callback_after

        post_callback_after(task)


def job_ended(job_ids: Iterable[int]) -> None:
    """The ingester's settle path: these job instances have ended; advance the tasks whose nodes ran them."""
    ids = list(job_ids)
    if not ids:
        return
    tasks = db.session.scalars(select(NodeState.task_id).where(NodeState.job_instance_id.in_(ids))).all()
    if tasks:
        enqueue(tasks)
