"""The runs' ansible-playbook reads Ansible's own definition files from parsed copies a worker wrote:
copies named by the bytes they were parsed from, written only when they read back exactly, and read
inside the sandbox; without a copy it parses the file itself."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from app.execution.compiler import ScriptStep, Target, compile_script
from app.execution.runner import DEFINITIONS_SCRIPT, LAUNCHER_DIR, RunRequest
from app.status import RunStatus
from tests.conftest import plugin_module, runner_for

definitions = plugin_module(DEFINITIONS_SCRIPT, "opsflow_definitions")

# A module name Ansible resolves only through a routing copy that says where it goes.
PROBE_MODULE = "opsflow_probe"
FORKS_TASK = {"debug": {"msg": "forks {{ lookup('config', 'DEFAULT_FORKS') }}"}}
PROBE_TASK = {PROBE_MODULE: {"msg": "routed"}}
UNRESOLVED = f"couldn't resolve module/action '{PROBE_MODULE}'"


def altered_copies(directory: Path) -> None:
    """Copies that say what Ansible's files do not: 17 forks by default, and a module routed to debug."""
    directory.mkdir(parents=True, exist_ok=True)
    for path, parse in definitions.parsers().items():
        raw = Path(path).read_bytes()
        parsed = parse(raw)
        if path.endswith("base.yml"):
            parsed["DEFAULT_FORKS"]["default"] = 17
        else:
            for kind in ("modules", "action"):
                routes = parsed["plugin_routing"].setdefault(kind, {})
                routes[PROBE_MODULE] = {"redirect": "ansible.builtin.debug"}
        Path(definitions.copy_path(str(directory), raw)).write_text(json.dumps(parsed))


def launch(tmp_path: Path, copies: Path | None, task: dict) -> str:
    playbook = tmp_path / "probe.yml"
    playbook.write_text(json.dumps([{"hosts": "all", "gather_facts": False, "tasks": [task]}]))
    env = {
        **os.environ,
        "PATH": os.pathsep.join([str(Path(sys.prefix) / "bin"), os.environ["PATH"]]),
        "ANSIBLE_NOCOLOR": "1",
    }
    env.pop(definitions.DIRECTORY_VAR, None)
    if copies is not None:
        env[definitions.DIRECTORY_VAR] = str(copies)
    done = subprocess.run(
        [str(LAUNCHER_DIR / "ansible-playbook"), "-i", "localhost,", "-c", "local", str(playbook)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    return done.stdout + done.stderr


@pytest.mark.parametrize(
    ("parsed", "copied", "same"),
    [
        ({"a": [1, "b", None, True, 1.5]}, {"a": [1, "b", None, True, 1.5]}, True),
        ({"a": (1, 2)}, {"a": [1, 2]}, False),
        ({1: "a"}, {"1": "a"}, False),
        ({"a": True}, {"a": 1}, False),
        ({"a": 1}, {"a": 1.0}, False),
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, False),
        ([1, 2], [1, 2, 3], False),
    ],
)
def test_a_copy_counts_only_when_it_reads_back_as_exactly_the_parsed_value(parsed, copied, same):
    assert definitions.identical(parsed, copied) is same


def test_a_worker_writes_each_copy_once_and_each_is_the_parse_of_its_file(tmp_path):
    directory = str(tmp_path / "copies")
    written = definitions.write_copies(directory)
    assert len(written) == 2 and (tmp_path / "copies").stat().st_mode & 0o777 == 0o700
    modified = [os.stat(path).st_mtime_ns for path in written]
    assert definitions.write_copies(directory) == written
    assert [os.stat(path).st_mtime_ns for path in written] == modified
    for path, parse in definitions.parsers().items():
        raw = Path(path).read_bytes()
        copy = Path(definitions.copy_path(directory, raw))
        assert copy in map(Path, written)
        assert definitions.identical(parse(raw), json.loads(copy.read_text()))


def test_the_launcher_reads_the_copies_named_by_the_files_bytes(tmp_path):
    copies = tmp_path / "copies"
    altered_copies(copies)
    assert "forks 17" in launch(tmp_path, copies, FORKS_TASK)
    assert '"msg": "routed"' in launch(tmp_path, copies, PROBE_TASK)


def test_without_copies_or_with_unreadable_ones_the_launcher_parses_the_files(tmp_path):
    broken = tmp_path / "broken"
    altered_copies(broken)
    for copy in broken.iterdir():
        copy.write_text("{not json")
    for copies in (None, broken):
        assert "forks 5" in launch(tmp_path, copies, FORKS_TASK)
        assert UNRESOLVED in launch(tmp_path, copies, PROBE_TASK)


def test_a_sandboxed_run_reads_the_copies_its_worker_wrote(tmp_path, redis_url):
    data_dir = tmp_path / "data"
    with runner_for(redis_url, data_dir) as runner:
        altered_copies(runner.settings.ansible_definitions_dir)
        target = Target("me", "127.0.0.1", connection="local")
        compiled = compile_script(ScriptStep("bash", "true"), [target], None)
        probe = [{"hosts": "all", "gather_facts": False, "tasks": [PROBE_TASK]}]
        compiled = dataclasses.replace(compiled, playbook=probe)
        slice_id = random.randint(10**9, 2 * 10**9)
        request = RunRequest(slice_id=slice_id, job_id=slice_id, compiled=compiled, forks=1, timeout=60)
        assert runner.run(request).status is RunStatus.SUCCESS


def test_a_started_worker_has_written_the_copies(service):
    copies = service.app.config["OPSFLOW"].ansible_definitions_dir
    expected = {
        Path(definitions.copy_path(str(copies), Path(path).read_bytes())) for path in definitions.parsers()
    }
    assert expected <= set(copies.iterdir())
