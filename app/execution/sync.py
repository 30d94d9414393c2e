"""Syncing a repository on a worker: the branch's newest commit fetched with git (or the uploaded archive
unpacked) into a directory of its own, its requirements installed with ansible-galaxy, the tree made
read-only. Every command runs with a clean environment, is watched for a cancel, a timeout and the
slice's heartbeat, and dies with its whole process group when it must stop.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from app.config import REPOSITORY_ENTRIES_MAX
from app.execution import archives

POLL_SECONDS = 0.5
LOG_TAIL_CHARS = 2000
ROLE_REQUIREMENTS = "roles/requirements.yml"
COLLECTION_REQUIREMENTS = "collections/requirements.yml"
ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$OPSFLOW_GIT_USERNAME" ;;
  *) printf '%s\\n' "$OPSFLOW_GIT_TOKEN" ;;
esac
"""


class SyncFailed(Exception):
    """A sync that cannot go on; the message says why (a requirement, a remote, an archive)."""


class Stopped(Exception):
    """A sync cancelled or past its timeout: `status` is terminated or timeout."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Watch:
    """Called between polls of a running command: raises Stopped to end it."""

    check: Callable[[], None]


@dataclass
class GitLogin:
    url: str
    branch: str
    private_key: str | None = None
    username: str | None = None
    token: str | None = None
    allow_file: bool = False


@dataclass
class Log:
    """What the sync printed, its secrets masked."""

    secrets: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        for secret in sorted({s for s in self.secrets if s}, key=len, reverse=True):
            text = text.replace(secret, "******")
        self.lines.append(text.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def run(command: list[str], env: dict[str, str], watch: Watch, log: Log, cwd: Path | None = None) -> str:
    """Run a command to its end, its output added to the log; SyncFailed when it fails."""
    log.add("$ " + " ".join(shlex.quote(part) for part in command))
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=env, cwd=cwd, start_new_session=True,
        )  # fmt: skip
        try:
            while True:
                try:
                    process.wait(POLL_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    watch.check()
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        output.seek(0)
        text = output.read().decode(errors="replace")
    if text.strip():
        log.add(text)
    if process.returncode:
        tail = log.lines[-1][-LOG_TAIL_CHARS:] if text.strip() else ""
        raise SyncFailed(
            f"{Path(command[0]).name} {command[1]} ended with {process.returncode}: {tail}".strip()
        )
    return text


def base_environment(home: Path) -> dict[str, str]:
    """What every command of a sync runs with: none of the service's settings, a home of its own."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "HOME": str(home),
        "LANG": "C.UTF-8",
    }


def git_environment(login: GitLogin, home: Path, known_hosts: Path) -> dict[str, str]:
    """git's environment: no system or user configuration, no prompt, the allowed protocols only, and the
    credential through a key file or an askpass script of `home` (removed with it)."""
    env = {
        **base_environment(home),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_ALLOW_PROTOCOL": "https:ssh" + (":file" if login.allow_file else ""),
    }
    ssh = [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new",
        "-o", f"UserKnownHostsFile={known_hosts}", "-o", "ConnectTimeout=20",
    ]  # fmt: skip
    if login.private_key:
        key = home / "key"
        write_private(key, login.private_key.rstrip("\n") + "\n", 0o600)
        ssh += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    env["GIT_SSH_COMMAND"] = " ".join(shlex.quote(part) for part in ssh)
    if login.token:
        askpass = home / "askpass"
        write_private(askpass, ASKPASS, 0o700)
        env.update(
            GIT_ASKPASS=str(askpass), OPSFLOW_GIT_USERNAME=login.username or "", OPSFLOW_GIT_TOKEN=login.token
        )
    return env


