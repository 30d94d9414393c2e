"""The compiler of file transfers: pure functions from files, paths and hosts to playbook data.

A transfer whose sources are hosts runs in two steps. The fetch step copies each source path (a file, a
directory, or a glob of files) from the source hosts into the job's staging directory on the controller,
one sub-directory per source host, so equal names from different hosts never collide. The push step then
writes every file to the targets with `opsflow_copy` (plugins/action): Ansible's `copy`, given the
file's SHA-1 so the controller does not hash it again for every host. It sends a file only when the
target's checksum differs (a re-run reports it unchanged), sends it to a temporary name, checks the
received bytes against the SHA-1 on the target and only then renames them into place (a cancelled
transfer leaves no partial file at the final path).

Paths and names are user data: they reach Ansible as `!unsafe` loop items and variables, never as
templates. Target path variables are expanded here, in Python.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from app.execution.compiler import GROUPS, Account, CompiledStep, Target, Unsafe, inventory, unsafe

# A controller file's path variables: it has no source host.
CONTROLLER = "controller"
PATH_VARIABLE = re.compile(r"\$\{([^}]*)\}")
PATH_VARIABLES = ("source_name", "source_address", "date")
GLOB_CHARS = re.compile(r"[*?\[]")
STRICT, FORCE, SAFE = "strict", "force", "safe"
MODES = (STRICT, FORCE, SAFE)
SAFE_LAYOUTS = ("host", "host_date")
NOTHING_TO_PUSH = "nothing to push: no source host gave a file"


@dataclass(frozen=True)
class Origin:
    """Where files come from: a source host, or the controller (uploads and inline files)."""

    name: str = CONTROLLER
    address: str = CONTROLLER


@dataclass(frozen=True)
class PushFile:
    """One file to write on every target: `src` on the controller, `relative` below the target directory."""

    src: str
    relative: str
    size: int
    sha1: str
    origin: Origin = Origin()


@dataclass(frozen=True)
class SpeedLimit:
    """Bytes per second on the wire, per host, and whether the controller's scp has `-O`."""

    bytes_per_second: int
    # OpenSSH 9 made scp speak SFTP, which hosts without the SFTP subsystem refuse ("scp: Connection
    # closed"); its legacy protocol (-O) needs only an scp on the host. Older scp speak only that one.
    scp_legacy_flag: bool = True


@dataclass(frozen=True)
class PushPlan:
    target_path: str
    mode: str = STRICT
    safe_layout: str = "host"
    date: str = ""
    # None: as fast as it goes.
    speed_limit: SpeedLimit | None = None


def expand(target_path: str, origin: Origin, date: str) -> str:
    """The target path with ${source_name}, ${source_address} and ${date} replaced for one origin."""
    values = {"source_name": origin.name, "source_address": origin.address, "date": date}
    return PATH_VARIABLE.sub(lambda match: values[match.group(1)], target_path)


def unknown_variables(target_path: str) -> list[str]:
    return [name for name in PATH_VARIABLE.findall(target_path) if name not in PATH_VARIABLES]


def target_directory(plan: PushPlan, origin: Origin) -> str:
    """Where an origin's files land: the expanded path, and in safe mode a sub-directory per origin."""
    directory = expand(plan.target_path, origin, plan.date)
    if plan.mode == SAFE:
        directory = posixpath.join(directory, origin.name)
        if plan.safe_layout == "host_date":
            directory = posixpath.join(directory, plan.date)
    return posixpath.normpath(directory)


def destinations(files: list[PushFile], plan: PushPlan) -> list[tuple[PushFile, str, str]]:
    """Each file with its target directory and its final path."""
    placed = []
    for file in files:
        directory = target_directory(plan, file.origin)
        placed.append((file, directory, posixpath.normpath(posixpath.join(directory, file.relative))))
    return placed


def push_tasks(files: list[PushFile], plan: PushPlan) -> list[dict[str, Any]]:
    """Tasks that write every file on a target, with the checks and directories the mode asks for."""
    if not files:
        return [{"name": "nothing to push", "fail": {"msg": NOTHING_TO_PUSH}}]
    placed = destinations(files, plan)
    bases = sorted({directory for _, directory, _ in placed})
    parents = sorted({posixpath.dirname(path) for _, _, path in placed})
    tasks: list[dict[str, Any]] = []
    if plan.mode == STRICT:
        tasks += [
            {
                "name": "check target directories",
                "stat": {"path": "{{ item }}", "get_checksum": False},
                "loop": unsafe(bases),
                "register": "opsflow_dirs",
            },
            {
                "name": "target directories must exist",
                "fail": {
                    "msg": "{{ 'target directory missing: ' if not item.stat.exists "
                    "else 'target is not a directory: ' }}{{ item.item }}"
                },
                "loop": "{{ opsflow_dirs.results }}",
                "when": "not (item.stat.isdir | default(false))",
            },
        ]
        # Sub-directories a directory source brings with it are part of its content.
        parents = [path for path in parents if path not in bases]
    if parents:
        tasks.append(
            {
                "name": "create directories",
                "file": {"path": "{{ item }}", "state": "directory"},
                "loop": unsafe(parents),
            }
        )
    items = [
        {
            "seq": seq,
            "src": file.src,
            "dest": path,
            "size": file.size,
            "sha1": file.sha1,
            "source": file.origin.name,
        }
        for seq, (file, _, path) in enumerate(placed, start=1)
    ]
    tasks.append(
        {
            "name": "push files",
            "opsflow_copy": {
                "src": "{{ item.src }}",
                "dest": "{{ item.dest }}",
                "force": True,
                "checksum": "{{ item.sha1 }}",
            },
            "loop": unsafe(items),
            "loop_control": {"label": "{{ item.seq }}"},
            "vars": {"opsflow_phase": "push"},
        }
    )
    return tasks


