"""Compiling the slices of playbook steps: the user's playbook, unchanged, on the step's hosts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import select

from app.execution.compiler import Target
from app.execution.playbook import (
    PlaybookStep,
    RepositoryPlaybook,
    compile_playbook,
    compile_repository_playbook,
    repository_config,
)
from app.execution.runner import CALLBACK_DIR, RunRequest
from app.extensions import db
from app.models import Credential, Host, Repository, RepositoryRevision, Slice, StepType
from app.services import executions
from app.services.inventory import effective_variables, group_members
from app.services.playbook_runs import check_playbook_of
from app.services.repositories import REQUIREMENTS_DIR, directory_of, revision_dir
from app.services.step_values import step_values


def compile_playbook_slice(piece: Slice) -> RunRequest:
    step = piece.step
    spec = step.spec
    if "repository_id" in spec:
        return compile_repository_slice(piece)
    targets, groups, values = slice_inventory(piece, executions.slice_targets(piece))
    playbook = PlaybookStep(
        spec["content"],
        # The step's own extra vars are the more specific: they win over global variables of the same name.
        {**values.extra_vars, **spec.get("extra_vars", {})},
        spec.get("tags", []),
        spec.get("skip_tags", []),
        spec.get("limit"),
    )
    account = executions.step_account(spec)
    compiled = compile_playbook(playbook, targets, groups, executions.login_of(account))
    return executions.run_request(piece, compiled, len(targets), account, values.secrets)


def slice_inventory(piece: Slice, targets: list[Target]) -> tuple[list[Target], dict[str, list[str]], Any]:
    """The slice's targets with their own values, the project's groups among them, and the job's values."""
    step = piece.step
    names = [target.name for target in targets]
    hosts = db.session.scalars(
        select(Host).where(Host.project_id == step.job.project_id, Host.name.in_(names))
    ).all()
    name_of = {host.id: host.name for host in hosts}
    # The project's groups, so that a playbook written for the same inventory finds its hosts.
    groups = {group: [name_of[id] for id in ids] for group, ids in group_members(list(hosts)).items()}
    values = step_values(step, names)
    targets = [
        replace(target, variables={**target.variables, **values.per_host.get(target.name, {})})
        for target in targets
    ]
    return targets, groups, values


def compile_repository_slice(piece: Slice) -> RunRequest:
    """A repository playbook's slice: run in its revision's directory, with what it installed."""
    step = piece.step
    spec = step.spec
    repository = db.session.get(Repository, spec["repository_id"])
    row = repository and db.session.scalar(
        select(RepositoryRevision).where(
            RepositoryRevision.repository_id == repository.id, RepositoryRevision.revision == spec["revision"]
        )
    )
    if row is None:
        raise ValueError(
            f"revision {spec['revision']} of repository {spec['repository_id']} is no longer kept"
        )
    check_playbook_of(row, spec["playbook"])
    tree = revision_dir(repository.id, row.revision)
    if spec["inventory_file"]:
        chosen: list[Target] = []
    elif spec["hostless"]:
        hosts = db.session.scalars(select(Host).where(Host.id.in_(spec["host_ids"]))).all()
        variables = effective_variables(list(hosts))
        chosen = [
            Target(host.name, host.address, host.port, host.connection, variables[host.id]) for host in hosts
        ]
    else:
        chosen = executions.slice_targets(piece)
    targets, groups, values = slice_inventory(piece, chosen)
    cfg = tree / "ansible.cfg"
    config = repository_config(cfg.read_text(errors="replace") if cfg.is_file() else None, str(tree))
    cache = directory_of(repository.id) / REQUIREMENTS_DIR
    requirements = {kind: str(cache / key / kind) for kind, key in row.requirements.items()}
    vault = (
        db.session.get(Credential, spec["vault_credential_id"]) if spec.get("vault_credential_id") else None
    )
    run = RepositoryPlaybook(
        workdir=str(tree),
        playbook=spec["playbook"],
        inventory_file=spec["inventory_file"],
        extra_vars={**values.extra_vars, **spec["extra_vars"]},
        tags=spec["tags"],
        skip_tags=spec["skip_tags"],
        limit=spec["limit"],
        check=bool(spec["check"]),
        diff=bool(spec["diff"]),
        verbosity=spec["verbosity"] or 0,
        become=spec["become"],
        mode=spec["mode"],
    )
    account = executions.step_account(spec)
    compiled = compile_repository_playbook(
        run, targets, groups, executions.login_of(account), config, str(CALLBACK_DIR), requirements
    )
    secrets = [*values.secrets, *(vault.secrets if vault else [])]
    request = executions.run_request(
        piece,
        compiled,
        max(len(targets), piece.host_count),
        account,
        secrets,
        readable=[tree, *map(Path, requirements.values())],
    )
    request.vault_password = vault.password if vault else None
    request.vault_id = vault.vault_id if vault else None
    request.capture_output = spec["hostless"]
    return request


executions.STEP_COMPILERS[StepType.PLAYBOOK] = compile_playbook_slice
