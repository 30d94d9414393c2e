"""Playbook steps through the real runner: ansible-runner and ansible-playbook on local-connection hosts.

Each test compiles a step, builds the run request by hand for a slice no database knows, and calls the
runner directly; the callback plugin's events land on a Redis stream of the test's own, read back here.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.execution.compiler import Target
from app.execution.playbook import PlaybookStep, compile_playbook
from app.execution.runner import EXTRA_VARS_FILE, PLAYBOOK, Runner, RunOutcome, RunRequest
from app.status import RunStatus
from tests.conftest import runner_for
from tests.test_compiler import INJECTION

TARGETS = [Target("alpha", "127.0.0.1", connection="local"), Target("beta", "127.0.0.1", connection="local")]

TWO_TASKS = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: first
      ansible.builtin.command: echo "first on {{ inventory_hostname }}"
      tags: [one]
    - name: second
      ansible.builtin.command: echo second
      tags: [two]

- hosts: web
  gather_facts: false
  tasks:
    - name: web only
      ansible.builtin.debug:
        msg: "{{ groups['web'] | join(',') }}"
"""


@pytest.fixture
def runner(tmp_path, redis_url) -> Iterator[Runner]:
    with runner_for(redis_url, tmp_path / "data", keep_run_dirs=True) as kept:
        yield kept


def run(
    runner: Runner, step: PlaybookStep, groups: dict[str, list[str]] | None = None
) -> tuple[RunOutcome, list[dict], Path]:
    """Run the step on both targets; its outcome, its events, and its kept data dir."""
    compiled = compile_playbook(step, TARGETS, groups or {}, None)
    # No database holds this slice; a random id keeps its heartbeat and cancel keys apart from others'.
    slice_id = random.randint(10**9, 2 * 10**9)
    request = RunRequest(slice_id=slice_id, job_id=slice_id, compiled=compiled, forks=2, timeout=120)
    outcome = runner.run(request)
    events = [
        event
        for _, fields in runner.redis.xrange(runner.settings.event_stream)
        for event in json.loads(fields[b"events"])
        if event["slice"] == slice_id
    ]
    [data_dir] = runner.settings.runs_dir.glob(f"{slice_id}-*")
    return outcome, events, data_dir


def task_results(events: list[dict]) -> list[tuple[str, str, str]]:
    return sorted(
        (event["host"], event["task"], event["outcome"]) for event in events if event["type"] == "task_result"
    )


def recap(events: list[dict]) -> dict[str, dict]:
    [stats] = [event for event in events if event["type"] == "stats"]
    return stats["hosts"]


def test_a_two_task_playbook_succeeds_with_the_project_groups(runner):
    outcome, events, data_dir = run(runner, PlaybookStep(TWO_TASKS), {"web": ["beta"], "all": ["alpha"]})
    assert outcome == RunOutcome(RunStatus.SUCCESS)
    assert task_results(events) == [
        ("alpha", "first", "changed"),
        ("alpha", "second", "changed"),
        ("beta", "first", "changed"),
        ("beta", "second", "changed"),
        ("beta", "web only", "ok"),
    ]
    first = {event["host"]: event["stdout"] for event in events if event.get("task") == "first"}
    assert first == {"alpha": "first on alpha", "beta": "first on beta"}
    assert [event["msg"] for event in events if event.get("task") == "web only"] == ["beta"]
    assert {host: summary["failures"] for host, summary in recap(events).items()} == {"alpha": 0, "beta": 0}
    # The user's text reached disk as it was, Jinja and all.
    assert (data_dir / "project" / PLAYBOOK).read_bytes() == TWO_TASKS.encode()


def test_tags_and_skip_tags_choose_tasks(runner):
    _, events, _ = run(runner, PlaybookStep(TWO_TASKS, tags=["one"]))
    assert {task for _, task, _ in task_results(events)} == {"first"}
    _, events, _ = run(runner, PlaybookStep(TWO_TASKS, skip_tags=["one"]), {"web": ["alpha"]})
    assert {task for _, task, _ in task_results(events)} == {"second", "web only"}


def test_limit_chooses_hosts(runner):
    outcome, events, _ = run(runner, PlaybookStep(TWO_TASKS, limit="beta"))
    assert outcome.status is RunStatus.SUCCESS
    assert {host for host, _, _ in task_results(events)} == {"beta"}
    assert list(recap(events)) == ["beta"]


def test_extra_vars_are_data(runner):
    playbook = """\
- hosts: alpha
  gather_facts: false
  tasks:
    - name: print
      ansible.builtin.command:
        argv: [printf, "%s", "{{ payload }}"]
    - name: write
      ansible.builtin.copy:
        content: "{{ payload }}"
        dest: "{{ playbook_dir }}/{{ out }}"
"""
    # The run's sandbox shows it its own directory only: the file lands there.
    step = PlaybookStep(playbook, extra_vars={"payload": INJECTION, "out": "payload.txt"})
    outcome, events, data_dir = run(runner, step)
    assert outcome.status is RunStatus.SUCCESS, events
    [printed] = [event["stdout"] for event in events if event.get("task") == "print"]
    assert printed == INJECTION
    assert (data_dir / "project" / "payload.txt").read_text() == INJECTION
    # The extra vars file may hold secrets: it is gone once the run has ended.
    assert not (data_dir / EXTRA_VARS_FILE).exists()
    assert f"@{data_dir / EXTRA_VARS_FILE}" in (data_dir / "artifacts" / "run" / "command").read_text()


def test_a_failing_task_fails_the_run(runner):
    playbook = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: fail on beta
      ansible.builtin.command: "{{ 'false' if inventory_hostname == 'beta' else 'true' }}"
    - name: after
      ansible.builtin.command: "true"
"""
    outcome, events, _ = run(runner, PlaybookStep(playbook))
    assert outcome.status is RunStatus.FAILED
    assert task_results(events) == [
        ("alpha", "after", "changed"),
        ("alpha", "fail on beta", "changed"),
        ("beta", "fail on beta", "failed"),
    ]
    assert {host: summary["failures"] for host, summary in recap(events).items()} == {"alpha": 0, "beta": 1}
