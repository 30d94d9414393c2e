"""Namespace variables: each host's own value, set from its output during a step.

A host sets its value of the namespace variable `name` by printing a line
`OPSFLOW_SET name=value` to stdout; its last such line wins. Later steps of the
job read the value of each host as their own (an environment variable of a script,
a host variable of a playbook).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sqlalchemy import delete, select, tuple_

from app.extensions import db
from app.models import HostResult, NamespaceValue, StepInstance
from app.status import HOST_PENDING

SET_LINE = re.compile(r"^OPSFLOW_SET ([A-Za-z_][A-Za-z0-9_]*)=(.*?)\r?$", re.MULTILINE)


def values_in(stdout: str, names: Iterable[str]) -> dict[str, str]:
    """The namespace values an output sets, among `names`."""
    wanted = set(names)
    return {name: value for name, value in SET_LINE.findall(stdout) if name in wanted}


def record_namespace_values(step: StepInstance) -> None:
    """Store what the step's ended hosts set, replacing what they had set before."""
    names = step.spec["namespaces"]
    rows = db.session.execute(
        select(HostResult.host_name, HostResult.stdout).where(
            HostResult.step_instance_id == step.id,
            HostResult.latest,
            HostResult.status.not_in(HOST_PENDING),
        )
    ).all()
    found = [(host, name, value) for host, stdout in rows for name, value in values_in(stdout, names).items()]
    if not found:
        return
    job_id = step.job_instance_id
    db.session.execute(
        delete(NamespaceValue).where(
            NamespaceValue.job_instance_id == job_id,
            tuple_(NamespaceValue.host_name, NamespaceValue.name).in_(
                {(host, name) for host, name, _ in found}
            ),
        )
    )
    db.session.add_all(
        NamespaceValue(
            job_instance_id=job_id, name=name, host_name=host, value=value, step_instance_id=step.id
        )
        for host, name, value in found
    )


def namespace_values(job_id: int, host_names: list[str]) -> dict[str, dict[str, str]]:
    """{host name: {variable: value}} of these hosts in the job."""
    values: dict[str, dict[str, str]] = {}
    for host, name, value in db.session.execute(
        select(NamespaceValue.host_name, NamespaceValue.name, NamespaceValue.value).where(
            NamespaceValue.job_instance_id == job_id, NamespaceValue.host_name.in_(host_names)
        )
    ):
        values.setdefault(host, {})[name] = value
    return values
