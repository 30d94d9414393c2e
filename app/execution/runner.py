"""Runs one compiled slice with ansible-runner, in a private data dir of its own.

The runner writes the playbook and inventory, starts ansible-playbook through
ansible-runner with the Opsflow callback plugin enabled, polls for a cancel,
and on every way out (success, failure,
cancel, timeout, a dying worker) leaves no process of the run behind.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ansible_runner
from ansible_runner.utils import get_callback_dir
from ptyprocess import PtyProcess
from redis import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.config import HOST_KEY_ACCEPT_NEW, HOST_KEY_OFF, HOST_KEY_STRICT, ROOT, Settings
from app.execution.compiler import CompiledStep, to_ansible
from app.execution.isolation import isolation
from app.execution.keys import cancel_key
from app.execution.known_hosts import ProjectKnownHosts
from app.execution.process import MARKER_VAR, kill_marked
from app.execution.watchdog import DONE
from app.models.base import utcnow
from app.models.inventory import Connection
from app.secrets import mask
from app.services.errors import Conflict
from app.status import RunStatus

PLAYBOOK = "main.yml"
KEY_FILE = "ssh_key"
MASK_FILE = "mask.json"
# Extra vars may carry secrets: readable by the service alone, and removed with the key file.
EXTRA_VARS_FILE = "extra_vars.yml"
# A repository playbook's vault password: readable by the run alone, removed after it.
VAULT_FILE = "vault_password"
# The callback plugin counts here the events it could not push (Redis unreachable till the end).
UNDELIVERED_FILE = "undelivered.json"
CALLBACK_DIR = ROOT / "plugins" / "callback"
ACTION_DIR = ROOT / "plugins" / "action"
# The runs' ansible-playbook: Ansible's own, reading its definition files from parsed copies.
LAUNCHER_DIR = ROOT / "plugins" / "launcher"
DEFINITIONS_SCRIPT = LAUNCHER_DIR / "opsflow_definitions.py"
# A service user whose home is / has no home to hide.
ROOT_DIR = Path("/")
# The callback plugin writes this at the play recap: a run without it stopped before (it could not load
# what it was given).
RECAP_FILE = "recap"
# ansible-runner checks for a cancel once per pexpect timeout.
CANCEL_POLL_SECONDS = 0.5
# ansible-runner hands a run the worker's whole environment (and writes it to the run's artifacts): the
# service's own connections and secrets are blanked there. A run's Redis connection is OPSFLOW_REDIS_URL.
SERVICE_ENVIRONMENT = (
    "REDIS_URL", "OPSFLOW_RUN_REDIS_URL", "DATABASE_URL", "OPSFLOW_SECRET_KEY", "OPSFLOW_ADMIN_TOKEN",
)  # fmt: skip

RUNNER_STATUS = {
    "successful": RunStatus.SUCCESS,
    "failed": RunStatus.FAILED,
    "canceled": RunStatus.TERMINATED,
    "timeout": RunStatus.TIMEOUT,
}


def close_ended_ptys_at_once(close: Callable[..., None]) -> Callable[..., None]:
    """ptyprocess waits 0.1 s after closing a pty for its process to end before it checks, and
    ansible-runner closes a run's pty only once ansible-playbook has ended: every slice waited 0.1 s."""

    def closing(self: PtyProcess, force: bool = True) -> None:
        if self.terminated:
            self.delayafterclose = 0
        close(self, force)

    closing.opsflow = True
    return closing


if not getattr(PtyProcess.close, "opsflow", False):
    PtyProcess.close = close_ended_ptys_at_once(PtyProcess.close)


@dataclass
class RunRequest:
    """One slice, compiled, with the secrets it needs."""

    slice_id: int
    job_id: int
    compiled: CompiledStep
    forks: int
    timeout: int
    private_key: str | None = None
    password: str | None = None
    become_password: str | None = None
    secrets: list[str] = field(default_factory=list)
    # The project whose known host keys the run checks and records.
    project_id: int | None = None
    # Paths outside the run's directory that its sandbox shows: read-only, and writable.
    readable: list[Path] = field(default_factory=list)
    writable: list[Path] = field(default_factory=list)
    # What vouches for the slice's events (app.execution.events.slice_token).
    event_token: str = ""
    # A vault password (and the vault id it answers to) for a repository's encrypted files.
    vault_password: str | None = None
    vault_id: str | None = None
    # The run acts on no host (a syntax check, a listing): what Ansible printed is its answer.
    capture_output: bool = False


@dataclass
class RunOutcome:
    status: RunStatus
    error: str | None = None
    # What ansible-playbook printed, for runs that capture it.
    output: str | None = None


