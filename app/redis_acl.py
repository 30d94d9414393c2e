"""Redis users: the service's own, with every right, and the runs', which may only add events.

A run's callback plugin and its watchdog only XADD batches to the event stream (the runner polls the
cancel key and keeps the heartbeat outside the sandbox, with the service's connection). A script on a
local host inherits the run's connection, so the runs' user is limited to that: no reading keys, no
queue, no pub/sub, no administration. The embedded Redis gets both users at start, their passwords
generated once and kept in a private file of the data dir (hidden from runs like secret.key); a real
Redis gets the runs' user from its operator (OPSFLOW_RUN_REDIS_URL, README's production notes).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from pathlib import Path
from urllib.parse import quote

PASSWORDS_FILE = "redis.passwords"
SERVICE_USER = "default"
RUN_USER = "opsflow-run"
SERVICE_RULES = ("~*", "&*", "+@all")


def run_user_rules(stream: str) -> list[str]:
    """The ACL rules of the runs' user: XADD to `stream` alone (SELECT, for a URL naming a database)."""
    return ["resetkeys", f"~{stream}", "resetchannels", "-@all", "+xadd", "+select"]


def passwords(data_dir: Path, create: bool = False) -> dict[str, str] | None:
    """The embedded Redis's passwords, by user: created once when asked to, else None until then."""
    path = data_dir / PASSWORDS_FILE
    if create and not path.exists():
        generated = {SERVICE_USER: secrets.token_urlsafe(32), RUN_USER: secrets.token_urlsafe(32)}
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                json.dump(generated, handle)
    if not path.exists():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def unix_url(socket: Path, user: str, password: str) -> str:
    return f"unix://{quote(user, safe='')}:{quote(password, safe='')}@{socket}"


def server_arguments(users: dict[str, str], stream: str) -> list[str]:
    """redis-server's options defining both users; only the passwords' hashes reach its command line."""
    rules = {SERVICE_USER: list(SERVICE_RULES), RUN_USER: run_user_rules(stream)}
    arguments = []
    for user, password in users.items():
        digest = hashlib.sha256(password.encode()).hexdigest()
        arguments += ["--user", user, "reset", "on", f"#{digest}", *rules[user]]
    return arguments
