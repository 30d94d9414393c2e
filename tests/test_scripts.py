"""The script library: versions and their states, public scripts, launching library scripts, usage."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import ScriptVersion, Slice, StepInstance, VersionState
from app.services import executions
from app.services.errors import Conflict
from tests.conftest import add_local_host


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_script(service, project: dict | None, language: str = "bash", **extra) -> tuple[str, dict]:
    """A script in the project (public without one), and its URL path."""
    scripts = "/scripts" if project is None else f"/projects/{project['id']}/scripts"
    body = {"name": unique("s"), "language": language, **extra}
    script = service.post(scripts, body, expect=201).get_json()
    return f"{scripts}/{script['id']}", script


def make_version(service, path: str, label: str, content: str, publish: bool = False) -> dict:
    version = service.post(f"{path}/versions", {"version": label, "content": content}, expect=201).get_json()
    if publish:
        version = service.post(f"{path}/versions/{version['id']}/publish", expect=200).get_json()
    return version


def launch(service, project: dict, host: dict, script: dict, expect: int = 202) -> dict:
    body = {"script": script, "targets": {"hosts": [host["id"]]}}
    return service.post(f"/projects/{project['id']}/script-executions", body, expect=expect).get_json()


def states(service, path: str) -> dict[str, str]:
    return {version["version"]: version["state"] for version in service.get(f"{path}/versions")}


def test_versions_move_through_their_states(service, project):
    path, script = make_script(service, project, description="prints its version")
    assert (script["project_id"], script["language"]) == (project["id"], "bash")
    one = make_version(service, path, "1.0", "echo one")
    assert (one["state"], one["created_by"], one["warnings"]) == ("draft", "admin", [])
    two = make_version(service, path, "1.1", "echo two")
    service.post(f"{path}/versions", {"version": "1.0", "content": "echo again"}, expect=409)

    service.post(f"{path}/versions/{one['id']}/publish", expect=200)
    assert states(service, path) == {"1.0": "online", "1.1": "draft"}
    service.post(f"{path}/versions/{two['id']}/publish", expect=200)
    assert states(service, path) == {"1.0": "offline", "1.1": "online"}
    service.post(f"{path}/versions/{two['id']}/offline", expect=200)
    service.post(f"{path}/versions/{one['id']}/disable", expect=200)
    assert states(service, path) == {"1.0": "disabled", "1.1": "offline"}

    error = service.post(f"{path}/versions/{one['id']}/publish", expect=409).get_json()["error"]
    assert "'1.0' is disabled" in error["message"] and "publish" in error["message"]
    error = service.post(f"{path}/versions/{two['id']}/enable", expect=409).get_json()["error"]
    assert "'1.1' is offline" in error["message"]
    service.post(f"{path}/versions/{two['id']}/offline", expect=409)
    service.post(f"{path}/versions/{one['id']}/enable", expect=200)
    assert states(service, path) == {"1.0": "offline", "1.1": "offline"}

    error = service.post(f"{path}/versions/999999/publish", expect=404).get_json()["error"]
    assert "version 999999" in error["message"]


def test_only_a_draft_content_changes(service, project):
    path, _ = make_script(service, project)
    version = make_version(service, path, "1", "echo draft")
    changed = service.api("PATCH", f"{path}/versions/{version['id']}", 200, json={"content": "echo edited"})
    assert changed.get_json()["content"] == "echo edited"
    service.post(f"{path}/versions/{version['id']}/publish", expect=200)
    error = service.api(
        "PATCH", f"{path}/versions/{version['id']}", 409, json={"content": "echo late"}
    ).get_json()
    assert "only a draft" in error["error"]["message"]
    described = service.api("PATCH", f"{path}/versions/{version['id']}", 200, json={"description": "why"})
    assert described.get_json()["description"] == "why"
    service.api("PATCH", path, 422, json={"language": "python"})


def test_the_database_holds_one_online_version_per_script(service, project):
    path, script = make_script(service, project)
    make_version(service, path, "1", "echo one", publish=True)
    db.session.add(
        ScriptVersion(script_id=script["id"], version="2", content="echo two", state=VersionState.ONLINE)
    )
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_names_are_unique_per_scope(service, project):
    other = service.post("/projects", {"name": unique("p")}, expect=201).get_json()
    name = unique("shared")
    service.post(f"/projects/{project['id']}/scripts", {"name": name, "language": "bash"}, expect=201)
    service.post(f"/projects/{other['id']}/scripts", {"name": name, "language": "bash"}, expect=201)
    service.post("/scripts", {"name": name, "language": "bash"}, expect=201)
    for scripts in (f"/projects/{project['id']}/scripts", "/scripts"):
        error = service.post(scripts, {"name": name, "language": "bash"}, expect=409).get_json()["error"]
        assert error["field"] == "name"


def test_launch_by_script_id_runs_the_online_version(service, project):
    host = add_local_host(service, project)
    path, script = make_script(service, project)
    make_version(service, path, "1", "echo v1", publish=True)
    two = make_version(service, path, "2", 'echo "v2 in ${BASH_VERSION:+bash}"', publish=True)
    job = launch(service, project, host, {"script_id": script["id"]})
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "success", done
    [result] = service.host_results(project["id"], job["id"])
    assert result["stdout"] == "v2 in bash\n"
    [step] = done["steps"]
    assert step["spec"]["script_id"] == script["id"]
    assert step["spec"]["version_id"] == two["id"]
    assert (step["spec"]["language"], step["spec"]["content"]) == ("bash", two["content"])


def test_launch_by_version_id_pins_a_version(service, project):
    host = add_local_host(service, project)
    path, _ = make_script(service, project, language="python")
    one = make_version(service, path, "1", "print('pinned one')")
    make_version(service, path, "2", "print('online two')", publish=True)
    job = launch(service, project, host, {"version_id": one["id"]})
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "success", done
    [result] = service.host_results(project["id"], job["id"])
    assert result["stdout"] == "pinned one\n"
    assert done["steps"][0]["spec"]["language"] == "python"


def test_public_scripts_run_from_every_project(service, project):
    host = add_local_host(service, project)
    path, script = make_script(service, None, language="shell")
    assert script["project_id"] is None
    version = make_version(service, path, "1", "echo public", publish=True)
    by_script = launch(service, project, host, {"script_id": script["id"]})
    by_version = launch(service, project, host, {"version_id": version["id"]})
    for job in (by_script, by_version):
        assert service.wait_job(project["id"], job["id"])["status"] == "success"
    assert service.get(f"/projects/{project['id']}/scripts") == []
    assert script["id"] in [item["id"] for item in service.get("/scripts", query_string={"page_size": 100})]


def test_another_projects_script_is_missing(service, project):
    host = add_local_host(service, project)
    other = service.post("/projects", {"name": unique("p")}, expect=201).get_json()
    path, script = make_script(service, other)
    version = make_version(service, path, "1", "echo theirs", publish=True)
    error = launch(service, project, host, {"script_id": script["id"]}, expect=404)["error"]
    assert (error["field"], error["message"]) == ("script.script_id", f"script {script['id']} does not exist")
    error = launch(service, project, host, {"version_id": version["id"]}, expect=404)["error"]
    assert error["field"] == "script.version_id"
    service.api("GET", f"/projects/{project['id']}/scripts/{script['id']}", 404)


def test_a_disabled_version_refuses_to_run(service, project):
    host = add_local_host(service, project)
    path, _ = make_script(service, project)
    version = make_version(service, path, "7", "echo hi", publish=True)
    service.post(f"{path}/versions/{version['id']}/disable", expect=200)
    error = launch(service, project, host, {"version_id": version["id"]}, expect=409)["error"]
    assert error["field"] == "script.version_id"
    assert f"version '7' ({version['id']})" in error["message"] and "disabled" in error["message"]
    assert service.get(f"/projects/{project['id']}/jobs") == []


def test_a_version_disabled_after_launch_is_refused_on_the_worker(service, project):
    host = add_local_host(service, project)
    path, _ = make_script(service, project)
    version = make_version(service, path, "1", "echo hi", publish=True)
    job = launch(service, project, host, {"version_id": version["id"]})
    assert service.wait_job(project["id"], job["id"])["status"] == "success"
    service.post(f"{path}/versions/{version['id']}/disable", expect=200)
    step = db.session.get(StepInstance, job["steps"][0]["id"])
    piece = db.session.scalars(db.select(Slice).where(Slice.step_instance_id == step.id)).one()
    with pytest.raises(Conflict, match="is disabled"):
        executions.compile_slice(piece)
    db.session.rollback()


def test_a_script_without_online_version_is_refused(service, project):
    host = add_local_host(service, project)
    path, script = make_script(service, project)
    make_version(service, path, "1", "echo draft only")
    error = launch(service, project, host, {"script_id": script["id"]}, expect=409)["error"]
    assert error["field"] == "script.script_id"
    assert f"script {script['id']} ({script['name']}) has no online version" in error["message"]


@pytest.mark.parametrize(
    ("script", "field"),
    [
        ({}, "script.content"),
        ({"content": "echo hi", "script_id": 1}, "script.script_id"),
        ({"script_id": 1, "version_id": 1}, "script.version_id"),
        ({"script_id": 1, "language": "bash"}, "script.language"),
        ({"script_id": "1"}, "script.script_id"),
    ],
)
def test_exactly_one_script_source(service, project, script, field):
    host = add_local_host(service, project)
    error = launch(service, project, host, script, expect=422)["error"]
    assert error["field"] == field


def test_usage_lists_the_job_instances_that_ran_the_script(service, project):
    host = add_local_host(service, project)
    path, script = make_script(service, project)
    one = make_version(service, path, "1", "echo one", publish=True)
    first = launch(service, project, host, {"script_id": script["id"]})
    two = make_version(service, path, "2", "echo two", publish=True)
    second = launch(service, project, host, {"version_id": two["id"]})
    launch(service, project, host, {"content": "echo unrelated"})
    response = service.api("GET", f"{path}/usage", 200, query_string={"page_size": 1})
    assert response.headers["X-Pagination"] and '"total": 2' in response.headers["X-Pagination"]
    uses = service.get(f"{path}/usage")
    assert [(use["kind"], use["id"], use["version_id"], use["version"]) for use in uses] == [
        ("job_instance", second["id"], two["id"], "2"),
        ("job_instance", first["id"], one["id"], "1"),
    ]
    assert all(use["project_id"] == project["id"] for use in uses)
    for job in (first, second):
        service.wait_job(project["id"], job["id"])