def write_private(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def fetch(login: GitLogin, cache: Path, home: Path, watch: Watch, log: Log) -> tuple[str, str]:
    """Fetch the branch's newest commit into the bare repository `cache`; (commit id, its subject)."""
    env = git_environment(login, home, cache.parent / "known_hosts")
    if not (cache / "HEAD").exists():
        run(["git", "init", "--bare", "--quiet", str(cache)], env, watch, log)
    ref = f"refs/heads/{login.branch}"
    run(
        ["git", "-C", str(cache), "fetch", "--depth=1", "--no-tags", "--force", "--", login.url,
         f"+{ref}:refs/opsflow/sync"],
        env, watch, log,
    )  # fmt: skip
    commit = run(
        ["git", "-C", str(cache), "rev-parse", "refs/opsflow/sync^{commit}"], env, watch, log
    ).strip()
    subject = run(["git", "-C", str(cache), "log", "-1", "--format=%s", commit], env, watch, log).strip()
    return commit, subject


def checkout(
    cache: Path, commit: str, destination: Path, home: Path, watch: Watch, log: Log, limit: int
) -> int:
    """The commit's tree in `destination`, unpacked with the checks of an archive; returns its entries."""
    tarball = home / "tree.tar.gz"
    run(
        ["git", "-C", str(cache), "archive", "--format=tar.gz", f"--output={tarball}", commit],
        base_environment(home),
        watch,
        log,
    )
    return unpack_archive(tarball, destination, limit)


def unpack_archive(archive: Path, destination: Path, limit: int) -> int:
    try:
        return archives.unpack(archive, destination, limit, REPOSITORY_ENTRIES_MAX)
    except archives.ArchiveRefused as exc:
        raise SyncFailed(exc.message) from exc


def install_requirements(
    tree: Path, cache: Path, home: Path, galaxy_server: str | None, allow_file: bool,
    refresh: bool, watch: Watch, log: Log,
) -> dict[str, str]:  # fmt: skip
    """Install the tree's roles/requirements.yml and collections/requirements.yml into `cache`, a directory
    per kind and checksum (of the file and of the repository files it names); returns {kind: key}."""
    keys = {}
    for kind, relative in (("roles", ROLE_REQUIREMENTS), ("collections", COLLECTION_REQUIREMENTS)):
        path = tree / relative
        if not path.is_file():
            continue
        entries = requirement_entries(path, kind)
        digest = hashlib.sha256(path.read_bytes())
        resolved = [
            resolve_requirement(entry, tree, path, kind, galaxy_server, allow_file) for entry in entries
        ]
        for _, entry in resolved:
            local = entry.get("src") if kind == "roles" else entry.get("source")
            if isinstance(local, str) and local.startswith("/"):
                digest.update(Path(local).read_bytes() if Path(local).is_file() else local.encode())
        key = f"{kind}-{digest.hexdigest()}"
        keys[kind] = key
        target = cache / key
        if target.is_dir() and not refresh:
            log.add(f"{relative}: installed already ({key[:20]}...)")
            continue
        staging = cache / f".{key}-{secrets.token_hex(4)}"
        staging.mkdir(parents=True)
        env = {**base_environment(home), "ANSIBLE_CONFIG": str(empty_config(home))}
        try:
            for index, (label, entry) in enumerate(resolved):
                single = home / f"requirement-{kind}-{index}.yml"
                single.write_text(yaml.safe_dump({kind: [entry]} if kind == "collections" else [entry]))
                command = ["ansible-galaxy", "role" if kind == "roles" else "collection", "install",
                           "-r", str(single), "-p", str(staging / kind)]  # fmt: skip
                if galaxy_server:
                    command += ["--server", galaxy_server]
                try:
                    run(command, env, watch, log, cwd=home)
                except SyncFailed as exc:
                    raise SyncFailed(
                        f"requirement {label} of {relative} could not be installed: {exc}"
                    ) from exc
            if refresh:
                remove_tree(target)
            os.replace(staging, target)
        finally:
            if staging.exists():
                remove_tree(staging)
        make_read_only(target)
    return keys


def empty_config(home: Path) -> Path:
    """An ansible.cfg of nothing: the repository's own must not steer ansible-galaxy on the worker."""
    path = home / "galaxy.cfg"
    path.touch()
    return path


def requirement_entries(path: Path, kind: str) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SyncFailed(f"{path.parent.name}/{path.name} is not valid YAML: {exc}") from exc
    if isinstance(data, dict):
        data = data.get(kind) or []
    if not isinstance(data, list):
        raise SyncFailed(f"{path.parent.name}/{path.name} lists no {kind}")
    return [{"src": item} if isinstance(item, str) else item for item in data if item]


def resolve_requirement(
    entry: dict[str, Any], tree: Path, path: Path, kind: str, galaxy_server: str | None, allow_file: bool
) -> tuple[str, dict[str, Any]]:
    """(how the sync names it, the entry with the repository's files as absolute paths); SyncFailed for a
    source this machine may not use."""
    from app.services.errors import Invalid
    from app.services.repositories import check_git_url

    if not isinstance(entry, dict):
        raise SyncFailed(f"{path.parent.name}/{path.name}: {entry!r} is not a requirement")
    source_key = "src" if kind == "roles" else "source"
    source = str(entry.get(source_key) or entry.get("name") or "")
    label = repr(str(entry.get("name") or source))
    source_type = entry.get("type") if kind == "collections" else entry.get("scm")
    url = source.removeprefix("git+")
    if source_type == "git" or source.startswith("git+") or url.endswith(".git"):
        try:
            check_git_url(url.split(",")[0], allow_file)
        except Invalid as exc:
            raise SyncFailed(f"requirement {label}: {exc.message}") from exc
        return label, entry
    if source.startswith("https://"):
        return label, entry
    for base in (tree, path.parent):
        local = (base / source.removeprefix("file://")).resolve()
        if local.exists() and (local == tree.resolve() or tree.resolve() in local.parents):
            return label, {**entry, source_key: str(local)}
        if local.exists():
            raise SyncFailed(f"requirement {label} names a file outside the repository")
    if not galaxy_server:
        raise SyncFailed(
            f"requirement {label} comes from Galaxy, and no Galaxy server is configured "
            "(OPSFLOW_GALAXY_SERVER)"
        )
    return label, entry


def make_read_only(tree: Path) -> None:
    """No one writes a synced tree again: files keep only their read (and execute) bits."""
    for directory, _, filenames in os.walk(tree, topdown=False):
        for name in filenames:
            path = Path(directory) / name
            if not path.is_symlink():
                mode = path.stat().st_mode
                path.chmod(0o555 if mode & 0o111 else 0o444)
        os.chmod(directory, 0o555)


def remove_tree(path: Path) -> None:
    """Delete a tree whose directories were made read-only."""
    if not path.exists():
        return
    for directory, _, _ in os.walk(path):
        os.chmod(directory, 0o700)
    shutil.rmtree(path, ignore_errors=True)
