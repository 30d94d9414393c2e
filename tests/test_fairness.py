"""One project cannot starve the others: a limit of running job instances per project."""

from __future__ import annotations

import dataclasses
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.extensions import redis
from app.services import dispatch, executions
from app.services.access import Actor
from tests.conftest import ADMIN_TOKEN, add_local_host


@pytest.fixture
def local_host(service, project):
    return add_local_host(service, project)


def launch(service, project, host, expect=202, seconds=3):
    body = {"script": {"content": f"sleep {seconds}"}, "targets": {"hosts": [host["id"]]}}
    return service.post(f"/projects/{project['id']}/script-executions", body, expect=expect)


def test_launches_over_the_limit_wait_their_turn(service, project, local_host):
    limit = service.app.config["OPSFLOW"].project_running_limit
    jobs = [launch(service, project, local_host).get_json() for _ in range(limit + 1)]
    assert all(job["dispatched_at"] for job in jobs[:limit])
    held = jobs[limit]
    assert held["dispatched_at"] is None and held["status"] == "waiting"
    other = service.post("/projects", {"name": f"{project['name']}-other"}, expect=201).get_json()
    other_host = add_local_host(service, other)
    assert launch(service, other, other_host, seconds=0).get_json()["dispatched_at"], "other projects go on"
    done = [service.wait_job(project["id"], job["id"], timeout=60) for job in jobs]
    assert [job["status"] for job in done] == ["success"] * (limit + 1)
    assert done[limit]["started_at"] >= min(job["ended_at"] for job in done[:limit])


def test_refusing_mode_answers_429_with_retry_after(service, project, local_host):
    settings = service.app.config["OPSFLOW"]
    service.app.config["OPSFLOW"] = dataclasses.replace(settings, over_limit="refuse")
    try:
        running = [
            launch(service, project, local_host).get_json() for _ in range(settings.project_running_limit)
        ]
        refused = launch(service, project, local_host, expect=429)
        assert refused.headers["Retry-After"].isdigit()
        assert refused.get_json()["error"]["code"] == "too_many_requests"
        assert len(service.get(f"/projects/{project['id']}/jobs")) == len(running)
    finally:
        service.app.config["OPSFLOW"] = settings
    for job in running:
        service.wait_job(project["id"], job["id"], timeout=60)


def test_a_launch_over_the_limit_waits_for_no_lock(service, project, local_host, caplog):
    # The project is full, so there is nothing to decide: its lock, held meanwhile, delays no launch.
    limit = service.app.config["OPSFLOW"].project_running_limit
    running = [launch(service, project, local_host, seconds=10).get_json() for _ in range(limit)]
    lock = redis.client.lock(dispatch.admission_lock(project["id"]).name, timeout=60)
    assert lock.acquire(blocking=False)
    try:
        with caplog.at_level(logging.WARNING, logger=dispatch.__name__):
            held = launch(service, project, local_host, seconds=0).get_json()
    finally:
        lock.release()
    assert held["dispatched_at"] is None
    assert "lock is busy" not in caplog.text
    done = [service.wait_job(project["id"], job["id"], timeout=60) for job in [*running, held]]
    assert [job["status"] for job in done] == ["success"] * (limit + 1)


def test_a_launch_queues_its_slices_once_it_has_let_go_of_the_projects_lock(
    service, project, local_host, monkeypatch
):
    # Committed, the job holds its place: the next launch's decision does not wait for its queueing.
    lock_name = dispatch.admission_lock(project["id"]).name
    locked_while_queueing = []
    queue_slices = dispatch.queue_slices

    def queue_and_look(entries):
        if entries:
            locked_while_queueing.append(bool(redis.client.exists(lock_name)))
        queue_slices(entries)

    monkeypatch.setattr(dispatch, "queue_slices", queue_and_look)
    job = launch(service, project, local_host, seconds=0).get_json()
    assert job["dispatched_at"] and locked_while_queueing == [False]
    assert service.wait_job(project["id"], job["id"], timeout=60)["status"] == "success"


def test_held_jobs_outlive_the_reaper(service, project, local_host):
    # Held longer than a lost slice is given: the reaper must not take a held job for a lost one.
    held_for = int(service.env["OPSFLOW_HEARTBEAT_TTL"]) + 3
    limit = service.app.config["OPSFLOW"].project_running_limit
    jobs = [launch(service, project, local_host, seconds=held_for).get_json() for _ in range(limit + 1)]
    assert jobs[limit]["dispatched_at"] is None
    done = [service.wait_job(project["id"], job["id"], timeout=90) for job in jobs]
    assert [job["status"] for job in done] == ["success"] * (limit + 1)


def test_simultaneous_launches_never_overshoot_the_limit(service, project, local_host):
    limit = service.app.config["OPSFLOW"].project_running_limit
    body = {"script": {"content": "sleep 4"}, "targets": {"hosts": [local_host["id"]]}}
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def launch_now(_) -> dict:
        # A thread of its own is a request of its own: its own application context and session.
        response = service.client.post(
            f"/api/v1/projects/{project['id']}/script-executions", json=body, headers=headers
        )
        assert response.status_code == 202, response.get_data(as_text=True)
        return response.get_json()

    with ThreadPoolExecutor(max_workers=limit + 4) as pool:
        jobs = list(pool.map(launch_now, range(limit + 4)))
    dispatched = [job for job in service.get(f"/projects/{project['id']}/jobs") if job["dispatched_at"]]
    assert len(dispatched) == limit
    # The oldest launches went first; the others wait their turn and then run.
    assert sorted(job["id"] for job in dispatched) == sorted(job["id"] for job in jobs)[:limit]
    done = [service.wait_job(project["id"], job["id"], timeout=120) for job in jobs]
    assert [job["status"] for job in done] == ["success"] * len(jobs)


def test_a_missed_release_is_made_up_by_the_periodic_pass(service, project, local_host, monkeypatch):
    # A launch whose own release never happened (its lock not obtained, its process gone): the job is
    # written held although the project has room, and the ingester's periodic pass dispatches it.
    monkeypatch.setattr(dispatch, "has_room_for_new", lambda project_id, limit: False)
    monkeypatch.setattr(dispatch, "release_held", lambda project_id: None)
    data = {"script": {"content": "echo late"}, "targets": {"hosts": [local_host["id"]]}, "timeout": 60}
    job = executions.launch_script(Actor(0, "admin", is_admin=True), project["id"], data)
    assert job.dispatched_at is None
    done = service.wait_job(project["id"], job.id, timeout=60)
    assert done["status"] == "success" and done["dispatched_at"]
