"""script: the body of a script execution, run as an ordinary job instance (launch type flow).

The script's content and parameters are never rendered: the flow's variables reach it as environment
variables of the same names, as in job templates, so `echo ${version}` prints the value and a value
holding `$(rm -rf /)` stays text. Outputs: status, counts, success_hosts, failed_hosts, job_id, and each
`OPSFLOW_SET key=value` line the hosts printed, as {key: {host: value}} and, when every host agrees,
also as {key: value}."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from marshmallow import fields
from sqlalchemy import select

from app.extensions import db
from app.flows.atoms import Atom, Context, Failed, Finished, Outcome, Waiting
from app.flows.graph import VariableKind
from app.models import HostResult, HostStatus, JobInstance, LaunchType, RunStatus, StepInstance, VariableType
from app.schemas.job import ScriptExecutionSchema
from app.services import executions, idempotency
from app.services.errors import Conflict
from app.services.inventory import resolve_targets
from app.services.launches import shown_value
from app.services.namespaces import SET_LINE

# The launch endpoint flow nodes' idempotency keys belong to.
FLOW_NODE_ENDPOINT = "flow-nodes"
RESULT_OUTPUTS = frozenset({"status", "counts", "success_hosts", "failed_hosts", "job_id"})


class ScriptInputs(ScriptExecutionSchema):
    class Meta:
        exclude = ("idempotency_key",)

    name = fields.String()


class JobAtom(Atom):
    """An atom that runs one job instance and waits for it: its outcome is the job's."""

    outputs = None

    def start(self, context: Context) -> Outcome:
        data = self.load(context.inputs)
        # The attempt's launch key makes a start tried again (after a lost pass) find the job it launched.
        job, _ = idempotency.launch_once(
            context.task.project_id,
            FLOW_NODE_ENDPOINT,
            context.launch_key,
            {},
            lambda claim: self.launch(context, {**data, "idempotency": claim["idempotency"]}),
        )
        return Waiting(kept={"job_id": job.id}, job_instance_id=job.id)

    def launch(self, context: Context, data: dict[str, Any]) -> JobInstance:
        """Launch the node's job instance; `data["idempotency"]` is the claim it is launched under."""
        raise NotImplementedError

    def check(self, context: Context) -> Outcome | None:
        return job_outcome(context.kept["job_id"])

    def cancel(self, context: Context) -> None:
        job_id = context.kept.get("job_id")
        if job_id is not None:
            with contextlib.suppress(Conflict):
                executions.cancel(
                    context.actor, context.task.project_id, job_id, f"flow task {context.task.id}"
                )


class Script(JobAtom):
    name = "script"
    schema = ScriptInputs
    unrendered = frozenset({"script", "params"})

    def launch(self, context: Context, data: dict[str, Any]) -> JobInstance:
        return launch_job(
            context,
            data,
            "script_execution",
            lambda hosts: one_step(executions.script_step(context.task.project_id, data, hosts), hosts),
        )


def one_step(built: tuple[StepInstance, list], hosts: list) -> tuple[list[tuple[StepInstance, list]], list]:
    step, warnings = built
    return [(step, hosts)], warnings


def launch_job(context: Context, data: dict[str, Any], kind: str, build) -> JobInstance:
    """A job instance on the targets of `data`, reading the flow's variables, launched once per attempt
    (the attempt's launch key is its idempotency key). `build(hosts)` answers the steps, each with its
    hosts, and the rules' warnings; the last step is the one the node runs."""
    project_id = context.task.project_id
    hosts = resolve_targets(project_id, data["targets"])
    planned, warnings = build(hosts)
    step = planned[-1][0]
    step.name = data.get("name") or context.state.node_id
    for instance, _ in planned:
        instance.spec = {**instance.spec, "namespaces": []}
    public, secret = environment_values(context)
    job = JobInstance(
        project_id=project_id,
        name=f"{context.task.name}: {step.name}"[:255],
        kind=kind,
        host_count=len(hosts),
        launched_by=context.task.launched_by,
        launch_type=LaunchType.FLOW,
        request={"flow_task_id": context.task.id, "node": context.state.node_id},
        warnings=warnings,
        idempotency=data["idempotency"],
        variables=public,
        secret_variables=json.dumps(secret) if secret else None,
    )
    job.steps.extend(instance for instance, _ in planned)
    return executions.enqueue(job, [members for _, members in planned])


def environment_values(context: Context) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The flow's variables as a job instance keeps them: public {name: {type, value}}, secret {name:
    value}."""
    public: dict[str, dict[str, Any]] = {}
    secret: dict[str, str] = {}
    for name, kind in context.kinds.items():
        value = context.values.get(name)
        if value is None:
            continue
        if kind == VariableKind.SECRET:
            secret[name] = str(value)
        elif kind == VariableKind.HOST_LIST:
            hosts = resolve_targets(context.task.project_id, value, f"variables.{name}")
            public[name] = {
                "type": VariableType.HOST_LIST,
                "value": shown_value(VariableType.HOST_LIST, value, hosts),
            }
        elif kind == VariableKind.ARRAY:
            public[name] = {"type": VariableType.ARRAY, "value": [str(item) for item in value]}
        elif isinstance(value, bool):
            public[name] = {"type": VariableType.STRING, "value": "true" if value else "false"}
        else:
            public[name] = {
                "type": VariableType.STRING,
                "value": value if isinstance(value, str) else json.dumps(value),
            }
    return public, secret


def job_outcome(job_id: int) -> Outcome | None:
    """The outcome of a node's job instance once it has ended."""
    job = db.session.get(JobInstance, job_id)
    if job is None:
        return Failed(f"job instance {job_id} is gone")
    status = RunStatus(job.status)
    if not status.final:
        return None
    rows = db.session.execute(
        select(HostResult.host_name, HostResult.status, HostResult.stdout).where(
            HostResult.job_instance_id == job_id
        )
    ).all()
    counts: dict[str, int] = {}
    per_key: dict[str, dict[str, str]] = {}
    for host, host_status, stdout in rows:
        counts[host_status] = counts.get(host_status, 0) + 1
        for key, value in SET_LINE.findall(stdout or ""):
            per_key.setdefault(key, {})[host] = value
    outputs: dict[str, Any] = {
        "status": str(status),
        "counts": counts,
        "success_hosts": sorted(host for host, host_status, _ in rows if host_status == HostStatus.SUCCESS),
        "failed_hosts": sorted(host for host, host_status, _ in rows if host_status != HostStatus.SUCCESS),
        "job_id": job_id,
    }
    for key, by_host in per_key.items():
        if key in RESULT_OUTPUTS:
            continue
        agreed = set(by_host.values())
        outputs[key] = next(iter(agreed)) if len(agreed) == 1 and len(by_host) == len(rows) else by_host
        outputs[f"{key}_by_host"] = by_host
    if status in (RunStatus.SUCCESS, RunStatus.IGNORED_ERROR, RunStatus.SKIPPED):
        return Finished(outputs)
    return Failed(f"job instance {job_id} ended {status}", outputs)


ATOM = Script()
