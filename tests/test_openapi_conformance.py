"""The OpenAPI document describes the API: schemathesis fuzzes a started service from its own document, every
operation and then chains of them along the document's links, and any server error or any answer that does
not match the document (status, content type, body, headers) fails the test.

The service runs as `make run` runs it, on a free port with a fresh data directory, but with no workers: the
fuzzer creates hosts with any address and launches runs on them, and none of them may ever run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.config import ROOT
from tests.conftest import postgres_database

TOKEN = "opf_conformance-admin-token"
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
)
PHASES = ("examples", "fuzzing", "stateful")
# A few cases per operation; the stateful phase chains valid calls along the links, so resources created by
# one call are read, changed and deleted by the next ones. Deterministic: the same cases on every run.
SETTINGS = """
generation.max-examples = 5
generation.deterministic = true

[phases.stateful]
generation.max-examples = 30
generation.mode = "positive"
max-steps = 10
"""
# Revoking the token it runs with, or disabling, demoting or deleting its user, would leave the fuzzer
# unauthenticated for the rest of the run; /health is 503 by design here, with no job workers (test_health).
EXCLUDED_OPERATIONS = r"^(DELETE /api/v1/users/|PATCH /api/v1/users/\{|GET /api/v1/health$)"
RUN_TIMEOUT = 900


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def own_settings(**settings: str) -> dict[str, str]:
    """The environment of a service of its own: nothing inherited from another service of the test run."""
    inherited = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OPSFLOW_") and name not in ("DATABASE_URL", "REDIS_URL", "PORT", "HOST")
    }
    return {**inherited, **settings}


@pytest.fixture(params=["sqlite", "postgresql"])
def started_service(request, tmp_path) -> Iterator[str]:
    """`python -m app.cli run` without workers, with its embedded Redis; yields the API's base URL."""
    databases = postgres_database() if request.param == "postgresql" else iter([""])
    database_url = next(databases)
    if database_url is None:
        pytest.skip("no PostgreSQL server on 127.0.0.1:5432")
    port = free_port()
    env = own_settings(
        PORT=str(port),
        OPSFLOW_DATA_DIR=str(tmp_path / "data"),
        OPSFLOW_WORKERS="0",
        OPSFLOW_ADMIN_TOKEN=TOKEN,
        **({"DATABASE_URL": database_url} if database_url else {}),
    )
    log = open(tmp_path / "service.log", "wb")  # noqa: SIM115 - kept open for the process
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}/api/v1"
    try:
        wait_until_up(base, process, tmp_path / "service.log")
        yield base
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
        log.close()
        for _ in databases:
            pass


def wait_until_up(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the service ended with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{base}/openapi.json", timeout=2):
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the service did not answer within 120 s:\n{log.read_text()[-3000:]}")


def test_every_answer_matches_the_document(started_service, tmp_path):
    settings = tmp_path / "schemathesis.toml"
    settings.write_text(SETTINGS)
    command = [
        *(sys.executable, "-m", "schemathesis.cli", "--config-file", str(settings), "run"),
        f"{started_service}/openapi.json",
        *("--header", f"Authorization: Bearer {TOKEN}"),
        *("--checks", ",".join(CHECKS)),
        *("--phases", ",".join(PHASES)),
        *("--exclude-name-regex", EXCLUDED_OPERATIONS),
        *("--workers", "2", "--request-timeout", "60", "--no-color"),
    ]
    # Run where its reports and caches land in the test's own directory, not in the repository.
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=RUN_TIMEOUT)
    assert run.returncode == 0, run.stdout[-20000:] + run.stderr[-5000:]
    assert "Stateful" in run.stdout and " 0 covered" not in run.stdout, run.stdout
