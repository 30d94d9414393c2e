"""A project's SSH host keys: the known_hosts file its runs record first keys into.

Runs append to the file through ssh itself (StrictHostKeyChecking=accept-new). A line ssh
wrote has no comment; after a run, `stamp` gives each such line the time it was first seen as its
comment, which ssh ignores. Reading and forgetting a host's keys work on the same lines.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

FILE_NAME = "known_hosts"
LOCK_NAME = ".lock"
SEEN_PREFIX = "first-seen="
SSH_DEFAULT_PORT = 22


@dataclass(frozen=True)
class KnownKey:
    key_type: str
    fingerprint: str
    first_seen: datetime | None


def known_as(address: str, port: int | None) -> str:
    """The name ssh records a host under: the address, bracketed with the port unless it is 22."""
    if port in (None, SSH_DEFAULT_PORT):
        return address
    return f"[{address}]:{port}"


def fingerprint(key: str) -> str:
    """The key's SHA256 fingerprint, as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(base64.b64decode(key)).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def names_match(names: str, name: str) -> bool:
    """Whether a line's host field (comma-separated names, or one hashed name) names `name`."""
    if names.startswith("|1|"):
        _, _, salt, hashed = names.split("|", 3)
        mac = hmac.new(base64.b64decode(salt), name.encode(), hashlib.sha1).digest()
        return hmac.compare_digest(base64.b64encode(mac).decode(), hashed)
    return name in names.split(",")


def parse(line: str) -> tuple[str, str, str, str] | None:
    """(names, key type, key, comment) of an entry line; None for blanks, comments and marked lines."""
    fields = line.split(maxsplit=3)
    if len(fields) < 3 or fields[0].startswith(("#", "@")):
        return None
    return fields[0], fields[1], fields[2], fields[3].strip() if len(fields) == 4 else ""


def first_seen(comment: str) -> datetime | None:
    if not comment.startswith(SEEN_PREFIX):
        return None
    try:
        return datetime.fromisoformat(comment.removeprefix(SEEN_PREFIX))
    except ValueError:
        return None


def keys_in(text: str, name: str) -> list[KnownKey]:
    keys = []
    for line in text.splitlines():
        entry = parse(line)
        if entry and names_match(entry[0], name):
            keys.append(KnownKey(entry[1], fingerprint(entry[2]), first_seen(entry[3])))
    return keys


def without(text: str, name: str) -> tuple[str, int]:
    """The text without the lines of `name`, and how many lines went."""
    kept, removed = [], 0
    for line in text.splitlines():
        entry = parse(line)
        if entry and names_match(entry[0], name):
            removed += 1
        else:
            kept.append(line)
    return "".join(f"{line}\n" for line in kept), removed


def stamped(text: str, now: datetime) -> str:
    """The text with every entry that has no comment yet marked as first seen `now`."""
    lines = []
    for line in text.splitlines():
        entry = parse(line)
        if entry and not entry[3]:
            line = f"{line.rstrip()} {SEEN_PREFIX}{now.isoformat(timespec='seconds')}"
        lines.append(line)
    return "".join(f"{line}\n" for line in lines)


class ProjectKnownHosts:
    """The known_hosts of one project, in a directory of its own so that runs can be given it
    writable while the file is replaced (a rename) when a key is forgotten."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / FILE_NAME

    def ensure(self) -> Path:
        """Create the directory and an empty file when missing; the file's path."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        return self.path

    def read(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.directory / LOCK_NAME, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _replace(self, text: str) -> None:
        temporary = self.directory / f".{FILE_NAME}.{os.getpid()}"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, self.path)

    def keys(self, name: str) -> list[KnownKey]:
        return keys_in(self.read(), name)

    def forget(self, name: str) -> int:
        """Remove the host's keys; how many there were."""
        with self._locked():
            text, removed = without(self.read(), name)
            if removed:
                self._replace(text)
        return removed

    def stamp(self, now: datetime) -> None:
        """Mark the keys runs recorded since the last stamp as first seen now."""
        with self._locked():
            text = self.read()
            marked = stamped(text, now)
            if marked != text:
                self._replace(marked)
