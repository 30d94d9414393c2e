"""Timed jobs: saving and checking them, previews, run-now, the trigger endpoint with its secret, statistics;
and real scheduler processes firing them, several at once, after an outage, with overlap rules; flows as
targets."""

from __future__ import annotations

import itertools
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from app.extensions import db
from app.models import TimedJob, TimedJobRun
from app.services import timed_jobs
from tests.conftest import add_local_host, make_member
from tests.test_flows import chain, create_flow, create_task, ended, script_node, sleep_node, wait_task


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


def assert_refused(service, pid: int, body: dict, field: str, words: str) -> None:
    """Saving this timed job is a 422 naming `field`, and saves nothing."""
    error = make_timed_job(service, pid, expect=422, **body)["error"]
    assert error["field"] == field, error
    assert words in error["message"], error
    assert service.get(f"/projects/{pid}/timed-jobs") == []


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
    return service.get_all(f"/projects/{pid}/timed-jobs/{timed_job['id']}/runs", **filters)


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


def test_sensitive_params_survive_a_change_and_stay_masked(service, project):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    body = script_body(host, 'echo "param=$1"', params=["hidden-param"], sensitive=True)
    timed_job = make_timed_job(service, pid, target={"script_execution": body})
    path = f"/projects/{pid}/timed-jobs/{timed_job['id']}"
    service.api("PATCH", path, 200, json={"variables": {}, "misfire_grace": 5})
    run = service.post(f"{path}/run-now", expect=202).get_json()
    job = service.wait_job(pid, run["job_instance_id"])
    assert job["status"] == "success"
    assert service.host_results(pid, job["id"])[0]["stdout"].strip() == "param=******"
    error = service.api("PATCH", path, 422, json={"variables": {"x": "1"}}).get_json()["error"]
    assert error["field"] == "variables"


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
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
    assert_refused(service, pid, {"target": {"plan_id": plan["id"]}, **change}, field, words)


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
    assert stats["last_run"]["id"] == run["id"] and stats["last_run"]["target_status"] == "success"
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


@pytest.fixture
def schedulers(service):
    """Starts scheduler processes for one test (timed jobs of earlier tests paused first), and stops them."""
    db.session.execute(db.update(TimedJob).values(enabled=False))
    db.session.commit()
    started: list[str] = []

    def start(name: str = "scheduler") -> None:
        service.start_scheduler(name)
        started.append(name)

    yield start
    for name in started:
        if name in service.processes:
            service.stop(name)


def manual_plan(service, pid: int) -> dict:
    """A plan whose job waits for a confirmation: launching it writes rows and runs nothing."""
    template = service.post(
        f"/projects/{pid}/job-templates",
        {
            "name": unique("wait"),
            "steps": [{"key": "ok", "name": "ok", "type": "manual", "manual": {"message": "go?"}}],
        },
        expect=201,
    ).get_json()
    return service.post(
        f"/projects/{pid}/job-plans", {"template_id": template["id"], "name": unique("plan")}, expect=201
    ).get_json()


def waiting_timed_job(service, pid: int, **body) -> dict:
    """A timed job, every second unless told otherwise, whose runs wait for a confirmation."""
    body.setdefault("schedule", {"every": 1})
    return make_timed_job(service, pid, target={"plan_id": manual_plan(service, pid)["id"]}, **body)


def whole_second(after: float) -> datetime:
    return datetime.fromtimestamp(int(time.time() + after), UTC)


def wait_for(check, timeout: float = 90, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout}s: {check}")
        time.sleep(every)


def scheduled(run: dict) -> datetime:
    return datetime.fromisoformat(run["scheduled_at"])


