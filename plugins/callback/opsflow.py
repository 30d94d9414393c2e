"""Streams per-host task results of a run to a Redis Stream, in batches.

Runs inside ansible-playbook next to Ansible's own display callback and
imports nothing from the Opsflow service. Events are buffered in memory and
pushed by a background thread, so Ansible never waits on Redis, let alone on a
database; the service's ingester writes them to the database.

Settings come from the environment:
  OPSFLOW_REDIS_URL          where to push
  OPSFLOW_EVENT_STREAM       the stream's key
  OPSFLOW_SLICE_ID           which slice of which step this run is
  OPSFLOW_SLICE_TOKEN        what vouches for the slice's events, sent with each
  OPSFLOW_OUTPUT_CAP_BYTES   per-result cap on stdout and stderr
  OPSFLOW_MASK_FILE          optional JSON list of secrets to mask in output
  OPSFLOW_UNDELIVERED_FILE   where to say how many events could not be pushed, if any
  OPSFLOW_RECAP_FILE         written at the play recap: the run loaded what it was given and played it

The plugin speaks Redis's protocol itself for its one command, XADD (with AUTH and SELECT when the URL
asks for them), rather than through redis-py: importing redis-py took 80 ms of CPU in every run, before
its first task, on the cores the run starts on. URLs are read as redis-py reads them: redis://,
rediss:// (TLS; `ssl_cert_reqs=none` and `ssl_ca_certs=PATH` in the query) and unix://PATH, each with
an optional user and password, and a database as the path or `db=` in the query.

While Redis cannot be reached, events stay in the buffer and go with the next
push that succeeds; what is still undelivered FINAL_FLUSH_SECONDS after the play
recap is counted in OPSFLOW_UNDELIVERED_FILE, so that the run is not taken for
complete.

Each task result says its task's name, role, module, status (ok, changed, failed, skipped,
unreachable, ignored, or rescued: a failure a block's rescue caught), `changed`, its message, its
diff when the task ran in diff mode, and its place in its host's run (`seq`). Ansible hands a no_log
task's result to callbacks censored, and known secrets are masked in everything sent.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import threading
import time
from urllib.parse import parse_qs, unquote, urlsplit

from ansible import constants as C
from ansible.executor.stats import AggregateStats
from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
    name: opsflow
    type: notification
    short_description: stream per-host results to the Opsflow ingester
    description:
      - Pushes task start and result events, and the play recap, to a Redis Stream in batches.
"""

MASK = "******"
BATCH_SIZE = 500
FLUSH_INTERVAL = 0.2
FINAL_FLUSH_SECONDS = 10.0
# A Redis that accepts the connection but does not answer counts as unreachable after this long.
SOCKET_TIMEOUT_SECONDS = 5.0
# The task variable of an ad-hoc command's one task: its host's stdout is the module's output as `ansible`
# shows it (a command's own output, else the result as JSON).
AD_HOC_VAR = "opsflow_ad_hoc"

# Hosts whose last failure Ansible counted as rescued (a block's rescue runs next). Ansible tells callbacks
# a rescued failure as any other: it counts it in its stats just before, in the same thread, and this
# notes the count.
RESCUED: set[str] = set()


def _noting_rescues(increment):
    def counting(self, what, host):
        if what == "rescued":
            RESCUED.add(host)
        return increment(self, what, host)

    counting.opsflow = True
    return counting


if not getattr(AggregateStats.increment, "opsflow", False):
    AggregateStats.increment = _noting_rescues(AggregateStats.increment)


class RedisError(Exception):
    """Redis answered with an error."""


def command(*words) -> bytes:
    """One command in RESP, Redis's protocol."""
    encoded = [word if isinstance(word, bytes) else str(word).encode() for word in words]
    return b"*%d\r\n" % len(encoded) + b"".join(b"$%d\r\n%s\r\n" % (len(word), word) for word in encoded)