def push_task_count(plan: PushPlan) -> int:
    """Tasks a push runs per host at most: the mode's checks, directories to create, the files."""
    return len(push_tasks([PushFile("file", "directory/file", 0, "")], plan))


def scp_arguments(limit: SpeedLimit) -> str:
    """scp's options for a limited transfer: -l is in Kbit/s."""
    rate = f"-l {max(limit.bytes_per_second * 8 // 1000, 1)}"
    return f"-O {rate}" if limit.scp_legacy_flag else rate


def transfer_inventory(
    targets: list[Target], account: Account | None, speed_limit: SpeedLimit | None
) -> dict:
    by_connection: dict[str, list[Target]] = {}
    for target in targets:
        by_connection.setdefault(target.connection, []).append(target)
    data = inventory({GROUPS[connection]: members for connection, members in by_connection.items()}, account)
    if speed_limit:
        # Ansible's other ways to send files (sftp, or piped through dd when sftp fails) have no limit.
        data["all"]["vars"].update(
            ansible_ssh_transfer_method="scp", ansible_scp_extra_args=scp_arguments(speed_limit)
        )
    return data


def compile_push(
    files: list[PushFile],
    plan: PushPlan,
    targets: list[Target],
    account: Account | None,
    inline: dict[str, bytes] | None = None,
) -> CompiledStep:
    """Playbook and inventory that write `files` on every target; `inline` files (by their `src`)
    are written beside the playbook."""
    tasks = push_tasks(files, plan)
    playbook = [{"name": "push", "hosts": "all", "gather_facts": False, "tasks": tasks}]
    inventory_data = transfer_inventory(targets, account, plan.speed_limit)
    return CompiledStep(playbook, inventory_data, dict(inline or {}), task_count=len(tasks))


def source_pattern(path: str) -> tuple[str, str]:
    """The directory to look in and the name pattern of a source path; an exact name has its
    glob characters escaped, so it matches only itself."""
    path = path.rstrip("/") or "/"
    directory, name = posixpath.split(path)
    if not GLOB_CHARS.search(name):
        name = GLOB_CHARS.sub(lambda match: f"[{match.group(0)}]", name)
    return directory or "/", name


def fetch_tasks(path: str, staging: str) -> tuple[list[dict[str, Any]], dict[str, Unsafe]]:
    """Tasks that copy a source path (file, directory or glob) from a host into staging/<host name>/.

    A directory comes with its own name and its tree below; a glob matches files directly in
    its directory. Nothing found fails the host with "source missing". Returns the tasks and the
    play variables that hold the paths.
    """
    directory, pattern = source_pattern(path)
    is_file = "opsflow_stat.stat.isreg | default(false)"
    is_dir = "opsflow_stat.stat.isdir | default(false)"
    return [
        {
            "name": "look at the source",
            "stat": {"path": "{{ opsflow_source }}", "get_checksum": False},
            "register": "opsflow_stat",
        },
        {
            "name": "find source files",
            "find": {
                "paths": f"{{{{ opsflow_source if {is_dir} else opsflow_directory }}}}",
                "patterns": f"{{{{ '*' if {is_dir} else opsflow_pattern }}}}",
                "recurse": f"{{{{ {is_dir} }}}}",
                "file_type": "file",
                "hidden": True,
            },
            "when": f"not ({is_file})",
            "register": "opsflow_found",
        },
        {
            "name": "source must exist",
            "fail": {"msg": "source missing: {{ opsflow_source }}"},
            "when": f"not ({is_file}) and not (opsflow_found.files | default([]))",
        },
        {
            "name": "fetch files",
            "fetch": {
                "src": "{{ item.path }}",
                "dest": "{{ opsflow_staging }}/{{ inventory_hostname }}/"
                "{{ item.path | relpath(opsflow_directory) }}",
                "flat": True,
            },
            "loop": f"{{{{ [opsflow_stat.stat] if {is_file} else opsflow_found.files }}}}",
            "loop_control": {"label": "{{ item.path }}"},
        },
    ], {
        "opsflow_source": Unsafe(path.rstrip("/") or "/"),
        "opsflow_directory": Unsafe(directory),
        "opsflow_pattern": Unsafe(pattern),
        "opsflow_staging": Unsafe(staging),
    }


def compile_fetch(
    path: str, staging: str, sources: list[Target], account: Account | None, speed_limit: SpeedLimit | None
) -> CompiledStep:
    """Playbook and inventory that bring `path` from every source host into `staging`."""
    tasks, variables = fetch_tasks(path, staging)
    playbook = [{"name": "fetch", "hosts": "all", "gather_facts": False, "vars": variables, "tasks": tasks}]
    inventory_data = transfer_inventory(sources, account, speed_limit)
    return CompiledStep(playbook, inventory_data, {}, task_count=len(tasks))