def runs_on_controller(compiled: CompiledStep) -> str | None:
    """What of the run executes user content on the controller (a user's playbook, local hosts), if any."""
    if compiled.playbook_text is not None or compiled.workdir is not None:
        return "playbook steps"
    if compiled.on_controller is not None:
        return compiled.on_controller
    hosts = (
        variables
        for group in compiled.inventory.get("all", {}).get("children", {}).values()
        for variables in group.get("hosts", {}).values()
    )
    if any(variables.get("ansible_connection") == Connection.LOCAL for variables in hosts):
        return "local hosts"
    return None


def write_private(path: Path, text: str) -> None:
    """Write a file only the service's user can read."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


class Runner:
    """Runs slices; one instance per worker process."""

    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings = settings
        self.redis = redis

    def run(self, request: RunRequest) -> RunOutcome:
        try:
            isolation(self.settings).refuse(runs_on_controller(request.compiled))
        except Conflict as exc:
            return RunOutcome(RunStatus.FAILED, exc.message)
        data_dir = self._prepare(request)
        # ssh's control sockets need a short path (a socket's path holds at most 107 bytes), which a
        # run's directory under a deep data dir may not give.
        marker, control_dir = secrets.token_hex(12), tempfile.mkdtemp(prefix="opsflow-cp-", dir="/tmp")
        watchdog_args = [marker, control_dir, *map(str, self._secret_files(data_dir))]
        watchdog = subprocess.Popen(
            [sys.executable, "-m", "app.execution.watchdog", *watchdog_args],
            stdin=subprocess.PIPE,
            cwd=ROOT,
            env={**os.environ, **self._event_stream(request)},
            start_new_session=True,
        )
        try:
            compiled = request.compiled
            result = ansible_runner.run(
                private_data_dir=str(data_dir),
                playbook=compiled.playbook_path or PLAYBOOK,
                inventory=str(Path(compiled.workdir) / compiled.inventory_file)
                if compiled.inventory_file
                else str(data_dir / "inventory" / "hosts.yml"),
                **({"project_dir": compiled.workdir} if compiled.workdir else {}),
                ident="run",
                envvars=self._environment(request, data_dir, marker, control_dir),
                forks=request.forks,
                cmdline=self._cmdline(request, data_dir),
                passwords=self._passwords(request),
                timeout=request.timeout,
                cancel_callback=self._cancel_callback(request),
                # The run's events come from the callback plugin: ansible-runner keeps none on disk.
                event_handler=lambda event: False,
                settings={"pexpect_timeout": CANCEL_POLL_SECONDS, "suppress_ansible_output": True},
                quiet=True,
                **self._sandbox(request, data_dir, control_dir),
            )
            outcome = self._outcome(result, data_dir, request)
        except Exception as exc:
            outcome = RunOutcome(RunStatus.ABNORMAL, f"the run could not start: {exc}")
        finally:
            kill_marked(marker, control_dir)
            shutil.rmtree(control_dir, ignore_errors=True)
            watchdog.communicate(DONE)
            self._clean(data_dir, request)
            if self.settings.ssh_host_key_checking == HOST_KEY_ACCEPT_NEW and request.project_id is not None:
                self._known_hosts(request, data_dir).stamp(utcnow())
        return outcome

    def _known_hosts(self, request: RunRequest, data_dir: Path) -> ProjectKnownHosts:
        """The project's known_hosts; a run of no project keeps one of its own."""
        if request.project_id is None:
            return ProjectKnownHosts(data_dir / "known_hosts")
        return ProjectKnownHosts(self.settings.known_hosts_dir / str(request.project_id))

    def _sandbox(self, request: RunRequest, data_dir: Path, control_dir: str) -> dict[str, Any]:
        """ansible-runner's bubblewrap settings: the run sees its own directory, Ansible, the callback's
        Redis socket and the paths its request names; the data dir and the service's home stay hidden."""
        settings = self.settings
        if not isolation(settings).sandboxed:
            return {}
        readable = [
            Path(sys.prefix),
            Path(sys.base_prefix),
            CALLBACK_DIR,
            ACTION_DIR,
            LAUNCHER_DIR,
            settings.ansible_definitions_dir,
            *request.readable,
        ]
        writable = [*request.writable, Path(control_dir)]
        if settings.embedded_redis:
            readable.append(settings.redis_socket)
        if settings.ssh_host_key_checking != HOST_KEY_OFF:
            known_hosts = self._known_hosts(request, data_dir).directory
            recording = settings.ssh_host_key_checking == HOST_KEY_ACCEPT_NEW
            (writable if recording else readable).append(known_hosts)
        return {
            "process_isolation": True,
            "process_isolation_executable": settings.isolation_executable,
            "process_isolation_hide_paths": [
                str(path) for path in (settings.data_dir, Path.home()) if path != ROOT_DIR
            ],
            "process_isolation_ro_paths": [str(path) for path in readable],
            "process_isolation_show_paths": [str(path) for path in writable],
        }

    def _prepare(self, request: RunRequest) -> Path:
        data_dir = self.settings.runs_dir / f"{request.slice_id}-{secrets.token_hex(4)}"
        for sub in ("project", "inventory", "env"):
            (data_dir / sub).mkdir(parents=True, mode=0o700)
        compiled = request.compiled
        playbook = (
            compiled.playbook_text if compiled.playbook_text is not None else to_ansible(compiled.playbook)
        )
        (data_dir / "project" / PLAYBOOK).write_text(playbook, encoding="utf-8", newline="")
        (data_dir / "inventory" / "hosts.yml").write_text(to_ansible(compiled.inventory), encoding="utf-8")
        for name, content in compiled.files.items():
            (data_dir / "project" / name).write_bytes(content)
        if compiled.extra_vars:
            write_private(data_dir / EXTRA_VARS_FILE, to_ansible(compiled.extra_vars))
        if request.private_key:
            # A key file rather than ansible-runner's ssh-agent, which measured seconds slower
            # at 500 hosts (docs/performance.md). It lives only as long as the run.
            write_private(data_dir / KEY_FILE, request.private_key.rstrip("\n") + "\n")
        if request.secrets:
            write_private(data_dir / MASK_FILE, json.dumps(request.secrets))
        if request.vault_password:
            write_private(data_dir / VAULT_FILE, request.vault_password + "\n")
        return data_dir

    @staticmethod
    def _secret_files(data_dir: Path) -> list[Path]:
        return [data_dir / KEY_FILE, data_dir / MASK_FILE, data_dir / EXTRA_VARS_FILE, data_dir / VAULT_FILE]

    def _environment(
        self, request: RunRequest, data_dir: Path, marker: str, control_dir: str
    ) -> dict[str, str]:
        settings = self.settings
        # LogLevel=ERROR: "Permanently added ... to the list of known hosts" would land in every stderr.
        ssh_args = "-o ControlMaster=auto -o ControlPersist=60s -o ServerAliveInterval=15 -o LogLevel=ERROR"
        checking = settings.ssh_host_key_checking
        if checking == HOST_KEY_OFF:
            ssh_args += " -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        else:
            known_hosts = self._known_hosts(request, data_dir).ensure()
            ssh_args += (
                f" -o StrictHostKeyChecking={'yes' if checking == HOST_KEY_STRICT else 'accept-new'}"
                f" -o UserKnownHostsFile={shlex.quote(str(known_hosts))}"
                " -o HashKnownHosts=no -o UpdateHostKeys=no"
            )
        if settings.ssh_kex_algorithms:
            ssh_args += f" -o KexAlgorithms={settings.ssh_kex_algorithms}"
        env = {
            **dict.fromkeys(SERVICE_ENVIRONMENT, ""),
            # The virtualenv as the sandbox mounts it: by its real path, though it be reached by a symlink.
            # The launcher's ansible-playbook first; its `python3` is the virtualenv's.
            "PATH": os.pathsep.join(
                [str(LAUNCHER_DIR), str(Path(sys.prefix).resolve() / "bin"), os.environ.get("PATH", "")]
            ),
            "OPSFLOW_ANSIBLE_DEFINITIONS": str(settings.ansible_definitions_dir),
            "ANSIBLE_CALLBACK_PLUGINS": str(CALLBACK_DIR),
            # ansible-runner's display callback by its real path too, which is where the sandbox shows it.
            "AWX_LIB_DIRECTORY": str(Path(get_callback_dir()).resolve()),
            "ANSIBLE_CALLBACKS_ENABLED": "opsflow",
            "ANSIBLE_ACTION_PLUGINS": str(ACTION_DIR),
            "ANSIBLE_SSH_ARGS": ssh_args,
            "ANSIBLE_SSH_CONTROL_PATH_DIR": control_dir,
            "ANSIBLE_HOST_KEY_CHECKING": str(checking != HOST_KEY_OFF),
            "ANSIBLE_TIMEOUT": "10",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_DEPRECATION_WARNINGS": "False",
            "ANSIBLE_LOCALHOST_WARNING": "False",
            "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
            # An inventory Ansible cannot read fails the run, rather than leaving it with no hosts.
            "ANSIBLE_INVENTORY_UNPARSED_FAILED": "True",
            **self._event_stream(request),
            "OPSFLOW_OUTPUT_CAP_BYTES": str(settings.output_cap_bytes),
            "OPSFLOW_UNDELIVERED_FILE": str(data_dir / UNDELIVERED_FILE),
            "OPSFLOW_RECAP_FILE": str(data_dir / RECAP_FILE),
            MARKER_VAR: marker,
        }
        if request.secrets:
            env["OPSFLOW_MASK_FILE"] = str(data_dir / MASK_FILE)
        if request.private_key:
            env["ANSIBLE_PRIVATE_KEY_FILE"] = str(data_dir / KEY_FILE)
        for name, value in request.compiled.environment.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def _event_stream(self, request: RunRequest) -> dict[str, str]:
        """Where the run's callback plugin and its watchdog send the slice's events: as the runs' Redis
        user when there is one."""
        return {
            "OPSFLOW_REDIS_URL": self.settings.run_redis_url or self.settings.redis_url,
            "OPSFLOW_EVENT_STREAM": self.settings.event_stream,
            "OPSFLOW_SLICE_ID": str(request.slice_id),
            "OPSFLOW_SLICE_TOKEN": request.event_token,
        }

    @staticmethod
    def _cmdline(request: RunRequest, data_dir: Path) -> str | None:
        """ansible-playbook's options; ansible-runner splits them with shlex, so each is quoted."""
        flags = []
        if request.password:
            flags.append("--ask-pass")
        if request.become_password:
            flags.append("--ask-become-pass")
        if request.compiled.extra_vars:
            flags += ["-e", f"@{data_dir / EXTRA_VARS_FILE}"]
        if request.vault_password:
            vault_file = str(data_dir / VAULT_FILE)
            flags.append(
                f"--vault-id={request.vault_id}@{vault_file}"
                if request.vault_id
                else f"--vault-password-file={vault_file}"
            )
        flags += request.compiled.options
        return " ".join(shlex.quote(flag) for flag in flags) or None

    @staticmethod
    def _passwords(request: RunRequest) -> dict[str, str]:
        prompts = {}
        if request.password:
            prompts[r"SSH password:\s*?$"] = request.password
        if request.become_password:
            prompts[r"BECOME password.*:\s*?$"] = request.become_password
        return prompts

    def _cancel_callback(self, request: RunRequest) -> Callable[[], bool]:
        cancel = cancel_key(request.job_id)

        def cancelled() -> bool:
            try:
                return bool(self.redis.exists(cancel))
            except (RedisConnectionError, RedisTimeoutError):
                # The run goes on while Redis is away; its events wait in the callback plugin.
                return False

        return cancelled

    @staticmethod
    def _outcome(result, data_dir: Path, request: RunRequest) -> RunOutcome:
        undelivered = data_dir / UNDELIVERED_FILE
        if undelivered.exists():
            lost = json.loads(undelivered.read_text())
            return RunOutcome(
                RunStatus.ABNORMAL,
                f"{lost['events']} events of this run could not be delivered "
                f"(Redis unreachable: {lost['error']})",
            )
        status = RUNNER_STATUS.get(result.status, RunStatus.ABNORMAL)
        stdout = data_dir / "artifacts" / "run" / "stdout"
        if request.capture_output:
            printed = mask(stdout.read_text(errors="replace"), request.secrets) if stdout.exists() else ""
            error = (
                None
                if status is RunStatus.SUCCESS
                else f"ansible-playbook ended {result.status}: {printed[-4000:]}"
            )
            return RunOutcome(status, error, printed)
        if status is RunStatus.FAILED and not (data_dir / RECAP_FILE).exists():
            # It could not load what it was given (a playbook, an inventory, extra vars): the hosts
            # it never reached did not succeed, nor were they skipped.
            status = RunStatus.ABNORMAL
        if status is not RunStatus.ABNORMAL:
            return RunOutcome(status)
        tail = stdout.read_text(errors="replace")[-4000:] if stdout.exists() else ""
        return RunOutcome(
            status, mask(f"ansible-runner ended {result.status}: {tail}".strip(), request.secrets)
        )

    def _clean(self, data_dir: Path, request: RunRequest) -> None:
        if not self.settings.keep_run_dirs:
            shutil.rmtree(data_dir, ignore_errors=True)
            return
        for path in self._secret_files(data_dir):
            path.unlink(missing_ok=True)
        if request.secrets:
            for path in (data_dir / "artifacts").rglob("*"):
                if path.is_file():
                    path.write_text(mask(path.read_text(errors="replace"), request.secrets))
