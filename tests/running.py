"""`python -m app.cli run` (what `make run` starts) as a process of a test, called over real HTTP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from app.config import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


class RunningService:
    """The whole service started as `make run` starts it, on a port and data dir of its own."""

    def __init__(self, data_dir: Path, port: int | None = None, **env: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.env = {
            **{key: value for key, value in os.environ.items() if not key.startswith(("OPSFLOW_", "REDIS_"))},
            "DATABASE_URL": "",
            "PORT": str(self.port),
            "OPSFLOW_DATA_DIR": str(data_dir),
            "OPSFLOW_WORKERS": "1",
            "OPSFLOW_HEARTBEAT_TTL": "9",
            "OPSFLOW_REAPER_INTERVAL": "1",
            **env,
        }
        self.process: subprocess.Popen | None = None
        self.log = data_dir / "run.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1"

    def start(self) -> RunningService:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "run"],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def wait_healthy(self, timeout: float = 120) -> dict:
        """Wait until /health says every part is up."""
        deadline = time.monotonic() + timeout
        answer = None
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise AssertionError(f"the service exited with {self.process.returncode}: {self.output()}")
            try:
                answer = self.call("GET", "/health", token=None)
                if answer.status == 200:
                    return answer.json()
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"not healthy after {timeout}s: {answer and answer.body!r}\n{self.output()}")

    def output(self) -> str:
        """The log's tail, for a failure message."""
        return self.logged()[-6000:]

    def logged(self) -> str:
        """Everything the service has printed so far."""
        return self.log.read_text(errors="replace")

    @property
    def token(self) -> str:
        return (self.data_dir / "admin.token").read_text().strip()

    def call(self, method: str, path: str, body: Any = None, token: str | None = "admin") -> Answer:
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token if token == 'admin' else token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return Answer(response.status, dict(response.headers), response.read())
        except urllib.error.HTTPError as error:
            return Answer(error.code, dict(error.headers), error.read())

    def stop(self) -> int:
        """Stop it as Ctrl-C does; returns its exit code."""
        if self.process is None:
            return 0
        descendants: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            descendants = psutil.Process(self.process.pid).children(recursive=True)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        # Whatever a failed stop left behind must not outlive the test.
        for process in descendants:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        return self.process.returncode
