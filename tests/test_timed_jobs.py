"""Timed jobs: saving and checking them, previews, run-now, the trigger endpoint with its secret, statistics;
and real scheduler processes firing them, several at once, after an outage, with overlap rules."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from tests.conftest import add_local_host, make_member


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def script_body(host: dict, content: str = "echo tick", **extra) -> dict:
    return {
        "script": {"language": "bash", "content": content},
        "targets": {"hosts": [host["id"]]},
        "timeout": 60,
        **extra,
    }


def make_timed_job(service, pid: int, expect: int = 201, **body) -> dict:
    body.setdefault("name", unique("timer"))
    body.setdefault("schedule", {"cron": "0 0 3 * * *"})
    return service.post(f"/projects/{pid}/timed-jobs", body, expect).get_json()


def make_plan(service, pid: int, host: dict) -> dict:
    template = service.post(
        f"/projects/{pid}/job-templates",
        {
            "name": unique("template"),
            "variables": [
                {"name": "colour", "type": "string", "default": "blue"},
                {"name": "token", "type": "secret"},
                {"name": "size", "type": "string", "required": True},
            ],
            "steps": [
                {
                    "key": "say",
                    "name": "say",
                    "type": "script",
                    "script": {"language": "bash", "content": 'echo "$colour $size"'},
                    "targets": {"hosts": [host["id"]]},
                    "timeout": 60,
                }
            ],
        },
        expect=201,
    ).get_json()
    return service.post(
        f"/projects/{pid}/job-plans",
        {"template_id": template["id"], "name": unique("plan"), "values": {"size": "small"}},
        expect=201,
    ).get_json()


def runs(service, pid: int, timed_job: dict, **filters) -> list[dict]:
    found, page = [], 1
    while True:
        query = {"page": page, "page_size": 100, **filters}
        chunk = service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}/runs", query_string=query)
        found.extend(chunk)
        if len(chunk) < 100:
            return found
        page += 1


def secret_of(timed_job: dict) -> str:
    return timed_job["trigger_url"].split("secret=", 1)[1]


def trigger_path(timed_job: dict) -> str:
    return f"/projects/{timed_job['project_id']}/timed-jobs/{timed_job['id']}/trigger"


def test_every_target_kind_is_checked_on_save(service, project):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    plan = make_plan(service, pid, host)
    by_plan = make_timed_job(
        service,
        pid,
        target={"plan_id": plan["id"]},
        variables={"colour": "red", "token": "s3cret-value"},
        schedule={"cron": "*/10 * * * * *"},
        timezone="Europe/Berlin",
    )
    assert by_plan["variables"] == {"colour": "red", "token": "******"}
    assert "s3cret-value" not in str(by_plan)
    assert by_plan["trigger_url"].startswith("http") and "/trigger?secret=opt_" in by_plan["trigger_url"]
    assert by_plan["next_fire_at"] and by_plan["statistics"]["consecutive_failures"] == 0
    shown = service.get(f"/projects/{pid}/timed-jobs/{by_plan['id']}")
    assert "trigger_url" not in shown and shown["has_trigger_secret"] is True
    assert shown["variables"]["token"] == "******"

    by_template = make_timed_job(
        service, pid, target={"template_id": plan["template_id"]}, variables={"size": "large"}
    )
    assert by_template["target"] == {"template_id": plan["template_id"]}
    script = make_timed_job(
        service,
        pid,
        target={"script_execution": script_body(host, params=["hidden-param"], sensitive=True)},
        schedule={"every": 90},
    )
    assert script["target"]["script_execution"]["params"] == "******"
    assert "hidden-param" not in str(service.get(f"/projects/{pid}/timed-jobs/{script['id']}"))


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"target": {"flow_id": 1}}, "target.flow_id", "flows"),
        ({"target": {"plan_id": 999999}}, "target.plan_id", "does not exist"),
        ({"target": {}}, "target.plan_id", "exactly one"),
        ({"variables": {"nope": "x"}}, "variables.nope", "no variable"),
        ({"variables": {"size": 5}}, "variables.size", "string"),
        ({"schedule": {"cron": "0 0 25 * * *"}}, "schedule.cron", "hour field"),
        ({"schedule": {"at": "2020-01-01T00:00:00"}}, "schedule.at", "passed"),
        ({"schedule": {"every": 0}}, "schedule.every", "seconds"),
        ({"timezone": "Nowhere/Else"}, "timezone", "IANA"),
        ({"start_at": "2027-01-02T00:00:00", "end_at": "2027-01-01T00:00:00"}, "end_at", "before the start"),
        ({"end_at": "2020-01-01T00:00:00"}, "end_at", "no fire time left"),
        ({"overlap": "sometimes"}, "overlap", "Must be one of"),
        ({"misfire_grace": -1}, "misfire_grace", "greater than or equal"),
    ],
)
def test_bad_timed_jobs_are_refused_naming_the_field(service, project, change, field, words):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    plan = make_plan(service, pid, host)
    body = {"target": {"plan_id": plan["id"]}, **change}
    error = make_timed_job(service, pid, expect=422, **body)["error"]
    assert error["field"] == field, error
    assert words in error["message"], error
    assert service.get(f"/projects/{pid}/timed-jobs") == []


def test_a_required_variable_without_a_value_is_refused_for_a_template(service, project):
    pid = project["id"]
    plan = make_plan(service, pid, add_local_host(service, project, unique("local")))
    error = make_timed_job(service, pid, expect=422, target={"template_id": plan["template_id"]})["error"]
    assert error["field"] == "variables.size"


def test_preview_shows_the_next_times_in_the_zone_and_in_utc(service, project):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    timed_job = make_timed_job(
        service,
        pid,
        target={"script_execution": script_body(host)},
        schedule={"cron": "0 30 2 * * *"},
        timezone="Europe/Berlin",
    )
    preview = service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}/preview", query_string={"count": 3})
    assert len(preview) == 3
    for fire in preview:
        assert fire["at"][11:19] == "02:30:00" and fire["at"][19:] in ("+01:00", "+02:00")
        local = datetime.fromisoformat(fire["at"])
        assert local.astimezone(UTC) == datetime.fromisoformat(fire["utc"])
    refused = service.get(
        f"/projects/{pid}/timed-jobs/{timed_job['id']}/preview", expect=422, query_string={"count": 0}
    )
    assert refused["error"]["field"] == "count"
    service.api("PATCH", f"/projects/{pid}/timed-jobs/{timed_job['id']}", 200, json={"enabled": False})
    assert service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}/preview") == []


def test_run_now_launches_a_timed_job_instance(service, project):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    plan = make_plan(service, pid, host)
    timed_job = make_timed_job(service, pid, target={"plan_id": plan["id"]}, variables={"colour": "green"})
    run = service.post(f"/projects/{pid}/timed-jobs/{timed_job['id']}/run-now", expect=202).get_json()
    assert run["origin"] == "run_now" and run["status"] == "launched" and run["job_instance_id"]
    job = service.wait_job(pid, run["job_instance_id"])
    assert job["status"] == "success"
    assert job["launch_type"] == "timed" and job["timed_job_id"] == timed_job["id"]
    assert "green small" in service.host_results(pid, job["id"])[0]["stdout"]
    history = service.get(f"/projects/{pid}/jobs", query_string={"timed_job_id": timed_job["id"]})
    assert [entry["id"] for entry in history] == [job["id"]]
    shown = service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}")
    stats = shown["statistics"]
    assert stats["last_run"]["id"] == run["id"] and stats["last_run"]["job_status"] == "success"
    assert stats["success_rate"] == 1.0 and stats["consecutive_failures"] == 0


def test_a_launch_that_fails_is_recorded_with_its_reason(service, project):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    timed_job = make_timed_job(service, pid, target={"script_execution": script_body(host)})
    service.api("DELETE", f"/projects/{pid}/hosts/{host['id']}", 204)
    for _ in range(2):
        run = service.post(f"/projects/{pid}/timed-jobs/{timed_job['id']}/run-now", expect=202).get_json()
        assert run["status"] == "failed_to_launch" and "does not exist" in run["reason"]
    stats = service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}")["statistics"]
    assert stats["consecutive_failures"] == 2 and stats["success_rate"] == 0.0
    assert len(stats["last_failures"]) == 2
    assert [run["status"] for run in runs(service, pid, timed_job, status="failed_to_launch")] == [
        "failed_to_launch"
    ] * 2


def test_the_trigger_takes_a_secret_a_run_key_and_a_project_token(service, project):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    timed_job = make_timed_job(service, pid, target={"script_execution": script_body(host)})
    path = trigger_path(timed_job)
    secret = secret_of(timed_job)

    first = service.api(
        "POST", path, 202, token=None, query_string={"secret": secret}, json={"run_key": "ci-1"}
    )
    again = service.api(
        "POST", path, 202, token=None, headers={"X-Opsflow-Trigger-Secret": secret}, json={"run_key": "ci-1"}
    )
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.get_json()["id"] == again.get_json()["id"]
    assert first.get_json()["origin"] == "trigger" and first.get_json()["job_instance_id"]

    bad = service.api("POST", path, 401, token=None, query_string={"secret": "opt_wrong"}, json={})
    assert bad.get_json()["error"]["code"] == "unauthorized"
    service.api("POST", path, 401, token=None, json={})

    rotated = service.post(
        f"/projects/{pid}/timed-jobs/{timed_job['id']}/trigger-secret", expect=201
    ).get_json()
    service.api("POST", path, 401, token=None, query_string={"secret": secret}, json={"run_key": "ci-2"})
    service.api(
        "POST", path, 202, token=None, query_string={"secret": secret_of(rotated)}, json={"run_key": "ci-2"}
    )
    service.api("DELETE", f"/projects/{pid}/timed-jobs/{timed_job['id']}/trigger-secret", 204)
    service.api("POST", path, 401, token=None, query_string={"secret": secret_of(rotated)}, json={})

    viewer = make_member(service, pid, "viewer")
    service.api("POST", path, 403, token=viewer, json={})
    operator = make_member(service, pid, "operator")
    by_token = service.api("POST", path, 202, token=operator, json={"run_key": "ci-3"}).get_json()
    assert by_token["status"] == "launched"
    assert len(runs(service, pid, timed_job, origin="trigger")) == 3

    denied = service.get(
        "/audit-events", query_string={"project_id": pid, "action": "trigger", "outcome": "denied"}
    )
    assert len(denied) >= 3
    assert secret not in str(service.get("/audit-events", query_string={"project_id": pid}))


def test_trigger_variables_are_checked(service, project):
    pid = project["id"]
    plan = make_plan(service, pid, add_local_host(service, project, unique("local")))
    timed_job = make_timed_job(service, pid, target={"plan_id": plan["id"]})
    error = service.post(trigger_path(timed_job), {"variables": {"size": ["x"]}}, expect=422).get_json()
    assert error["error"]["field"] == "variables.size"
    assert runs(service, pid, timed_job) == []