def test_two_schedulers_fire_every_second_exactly_once_even_when_one_is_killed(service, project, schedulers):
    pid = project["id"]
    schedulers("scheduler-a")
    schedulers("scheduler-b")
    start = whole_second(3)
    end = start + timedelta(seconds=19)
    timed_job = waiting_timed_job(
        service, pid, start_at=start.isoformat(), end_at=end.isoformat(), overlap="allow"
    )
    time.sleep(max((start - datetime.now(UTC)).total_seconds(), 0) + 9)
    service.stop("scheduler-a")
    expected = [start + timedelta(seconds=n) for n in range(20)]

    def all_launched():
        found = runs(service, pid, timed_job)
        return found if len(found) >= 20 and all(run["status"] == "launched" for run in found) else None

    fired = wait_for(all_launched, timeout=120)
    assert sorted(scheduled(run) for run in fired) == expected
    assert len({run["job_instance_id"] for run in fired}) == 20
    history = service.get(
        f"/projects/{pid}/jobs", query_string={"timed_job_id": timed_job["id"], "page_size": 100}
    )
    assert len(history) == 20 and {job["launch_type"] for job in history} == {"timed"}
    # The last fire leaves the schedule nothing: it disabled itself and says why.
    shown = wait_for(
        lambda: (
            (row := service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}"))["disabled_reason"] and row
        )
    )
    assert shown["enabled"] is False and "no fire time" in shown["disabled_reason"]


def assert_skipped_while_running(service, pid: int, timed_job: dict, ended_at) -> None:
    """Let an every-second timed job with a slow target launch twice: the fires between were skipped, and
    each launch came after the previous run's target ended (`ended_at(run)`)."""
    wait_for(lambda: len(runs(service, pid, timed_job, status="launched")) >= 2, timeout=180)
    service.api("PATCH", f"/projects/{pid}/timed-jobs/{timed_job['id']}", 200, json={"enabled": False})
    fired = sorted(runs(service, pid, timed_job), key=scheduled)
    skipped = [run for run in fired if run["status"] == "skipped"]
    assert skipped and all("still running" in run["reason"] for run in skipped)
    launched = [run for run in fired if run["status"] == "launched"]
    for earlier, later in itertools.pairwise(launched):
        assert datetime.fromisoformat(ended_at(earlier)) <= datetime.fromisoformat(later["fired_at"])


def test_overlap_skip_waits_for_the_slow_run_to_end(service, project, schedulers):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    schedulers()
    timed_job = make_timed_job(
        service,
        pid,
        target={"script_execution": script_body(host, "sleep 4")},
        schedule={"every": 1},
        overlap="skip",
    )
    assert_skipped_while_running(
        service, pid, timed_job, lambda run: service.wait_job(pid, run["job_instance_id"])["ended_at"]
    )


def test_overlap_queue_keeps_one_run_waiting_until_the_running_one_ends(service, project, schedulers):
    pid = project["id"]
    schedulers()
    timed_job = waiting_timed_job(service, pid, overlap="queue")
    first = wait_for(lambda: runs(service, pid, timed_job, status="launched"))[0]
    wait_for(lambda: runs(service, pid, timed_job, status="skipped"))
    [queued] = runs(service, pid, timed_job, status="queued")
    assert "already waits" in runs(service, pid, timed_job, status="skipped")[0]["reason"]
    service.post(f"/projects/{pid}/jobs/{first['job_instance_id']}/cancel", {"reason": "done"}, expect=202)
    ended = service.wait_job(pid, first["job_instance_id"])
    released = wait_for(
        lambda: [
            run
            for run in runs(service, pid, timed_job)
            if run["id"] == queued["id"] and run["status"] == "launched"
        ]
    )[0]
    assert datetime.fromisoformat(released["launched_at"]) >= datetime.fromisoformat(ended["ended_at"])
    time.sleep(2)
    service.api("PATCH", f"/projects/{pid}/timed-jobs/{timed_job['id']}", 200, json={"enabled": False})
    launched = runs(service, pid, timed_job, status="launched")
    assert [run["id"] for run in launched if run["target_status"] != "terminated"] == [released["id"]]