class EventStream:
    """A connection to Redis that adds entries to one stream; it connects again after any failure."""

    def __init__(self, url: str, stream: str) -> None:
        self.url = urlsplit(url)
        self.stream = stream
        self.query = {name: values[-1] for name, values in parse_qs(self.url.query).items()}
        path_db = self.url.path.strip("/") if self.url.scheme != "unix" else ""
        self.db = self.query.get("db") or path_db or "0"
        self.connection: socket.socket | None = None
        self.replies = None

    def _connect(self) -> None:
        url = self.url
        if url.scheme == "unix":
            connection = socket.socket(socket.AF_UNIX)
            connection.settimeout(SOCKET_TIMEOUT_SECONDS)
            connection.connect(unquote(url.path))
        else:
            connection = socket.create_connection((url.hostname, url.port or 6379), SOCKET_TIMEOUT_SECONDS)
            if url.scheme == "rediss":
                context = ssl.create_default_context(cafile=self.query.get("ssl_ca_certs"))
                if self.query.get("ssl_cert_reqs", "").lower() == "none":
                    context.check_hostname = False
                    context.verify_mode = ssl.CERT_NONE
                connection = context.wrap_socket(connection, server_hostname=url.hostname)
        self.connection, self.replies = connection, connection.makefile("rb")
        password = unquote(url.password) if url.password is not None else self.query.get("password")
        if password is not None:
            user = unquote(url.username) if url.username else self.query.get("username")
            self._call(*(["AUTH", user, password] if user else ["AUTH", password]))
        if self.db != "0":
            self._call("SELECT", self.db)

    def _call(self, *words) -> bytes | None:
        self.connection.sendall(command(*words))
        line = self.replies.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise RedisError(rest.decode(errors="replace"))
        if kind == b"$":
            length = int(rest)
            return None if length < 0 else self.replies.read(length + 2)[:-2]
        return rest

    def add(self, fields: dict[str, str]) -> None:
        try:
            if self.connection is None:
                self._connect()
            self._call("XADD", self.stream, "*", *(part for pair in fields.items() for part in pair))
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
        self.connection = self.replies = None


