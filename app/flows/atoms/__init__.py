"""Atoms: what an activity node runs. One module each; the engine knows none by name.

An atom has an input schema (marshmallow), the outputs it promises, and `start(context)`, which
answers at once (`Finished`, `Failed`) or says what it waits for (`Waiting`: a job instance, a time,
a person, an outside system). A waiting node is looked at again with `check(context)` whenever its task
advances (its job ended, its due time came), and `cancel(context)` ends what it started.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from marshmallow import Schema, ValidationError

from app.models import FlowTask, NodeState
from app.services.access import Actor
from app.status import NodeStatus


@dataclass(frozen=True)
class Finished:
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    error: str
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Waiting:
    """The node waits: `status` running (a job, a time), waiting_user or waiting_callback; `kept` is what
    check() needs later; `due_at` when the engine should look again without being told; `after` what to
    do once the node is recorded as waiting (start a call whose answer the node waits for)."""

    status: NodeStatus = NodeStatus.RUNNING
    kept: dict[str, Any] = field(default_factory=dict)
    due_at: datetime | None = None
    job_instance_id: int | None = None
    child_task_id: int | None = None
    after: Callable[[], Any] | None = None


Outcome = Finished | Failed | Waiting


@dataclass
class Context:
    """What an atom sees of the node it runs: its rendered inputs, and whom it acts for."""

    task: FlowTask
    state: NodeState
    inputs: dict[str, Any]
    actor: Actor
    # Every variable's value (secrets included) and the names of the secret ones.
    values: Mapping[str, Any]
    kinds: Mapping[str, str]
    secrets: frozenset[str]
    # Unique to this attempt: launches made with it happen once however often the start is retried.
    launch_key: str = ""
    # What the node kept before the engine moved it on (cancel() reads it to find the job to stop).
    kept_before: dict[str, Any] | None = None

    @property
    def kept(self) -> dict[str, Any]:
        return self.kept_before if self.kept_before is not None else (self.state.waiting or {})


class Atom:
    name: ClassVar[str]
    schema: ClassVar[type[Schema]]
    outputs: ClassVar[frozenset[str] | None] = frozenset()
    unrendered: ClassVar[frozenset[str]] = frozenset()
    # Node operations the atom answers to beyond the engine's own (approve, reject, callback).
    operations: ClassVar[frozenset[str]] = frozenset()
    # Only a project admin may save a flow that runs it.
    admin_only: ClassVar[bool] = False
    # Its start touches nothing outside the database (a sleep, an approval): the engine runs it inside
    # the pass, so what ends at once goes on in the same transaction.
    immediate: ClassVar[bool] = False

    def check_inputs(self, inputs: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Problems of the inputs as (path, message), checked against the atom's schema; inputs holding a
        reference are checked once rendered, at run time."""
        later = _referencing(inputs)
        try:
            self.schema().load(
                {name: value for name, value in inputs.items() if name not in later}, partial=later
            )
        except ValidationError as exc:
            return list(_flatten(exc.messages))
        return []

    def load(self, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """The rendered inputs loaded by the schema; ValidationError when they do not fit."""
        return self.schema().load(dict(inputs))

    def shown(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The inputs as they may be stored and shown (secret variables are masked already)."""
        return inputs

    def start(self, context: Context) -> Outcome:
        raise NotImplementedError

    def check(self, context: Context) -> Outcome | None:
        """The outcome of a waiting node once it has one, else None."""
        return None

    def cancel(self, context: Context) -> None:
        """End what the node started (its job instance, its subflow)."""

    def operate(self, context: Context, operation: str, data: Mapping[str, Any]) -> Outcome:
        """Answer an operation of `operations` on a waiting node; Conflict or Forbidden when refused."""
        raise NotImplementedError


def _referencing(inputs: Mapping[str, Any]) -> tuple[str, ...]:
    from app.flows.expressions import references

    return tuple(name for name, value in inputs.items() if references(value))


def _flatten(messages: Any, path: tuple[str, ...] = ()) -> list[tuple[str, str]]:
    if isinstance(messages, dict):
        return [pair for key, value in messages.items() for pair in _flatten(value, (*path, str(key)))]
    if isinstance(messages, list) and messages and all(isinstance(item, str) for item in messages):
        return [(".".join(path), "; ".join(messages))]
    if isinstance(messages, list):
        return [pair for item in messages for pair in _flatten(item, path)]
    return [(".".join(path), str(messages))]


def registry() -> dict[str, Atom]:
    """Every atom by name."""
    from app.flows.atoms import (
        approval,
        callback,
        file_transfer,
        http,
        job_plan,
        playbook,
        script,
        sleep,
        subflow,
    )

    modules = (approval, callback, file_transfer, http, job_plan, playbook, script, sleep, subflow)
    atoms = [module.ATOM for module in modules]
    return {atom.name: atom for atom in atoms}
