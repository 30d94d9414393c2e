"""Whether runs can be sandboxed here: bubblewrap, probed once per process.

Every ansible-playbook run goes through ansible-runner's process isolation (bubblewrap), so that
a script on a local host or a playbook's lookups see the run's own directory and what Ansible
needs, and nothing of the service's data. Where bubblewrap is missing or cannot run, runs that
execute user content on the controller (local hosts, playbooks) are refused, unless the
operator of the service accepts the risk with OPSFLOW_ALLOW_UNISOLATED. A sandboxed run still
reaches Redis, to push its events: with a real Redis and no OPSFLOW_RUN_REDIS_URL, with every right.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from functools import cache

from app.config import Settings
from app.services.errors import Conflict

PROBE_TIMEOUT_SECONDS = 10
# The namespaces and mounts ansible-runner's sandbox asks for, around a command that does nothing.
PROBE_ARGUMENTS = (
    "--ro-bind", "/", "/", "--dev-bind", "/dev", "/dev", "--proc", "/proc",
    "--unshare-pid", "--die-with-parent", "true",
)  # fmt: skip
ALLOW_SETTING = "OPSFLOW_ALLOW_UNISOLATED"
RUN_REDIS_SETTING = "OPSFLOW_RUN_REDIS_URL"
RUNS_WRITE_REDIS = (
    f"runs can write anything to Redis (set {RUN_REDIS_SETTING} to a Redis user that may only add events)"
)


@cache
def probe(executable: str) -> str | None:
    """Why `executable` cannot sandbox a process here, or None when it can."""
    try:
        completed = subprocess.run(
            [executable, *PROBE_ARGUMENTS],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT_SECONDS,
        )
    except FileNotFoundError:
        return f"{executable} is not installed"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{executable} cannot run: {exc}"
    if completed.returncode != 0:
        detail = completed.stderr.strip() or f"exit status {completed.returncode}"
        return f"{executable} cannot run: {detail}"
    return None


@dataclass(frozen=True)
class Isolation:
    """What this process does with runs."""

    problem: str | None
    allow_unisolated: bool
    # Runs connect to Redis as the service does: no user limited to adding events is configured.
    runs_write_redis: bool = False

    @property
    def sandboxed(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if self.sandboxed:
            return f"ok; {RUNS_WRITE_REDIS}" if self.runs_write_redis else "ok"
        if self.allow_unisolated:
            return f"off: {self.problem}; runs are not sandboxed ({ALLOW_SETTING})"
        return f"unavailable: {self.problem}; local hosts and playbook steps are refused"

    def refuse(self, what: str | None, field: str | None = None) -> None:
        """Conflict when `what` (user content run on the controller) would run without a sandbox."""
        if what and not self.sandboxed and not self.allow_unisolated:
            raise Conflict(
                f"{what} run only in a sandbox, and {self.problem}: install bubblewrap "
                f"(or set {ALLOW_SETTING}=true to accept the risk)",
                field,
            )


def isolation(settings: Settings) -> Isolation:
    return Isolation(
        probe(settings.isolation_executable), settings.allow_unisolated, settings.run_redis_url is None
    )


def warning(settings: Settings) -> str | None:
    """The line to print at start when runs will not be sandboxed, or may write anything to Redis."""
    state = isolation(settings)
    return None if state.describe() == "ok" else f"run isolation {state.describe()}"