def test_a_fire_waits_while_another_scheduler_fires_the_same_timed_job(service, project):
    """Two schedulers firing two times of one timed job at once must not both find it idle (two runs
    launched under `skip`, two waiting under `queue`): a fire holds the timed job's row until its run is
    recorded, and a fire meanwhile decides after it, seeing that run."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("one SQLite file takes one writer at a time")
    pid = project["id"]
    timed_job = waiting_timed_job(service, pid, overlap="queue", schedule={"cron": "0 0 3 * * *"})
    first, second = whole_second(0), whole_second(1)

    def fire() -> str:
        with service.app.app_context():
            return timed_jobs.fire(timed_job["id"], second, datetime.now(UTC)).status

    with db.engine.connect() as other, ThreadPoolExecutor(max_workers=1) as pool:
        other.execute(db.select(TimedJob.id).where(TimedJob.id == timed_job["id"]).with_for_update())
        other.execute(
            db.insert(TimedJobRun).values(
                timed_job_id=timed_job["id"],
                origin="schedule",
                scheduled_at=first,
                fired_at=datetime.now(UTC),
                status="firing",
                triggered_by="scheduler",
            )
        )
        firing = pool.submit(fire)
        # Long enough for a fire that does not wait to read the timed job as idle.
        time.sleep(2)
        other.commit()
        assert firing.result(timeout=60) == "queued"
    # The first run stands for a scheduler's fire in progress: no scheduler is left to launch it.
    service.api("DELETE", f"/projects/{pid}/timed-jobs/{timed_job['id']}", 204)


def test_after_an_outage_one_catch_up_run_and_the_rest_missed(service, project, schedulers):
    pid = project["id"]
    schedulers()
    timed_job = waiting_timed_job(service, pid, overlap="allow", misfire_grace=3)
    wait_for(lambda: runs(service, pid, timed_job, status="launched"))
    service.stop("scheduler")
    stopped = datetime.now(UTC)
    time.sleep(8)
    # Taken before the start: the restarted scheduler's own fires come after it, and only catch-ups before.
    restarted = datetime.now(UTC)
    schedulers()
    wait_for(lambda: any(scheduled(run) > restarted for run in runs(service, pid, timed_job)))
    service.api("PATCH", f"/projects/{pid}/timed-jobs/{timed_job['id']}", 200, json={"enabled": False})
    outage = [
        run
        for run in runs(service, pid, timed_job)
        if stopped + timedelta(seconds=1) < scheduled(run) < restarted
    ]
    late = [run for run in outage if scheduled(run) < restarted - timedelta(seconds=4)]
    assert late and all(run["status"] == "missed" and "misfire grace" in run["reason"] for run in late)
    assert sum(run["status"] == "launched" for run in outage) <= 1
    every_second = sorted(scheduled(run) for run in runs(service, pid, timed_job))
    assert every_second == [every_second[0] + timedelta(seconds=n) for n in range(len(every_second))]


def test_pause_resume_and_editing_a_live_schedule_do_not_fire_at_once(service, project, schedulers):
    pid = project["id"]
    schedulers()
    timed_job = waiting_timed_job(service, pid, overlap="allow")
    path = f"/projects/{pid}/timed-jobs/{timed_job['id']}"
    wait_for(lambda: len(runs(service, pid, timed_job)) >= 2)
    service.api("PATCH", path, 200, json={"enabled": False})
    paused = datetime.now(UTC)
    time.sleep(4)
    assert all(scheduled(run) <= paused + timedelta(seconds=1) for run in runs(service, pid, timed_job))
    service.api("PATCH", path, 200, json={"enabled": True})
    resumed = datetime.now(UTC)
    wait_for(lambda: any(scheduled(run) > resumed for run in runs(service, pid, timed_job)))
    assert not runs(service, pid, timed_job, status="missed")

    service.api("PATCH", path, 200, json={"schedule": {"cron": "0 0 3 * * *"}})
    edited = datetime.now(UTC)
    time.sleep(4)
    assert all(scheduled(run) <= edited + timedelta(seconds=1) for run in runs(service, pid, timed_job))
    changed = datetime.now(UTC)
    service.api("PATCH", path, 200, json={"schedule": {"every": 2}})
    wait_for(lambda: any(scheduled(run) > changed for run in runs(service, pid, timed_job)))
    after = [run for run in runs(service, pid, timed_job) if scheduled(run) > edited + timedelta(seconds=1)]
    assert after and all(scheduled(run) >= changed + timedelta(seconds=2) for run in after)
    service.api("PATCH", path, 200, json={"enabled": False})


def test_a_one_shot_fires_once_and_disables_itself(service, project, schedulers):
    pid = project["id"]
    schedulers()
    at = whole_second(3)
    timed_job = waiting_timed_job(service, pid, schedule={"at": at.isoformat()})
    fired = wait_for(lambda: runs(service, pid, timed_job, status="launched"))
    assert [scheduled(run) for run in fired] == [at]
    shown = wait_for(
        lambda: (
            (row := service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}"))["disabled_reason"] and row
        )
    )
    assert shown["enabled"] is False and shown["next_fire_at"] is None
    disabled = service.get("/audit-events", query_string={"project_id": pid, "action": "disable"})
    assert [event["resource_id"] for event in disabled] == [str(timed_job["id"])]


def test_a_fire_claimed_by_a_scheduler_that_died_is_launched_by_another(service, project, schedulers):
    pid = project["id"]
    timed_job = waiting_timed_job(service, pid, schedule={"cron": "0 0 3 * * *"})
    claimed_at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    db.session.add(
        TimedJobRun(
            timed_job_id=timed_job["id"], scheduled_at=claimed_at, fired_at=claimed_at, status="firing"
        )
    )
    db.session.commit()
    schedulers()
    [run] = wait_for(lambda: runs(service, pid, timed_job, status="launched"))
    assert scheduled(run) == claimed_at and run["job_instance_id"]


def timed_flow(service, project: dict, *middle: dict) -> dict:
    """A flow start → middle → end, with a number and a secret variable."""
    return create_flow(
        service,
        project,
        chain(
            *middle,
            variables=[
                {"name": "size", "type": "number", "default": 1},
                {"name": "token", "type": "secret"},
            ],
        ),
    )


def flow_tasks_of(service, pid: int, timed_job: dict) -> list[dict]:
    return service.get_all(f"/projects/{pid}/flow-tasks", timed_job_id=timed_job["id"])


@pytest.mark.parametrize(
    ("target", "variables", "field", "words"),
    [
        (None, {"size": "big"}, "variables.size", "number"),
        (None, {"nope": 1}, "variables.nope", "no variable"),
        ({"flow_id": 999999}, {}, "target.flow_id", "does not exist"),
    ],
)
def test_a_flow_target_is_checked_on_save(service, project, target, variables, field, words):
    pid = project["id"]
    flow = timed_flow(service, project, sleep_node("nap", 0))
    body = {"target": target or {"flow_id": flow["id"]}, "variables": variables}
    assert_refused(service, pid, body, field, words)


def test_run_now_and_the_trigger_start_flow_tasks_once_each(service, project):
    pid = project["id"]
    flow = timed_flow(service, project, sleep_node("nap", 0))
    timed_job = make_timed_job(
        service, pid, target={"flow_id": flow["id"]}, variables={"size": 3, "token": "s3cret-value"}
    )
    assert timed_job["target"] == {"flow_id": flow["id"]} and timed_job["variables"]["token"] == "******"
    path = f"/projects/{pid}/timed-jobs/{timed_job['id']}"
    run = service.post(f"{path}/run-now", expect=202).get_json()
    assert run["status"] == "launched" and run["flow_task_id"] and run["job_instance_id"] is None
    task = wait_task(service, project, run["flow_task_id"], ended)
    assert task["status"] == "success" and task["name"] == timed_job["name"]
    assert task["timed_job_id"] == timed_job["id"] and task["launched_by"] == "admin"
    assert task["flow_version"] == 1 and task["variables"] == {"size": 3, "token": "******"}

    first = service.post(trigger_path(timed_job), {"run_key": "ci-1", "variables": {"size": 5}}, expect=202)
    again = service.post(trigger_path(timed_job), {"run_key": "ci-1", "variables": {"size": 5}}, expect=202)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert first.get_json()["flow_task_id"] == again.get_json()["flow_task_id"]
    triggered = wait_task(service, project, first.get_json()["flow_task_id"], ended)
    assert triggered["status"] == "success" and triggered["variables"]["size"] == 5
    refused = service.post(trigger_path(timed_job), {"variables": {"size": "x"}}, expect=422).get_json()
    assert refused["error"]["field"] == "variables.size"

    assert {task["id"] for task in flow_tasks_of(service, pid, timed_job)} == {task["id"], triggered["id"]}
    assert [entry["target_status"] for entry in runs(service, pid, timed_job)] == ["success", "success"]
    stats = service.get(path)["statistics"]
    assert stats["success_rate"] == 1.0 and stats["last_run"]["flow_task_id"] == triggered["id"]


def test_a_flow_task_someone_started_under_a_runs_key_is_not_taken_for_that_run(service, project):
    pid = project["id"]
    flow = timed_flow(service, project, sleep_node("nap", 0))
    timed_job = make_timed_job(service, pid, target={"flow_id": flow["id"]})
    now = datetime.now(UTC)
    run = TimedJobRun(timed_job_id=timed_job["id"], origin="run_now", scheduled_at=now, fired_at=now)
    db.session.add(run)
    db.session.commit()
    squatter = create_task(service, project, flow, idempotency_key=f"timed-run-{run.id}")
    started = timed_jobs.start(run, timed_jobs.run_as(db.session.get(TimedJob, timed_job["id"])))
    assert started.status == "failed_to_launch" and f"flow task {squatter['id']}" in started.reason
    assert flow_tasks_of(service, pid, timed_job) == []


def test_a_failed_flow_task_counts_as_a_failed_run(service, project):
    pid = project["id"]
    host = add_local_host(service, project, unique("local"))
    flow = timed_flow(service, project, script_node("fail", "exit 3", host))
    timed_job = make_timed_job(service, pid, target={"flow_id": flow["id"]})
    run = service.post(f"/projects/{pid}/timed-jobs/{timed_job['id']}/run-now", expect=202).get_json()
    assert wait_task(service, project, run["flow_task_id"], ended)["status"] == "failed"
    [shown] = runs(service, pid, timed_job)
    assert shown["target_status"] == "failed"
    stats = service.get(f"/projects/{pid}/timed-jobs/{timed_job['id']}")["statistics"]
    assert stats["consecutive_failures"] == 1 and stats["success_rate"] == 0.0
    assert [failure["id"] for failure in stats["last_failures"]] == [run["id"]]


def test_an_every_second_flow_timer_starts_tasks_that_end_in_success(service, project, schedulers):
    pid = project["id"]
    schedulers()
    flow = timed_flow(service, project, sleep_node("nap", 0))
    timed_job = make_timed_job(
        service, pid, target={"flow_id": flow["id"]}, variables={"size": 2}, schedule={"every": 1}
    )
    wait_for(lambda: len(runs(service, pid, timed_job, status="launched")) >= 3)
    service.api("PATCH", f"/projects/{pid}/timed-jobs/{timed_job['id']}", 200, json={"enabled": False})
    launched = runs(service, pid, timed_job, status="launched")
    assert all(run["flow_task_id"] and run["job_instance_id"] is None for run in launched)
    for run in launched:
        task = wait_task(service, project, run["flow_task_id"], ended)
        assert task["status"] == "success" and task["variables"] == {"size": 2}
    listed = flow_tasks_of(service, pid, timed_job)
    assert sorted(task["id"] for task in listed) == sorted(run["flow_task_id"] for run in launched)
    assert {task["name"] for task in listed} == {timed_job["name"]}
    assert all(run["target_status"] == "success" for run in runs(service, pid, timed_job, status="launched"))


def test_overlap_skip_waits_for_the_slow_flow_task_to_end(service, project, schedulers):
    pid = project["id"]
    schedulers()
    flow = timed_flow(service, project, sleep_node("nap", 3))
    timed_job = make_timed_job(
        service, pid, target={"flow_id": flow["id"]}, schedule={"every": 1}, overlap="skip"
    )
    assert_skipped_while_running(
        service,
        pid,
        timed_job,
        lambda run: wait_task(service, project, run["flow_task_id"], ended)["ended_at"],
    )
