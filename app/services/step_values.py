"""What a step of a template's job reads when it runs: the job's global variables, each host's
namespace values, and which hosts succeeded or failed in the step before it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import HostResult, HostStatus, StepInstance, VariableType
from app.services.namespaces import namespace_values


@dataclass
class StepValues:
    # Environment variables of scripts and extra vars of playbooks, the same on every host.
    environment: dict[str, str] = field(default_factory=dict)
    extra_vars: dict[str, Any] = field(default_factory=dict)
    # Namespace values, by host name.
    per_host: dict[str, dict[str, str]] = field(default_factory=dict)
    # Values to mask in every output.
    secrets: list[str] = field(default_factory=list)


def step_values(step: StepInstance, host_names: list[str]) -> StepValues:
    job = step.job
    values = StepValues()
    namespace_defaults = {}
    for name, entry in job.variables.items():
        kind, value = entry["type"], entry["value"]
        if kind == VariableType.NAMESPACE:
            namespace_defaults[name] = value
        elif kind == VariableType.ARRAY:
            values.environment[name] = "\n".join(value)
            values.extra_vars[name] = value
        elif kind == VariableType.HOST_LIST:
            values.environment[name] = " ".join(value["addresses"])
            values.extra_vars[name] = value["hosts"]
        else:
            values.environment[name] = value
            values.extra_vars[name] = value
    for name, value in json.loads(job.secret_variables or "{}").items():
        values.environment[name] = values.extra_vars[name] = value
        values.secrets.append(value)
    declared = set(step.spec.get("namespaces", []))
    own = namespace_values(job.id, host_names)
    if declared:
        values.per_host = {
            host: {
                name: own.get(host, {}).get(name, namespace_defaults.get(name) or "")
                for name in sorted(declared)
            }
            for host in host_names
        }
    succeeded, failed = previous_hosts(step)
    values.environment.update(
        OPSFLOW_JOB_ID=str(job.id),
        OPSFLOW_PREVIOUS_SUCCESS_HOSTS=" ".join(succeeded),
        OPSFLOW_PREVIOUS_FAILED_HOSTS=" ".join(failed),
    )
    values.extra_vars.update(
        opsflow_job_id=job.id, opsflow_previous_success_hosts=succeeded, opsflow_previous_failed_hosts=failed
    )
    return values


def previous_hosts(step: StepInstance) -> tuple[list[str], list[str]]:
    """Names of the hosts that succeeded and of those that did not in the nearest earlier step that
    ran on hosts."""
    earlier = [other for other in step.job.steps if other.seq < step.seq and other.host_count]
    if not earlier:
        return [], []
    seq = max(other.seq for other in earlier)
    rows = db.session.execute(
        select(HostResult.host_name, HostResult.status)
        .where(
            HostResult.step_instance_id.in_([other.id for other in earlier if other.seq == seq]),
            HostResult.latest,
        )
        .order_by(HostResult.host_name)
    ).all()
    succeeded = sorted({name for name, status in rows if status == HostStatus.SUCCESS})
    failed = sorted({name for name, status in rows if status != HostStatus.SUCCESS} - set(succeeded))
    return succeeded, failed
