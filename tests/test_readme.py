"""The README's walkthrough runs as written: every ```sh block from "Five minutes with curl" on, in order, in
one shell, against `python -m app.cli run` on a fresh data directory, its SSH hosts the lab's sshd."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from app.config import ROOT
from tests.running import RunningService

FIRST_SECTION = "## Five minutes with curl"
# Put right above a block the test cannot run, with the reason: <!-- not run by tests/test_readme.py: why -->
SKIP_MARKER = "<!-- not run by tests/test_readme.py"
# Every curl call reports its answer's status on stderr, beside what the block itself prints.
CURL_STATUS = (
    "curl() { command curl -w '%{stderr}HTTP %{http_code} %{method} %{url_effective}\\n' \"$@\"; }\n"
)
HTTP_LINE = re.compile(r"^HTTP (\d{3}) (\S+) (\S+)$")
# The calls the README shows failing, on purpose.
EXPECTED_ERRORS = {
    (422, "POST", re.compile(r"/projects/\d+/job-templates/import$")),
    (422, "POST", re.compile(r"/projects/\d+/flows/import$")),
}
# `ended $JOB   # failed: ...`: the README states how the job ends.
ENDED_LINE = re.compile(r"^ended \$\w+\s+# (\w+)", re.MULTILINE)
FINAL = {"success", "failed", "timeout", "terminated", "abnormal"}
# The whole walkthrough, its waits included, takes a minute or two.
TIMEOUT = 900


def walkthrough_blocks(readme: str) -> list[tuple[int, str]]:
    """(line number, text) of each ```sh block from the first walkthrough section on, bar those marked."""
    lines = readme[readme.index(FIRST_SECTION) :].splitlines()
    offset = readme[: readme.index(FIRST_SECTION)].count("\n") + 1
    blocks, current, start, skip = [], None, 0, False
    previous = ""
    for number, line in enumerate(lines, offset):
        if current is None and line.strip() == "```sh":
            current, start, skip = [], number, previous.startswith(SKIP_MARKER)
        elif current is not None and line.strip() == "```":
            if not skip:
                blocks.append((start, "\n".join(current) + "\n"))
            current = None
        elif current is not None:
            current.append(line)
        if line.strip():
            previous = line.strip()
    return blocks


def test_the_walkthrough_finds_its_blocks():
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    assert len(blocks) >= 10
    assert blocks[0][1].startswith("API=")
    readme = (
        "```sh\nmake run\n```\n" + FIRST_SECTION + "\n\n```sh\necho one\n```\n"
        f"{SKIP_MARKER}: it needs a Windows host -->\n\n```sh\necho skipped\n```\n```sh\necho two\n```\n"
    )
    assert walkthrough_blocks(readme) == [(6, "echo one\n"), (14, "echo two\n")]


@pytest.fixture
def readme_service(tmp_path):
    service = RunningService(tmp_path / "data", OPSFLOW_WORKERS="2").start()
    try:
        service.wait_healthy()
        yield service
    finally:
        service.stop()


def test_the_readme_runs_as_written(readme_service, lab, tmp_path):
    blocks = walkthrough_blocks((ROOT / "README.md").read_text())
    workdir = tmp_path / "reader"
    workdir.mkdir()
    # The reader is in the repository's directory; the files the walkthrough writes go elsewhere.
    (workdir / "inventories").symlink_to(ROOT / "inventories")
    driver = [CURL_STATUS]
    for index, (_, text) in enumerate(blocks):
        (workdir / f"block-{index}.sh").write_text(text)
        driver.append(f"source block-{index}.sh > out-{index} 2> err-{index}; echo $? > rc-{index}\n")
    (workdir / "driver.sh").write_text("".join(driver))
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("OPSFLOW_", "REDIS_"))},
        "PORT": str(readme_service.port),
        "OPSFLOW_DATA_DIR": str(readme_service.data_dir),
        "WEB1": lab.address(0),
        "WEB2": lab.address(1),
        "SSH_PORT": str(lab.port),
        "SSH_USER": lab.user,
        "SSH_KEY": str(lab.private_key_path),
    }
    shell = subprocess.Popen(["bash", "driver.sh"], cwd=workdir, env=env, start_new_session=True)
    try:
        shell.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        # The block that did not end is named below; what it started must not outlive the test.
        os.killpg(shell.pid, signal.SIGKILL)
        shell.wait()
    for index, (line, text) in enumerate(blocks):
        where = f"README.md line {line}"
        assert (workdir / f"rc-{index}").exists(), f"{where} did not end: {read(workdir / f'out-{index}')}"
        out, err = read(workdir / f"out-{index}"), read(workdir / f"err-{index}")
        for message in err.splitlines():
            answer = HTTP_LINE.match(message)
            assert answer, f"{where} wrote to stderr: {message}\n{out}"
            status, method, url = int(answer[1]), answer[2], answer[3]
            expected = any(
                code == status and verb == method and path.search(url.split("?")[0])
                for code, verb, path in EXPECTED_ERRORS
            )
            assert 200 <= status < 400 or expected, f"{where}: {message}\n{out}"
        said = ENDED_LINE.findall(text)
        seen = [printed for printed in out.splitlines() if printed in FINAL]
        assert seen == said, (
            f"{where}: the jobs ended {seen}, the README says {said}\n{out}\n{host_results(readme_service)}"
        )


def host_results(service: RunningService) -> str:
    """Every job's host results, status to stderr: what a wrong ending needs explained."""
    lines = []
    for job in service.call("GET", "/projects/1/jobs?page_size=100").json():
        for result in service.call("GET", f"/projects/1/jobs/{job['id']}/host-results").json():
            fields = ("host_name", "status", "exit_code", "error", "stdout", "stderr")
            lines.append(f"job {job['id']}: " + " | ".join(str(result.get(name)) for name in fields))
    return "\n".join(lines)


def read(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""