def cap(text, limit: int) -> tuple[str, bool]:
    """Text cut to at most `limit` bytes of UTF-8, and whether it was cut."""
    if not isinstance(text, str):
        text = "" if text is None else str(text)
    if len(text) * 4 <= limit:
        return text, False
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= limit:
        return text, False
    return encoded[:limit].decode("utf-8", "ignore"), True


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "opsflow"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.slice_id = int(os.environ.get("OPSFLOW_SLICE_ID", "0"))
        self.token = os.environ.get("OPSFLOW_SLICE_TOKEN", "")
        self.stream = os.environ.get("OPSFLOW_EVENT_STREAM", "opsflow:events")
        self.output_cap = int(os.environ.get("OPSFLOW_OUTPUT_CAP_BYTES", str(5 * 1024 * 1024)))
        self.secrets = self._read_secrets(os.environ.get("OPSFLOW_MASK_FILE"))
        self.undelivered_file = os.environ.get("OPSFLOW_UNDELIVERED_FILE")
        self.recap_file = os.environ.get("OPSFLOW_RECAP_FILE")
        self.push_error: str | None = None
        url = os.environ.get("OPSFLOW_REDIS_URL")
        self.event_stream = EventStream(url, self.stream) if url else None
        # Each host's results so far: a result's seq is its place in its host's run.
        self.host_seq: dict[str, int] = {}
        self.started: dict[tuple[str, str], float] = {}
        self.item_ended: dict[tuple[str, str], float] = {}
        self.buffer: list[dict] = []
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.closed = False
        self.flusher = threading.Thread(target=self._flush_loop, name="opsflow-events", daemon=True)
        if self.event_stream is not None:
            self.flusher.start()

    @staticmethod
    def _read_secrets(path: str | None) -> list[str]:
        if not path:
            return []
        with open(path, encoding="utf-8") as handle:
            secrets = json.load(handle)
        return sorted((s for s in secrets if s), key=len, reverse=True)

    def _mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def _emit(self, event: dict) -> None:
        event["slice"] = self.slice_id
        event["token"] = self.token
        with self.lock:
            self.buffer.append(event)
            full = len(self.buffer) >= BATCH_SIZE
        if full:
            self.wake.set()

    def _push(self) -> bool:
        with self.lock:
            batch, self.buffer = self.buffer, []
        if not batch:
            return True
        try:
            self.event_stream.add({"events": json.dumps(batch)})
        except Exception as exc:
            with self.lock:
                self.buffer[:0] = batch
            if self.push_error is None:
                self._display.warning(f"opsflow: events not delivered yet: {exc}")
            self.push_error = str(exc)
            return False
        self.push_error = None
        return True

    def _flush_loop(self) -> None:
        while not self.closed:
            self.wake.wait(FLUSH_INTERVAL)
            self.wake.clear()
            if not self.closed:
                self._push()

    def _close(self) -> None:
        self.closed = True
        self.wake.set()
        if self.flusher.is_alive():
            self.flusher.join()
        if self.event_stream is None:
            return
        deadline = time.monotonic() + FINAL_FLUSH_SECONDS
        while not self._push() and time.monotonic() < deadline:
            time.sleep(0.5)
        self.event_stream.close()
        if self.buffer and self.undelivered_file:
            with open(self.undelivered_file, "w", encoding="utf-8") as handle:
                json.dump({"events": len(self.buffer), "error": self.push_error}, handle)

    def v2_runner_on_start(self, host, task) -> None:
        name = host.get_name()
        now = time.time()
        self.started[(name, task._uuid)] = now
        self._emit({"type": "task_start", "host": name, "ts": now})

    def _result(self, result, outcome: str) -> None:
        task = result._task
        name = result._host.get_name()
        data = result._result
        end = time.time()
        if (task.vars or {}).get(AD_HOC_VAR) and task.action not in C.MODULE_NO_JSON:
            shown = self._dump_results(data, indent=4)
        else:
            shown = str(data.get("stdout") or "")
        stdout, stdout_cut = cap(self._mask(shown), self.output_cap)
        stderr, stderr_cut = cap(self._mask(str(data.get("stderr") or "")), self.output_cap)
        msg, _ = cap(self._mask(self._message(data)), self.output_cap)
        diff = self._diff(data)
        rc = data.get("rc")
        seq = self.host_seq[name] = self.host_seq.get(name, 0) + 1
        role = task._role.get_name() if task._role else None
        # Ansible names a role's task "role : name"; the role goes apart.
        title = task.get_name()
        if role and title.startswith(f"{role} : "):
            title = title[len(role) + 3 :]
        self._emit(
            {
                "type": "task_result",
                "host": name,
                "seq": seq,
                "task": title,
                "role": role,
                "action": task.action,
                "outcome": outcome,
                "changed": bool(data.get("changed")),
                "rc": rc if isinstance(rc, int) else None,
                "stdout": stdout,
                "stderr": stderr,
                "stdout_truncated": stdout_cut,
                "stderr_truncated": stderr_cut,
                "msg": msg,
                "diff": cap(self._mask(diff), self.output_cap)[0] if diff else None,
                "start": self.started.pop((name, task._uuid), end),
                "end": end,
            }
        )

    def _diff(self, data: dict) -> str:
        """The result's diff as Ansible shows it (a unified diff), a loop's items' one after the other;
        empty unless the task ran in diff mode. A no_log result reaches callbacks without its diff."""
        if "diff" in data:
            found = data["diff"] if isinstance(data["diff"], list) else [data["diff"]]
        else:
            items = [item for item in data.get("results") or [] if isinstance(item, dict)]
            found = [item["diff"] for item in items if "diff" in item]
        # Copies: Ansible's _get_diff rewrites what it is given.
        diffs = [dict(diff) for diff in found if isinstance(diff, dict)]
        if not diffs:
            return ""
        try:
            return self._get_diff(diffs)
        except Exception as exc:  # a diff Ansible cannot show must not lose the task's result
            return f"(the diff could not be shown: {exc})"

    @staticmethod
    def _message(data: dict) -> str:
        """The result's message; for a loop, with the first item's own message (items that went
        well carry none, and a loop's summary drops their `failed` flag). A loop whose item was
        unreachable still sums up as "All items completed": then the item's message alone. A no_log
        result says it is censored."""
        msg = str(data.get("msg") or data.get("censored") or "")
        told = next(
            (
                str(item["msg"])
                for item in data.get("results") or []
                if isinstance(item, dict) and item.get("msg") and not item.get("skipped")
            ),
            None,
        )
        if told is None:
            return msg
        return f"{msg}: {told}" if msg and data.get("failed") else told

    def _item(self, result, outcome: str) -> None:
        """A file of a transfer: the outcome of one loop item of a task marked with opsflow_phase."""
        task = result._task
        phase = (task.vars or {}).get("opsflow_phase")
        item = result._result.get("item")
        if phase is None or not isinstance(item, dict):
            return
        name = result._host.get_name()
        data = result._result
        end = time.time()
        # Items run one after the other: each starts when the one before it ended.
        key = (name, task._uuid)
        start = self.item_ended.get(key) or self.started.get(key, end)
        self.item_ended[key] = end
        self._emit(
            {
                "type": "file_result",
                "host": name,
                "phase": phase,
                "seq": item.get("seq"),
                "path": item.get("dest"),
                "source": item.get("source"),
                "size": item.get("size"),
                "outcome": outcome,
                "changed": bool(data.get("changed")),
                "msg": cap(self._mask(str(data.get("msg") or "")), self.output_cap)[0],
                "start": start,
                "end": end,
            }
        )

    def v2_runner_item_on_ok(self, result) -> None:
        self._item(result, "ok")

    def v2_runner_item_on_failed(self, result) -> None:
        self._item(result, "failed")

    def v2_runner_on_ok(self, result) -> None:
        self._result(result, "changed" if result._result.get("changed") else "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        name = result._host.get_name()
        if ignore_errors:
            outcome = "ignored"
        elif name in RESCUED:
            RESCUED.discard(name)
            outcome = "rescued"
        else:
            outcome = "failed"
        self._result(result, outcome)

    def v2_runner_on_unreachable(self, result) -> None:
        self._result(result, "unreachable")

    def v2_runner_on_skipped(self, result) -> None:
        self._result(result, "skipped")

    def v2_playbook_on_stats(self, stats) -> None:
        hosts = {name: stats.summarize(name) for name in sorted(stats.processed)}
        self._emit({"type": "stats", "hosts": hosts, "ts": time.time()})
        if self.recap_file:
            open(self.recap_file, "w").close()
        self._close()
