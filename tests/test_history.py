"""Execution history: filters, relaunch, results grouped by output, log downloads."""

from __future__ import annotations

import io
import json
import tarfile
import uuid
from datetime import UTC, datetime, timedelta

from app.extensions import db
from app.models import JobInstance
from tests.conftest import add_hosts, add_local_host, basic_auth, run_script

PASSWORD = "history-Password-2026"

# Every host prints the same line, except the one at SPECIAL, which prints another and fails.
SPLIT_SCRIPT = 'set -- $SSH_CONNECTION; if [ "$3" = "{special}" ]; then echo other; exit 3; fi; echo same'


def history(service, project, expect=200, **filters) -> list[dict]:
    return service.get(f"/projects/{project['id']}/jobs", expect, query_string=filters)


def test_filters_narrow_the_history(service, project):
    local = add_local_host(service, project)
    pid = project["id"]
    username = f"op{uuid.uuid4().hex[:8]}"
    user = service.post("/users", {"username": username, "password": PASSWORD}, expect=201).get_json()
    service.post(f"/projects/{pid}/members", {"user_id": user["id"], "role": "operator"}, expect=201)
    token = service.post(
        "/users/me/tokens", {"name": "t"}, headers=basic_auth(username, PASSWORD), token=None
    )
    token = token.get_json()["token"]

    before = datetime.now(UTC) - timedelta(seconds=1)
    ok = run_script(service, project, [local], "echo fine", name="Nightly backup")
    bad = run_script(service, project, [local], "exit 4", name="deploy 100%_done")
    body = {"script": {"content": "echo mine"}, "targets": {"hosts": [local["id"]]}, "name": "theirs"}
    theirs = service.post(f"/projects/{pid}/script-executions", body, 202, token=token).get_json()
    for job in (ok, bad, theirs):
        service.wait_job(pid, job["id"])

    def ids(**filters) -> list[int]:
        return [job["id"] for job in history(service, project, **filters)]

    assert ids() == [theirs["id"], bad["id"], ok["id"]]
    assert ids(status="failed") == [bad["id"]]
    assert ids(status=["failed", "success"]) == [theirs["id"], bad["id"], ok["id"]]
    assert ids(launched_by=username) == [theirs["id"]]
    assert ids(name="BACKUP") == [ok["id"]]
    # LIKE wildcards in the filter are taken literally.
    assert ids(name="100%_") == [bad["id"]]
    assert ids(name="%") == [bad["id"]]
    assert ids(host=local["name"]) == [theirs["id"], bad["id"], ok["id"]]
    assert ids(host="127.0.0.1") == [theirs["id"], bad["id"], ok["id"]]
    assert ids(host="elsewhere") == []
    assert ids(launch_type="api") == [theirs["id"], bad["id"], ok["id"]]
    assert ids(launch_type="relaunch") == []
    assert ids(created_after=before.isoformat()) == [theirs["id"], bad["id"], ok["id"]]
    assert ids(created_before=before.isoformat()) == []
    assert ids(created_after=before.isoformat(), status="success", name="nightly") == [ok["id"]]

    response = service.api("GET", f"/projects/{pid}/jobs", 200, query_string={"page_size": 2})
    assert len(response.get_json()) == 2
    assert json.loads(response.headers["X-Pagination"])["total"] == 3
    assert history(service, project)[0]["launch_type"] == "api"


def test_bad_filters_are_refused_by_name(service, project):
    for filters, field in (
        ({"colour": "red"}, "colour"),
        ({"status": "sleeping"}, "status"),
        ({"launch_type": "cron"}, "launch_type"),
        ({"created_after": "yesterday"}, "created_after"),
        (
            {"created_after": "2026-11-21T10:00:00Z", "created_before": "2026-11-20T10:00:00Z"},
            "created_before",
        ),
    ):
        error = history(service, project, 422, **filters)["error"]
        assert error["field"].startswith(field), (filters, error)
    job = run_script(service, project, [add_local_host(service, project)], "true")
    path = f"/projects/{project['id']}/jobs/{job['id']}/host-results"
    assert service.get(path, 422, query_string={"stauts": "failed"})["error"]["field"] == "stauts"
    # The inventory lists refuse a name they do not know too, and page as before.
    for path in ("hosts", "groups", "accounts"):
        error = service.get(f"/projects/{project['id']}/{path}", 422, query_string={"colour": "red"})["error"]
        assert error["field"] == "colour", path
        service.get(f"/projects/{project['id']}/{path}", query_string={"page": 1, "page_size": 5})


def test_relaunch_all_hosts_or_only_the_failed(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 3, first=40)
    pid = project["id"]
    script = SPLIT_SCRIPT.format(special=lab.address(41))
    first = run_script(service, project, hosts, script, account_id=account["id"], name="split", timeout=60)
    assert service.wait_job(pid, first["id"])["counts"]["failed"] == 1

    again = service.post(f"/projects/{pid}/jobs/{first['id']}/relaunch", {}, expect=202).get_json()
    assert (again["launch_type"], again["relaunch_of_id"], again["name"]) == (
        "relaunch",
        first["id"],
        "split",
    )
    assert again["host_count"] == 3
    assert again["steps"][0]["spec"]["timeout"] == 60
    done = service.wait_job(pid, again["id"])
    assert (done["counts"]["success"], done["counts"]["failed"]) == (2, 1)

    failed = service.post(f"/projects/{pid}/jobs/{first['id']}/relaunch", {"failed_only": True}, expect=202)
    failed = failed.get_json()
    results = service.host_results(pid, failed["id"])
    assert [r["host_name"] for r in results] == [hosts[1]["name"]]
    assert results[0]["stdout"] in ("", "other\n")
    assert service.wait_job(pid, failed["id"])["status"] == "failed"
    assert [job["id"] for job in history(service, project, launch_type="relaunch")] == [
        failed["id"],
        again["id"],
    ]


def test_relaunch_keeps_sensitive_params_secret(service, project):
    local = add_local_host(service, project)
    pid = project["id"]
    job = run_script(
        service, project, [local], 'echo "length ${#1}"', params=["s3cret-value"], sensitive=True
    )
    service.wait_job(pid, job["id"])
    assert "s3cret-value" not in json.dumps(db.session.get(JobInstance, job["id"]).request)
    again = service.post(f"/projects/{pid}/jobs/{job['id']}/relaunch", {}, expect=202).get_json()
    assert "s3cret-value" not in json.dumps(again)
    assert service.wait_job(pid, again["id"])["status"] == "success"
    assert service.host_results(pid, again["id"])[0]["stdout"] == "length 12\n"


def test_relaunch_refusals(service, project):
    local = add_local_host(service, project)
    pid = project["id"]
    running = run_script(service, project, [local], "sleep 30")
    error = service.post(f"/projects/{pid}/jobs/{running['id']}/relaunch", {}, expect=409).get_json()["error"]
    assert error["field"] == "status" and str(running["id"]) in error["message"]
    service.post(f"/projects/{pid}/jobs/{running['id']}/cancel", expect=202)
    service.wait_job(pid, running["id"])

    fine = run_script(service, project, [local], "true")
    service.wait_job(pid, fine["id"])
    before = len(history(service, project))
    body = {"failed_only": True}
    error = service.post(f"/projects/{pid}/jobs/{fine['id']}/relaunch", body, expect=409).get_json()["error"]
    assert error["field"] == "failed_only"
    error = service.post(f"/projects/{pid}/jobs/{fine['id']}/relaunch", {"failed_only": "maybe"}, expect=422)
    assert error.get_json()["error"]["field"] == "failed_only"
    service.post(f"/projects/{pid}/jobs/999999/relaunch", {}, expect=404)
    assert len(history(service, project)) == before


def test_results_grouped_by_identical_output(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 5, first=50)
    pid = project["id"]
    script = SPLIT_SCRIPT.format(special=lab.address(52))
    job = run_script(service, project, hosts, script, account_id=account["id"])
    done = service.wait_job(pid, job["id"])
    step = done["steps"][0]["id"]

    groups = service.get(f"/projects/{pid}/jobs/{job['id']}/steps/{step}/output-groups")
    assert [(g["status"], g["exit_code"], g["stdout"], g["count"]) for g in groups] == [
        ("success", 0, "same\n", 4),
        ("failed", 3, "other\n", 1),
    ]
    assert groups[0]["hosts"] == [h["name"] for h in hosts if h["address"] != lab.address(52)]
    assert groups[1]["hosts"] == [hosts[2]["name"]]

    members = service.host_results(pid, job["id"], output_digest=groups[0]["output_digest"])
    assert sorted(r["host_name"] for r in members) == sorted(groups[0]["hosts"])
    assert len(service.host_results(pid, job["id"], exit_code=3)) == 1

    response = service.api(
        "GET",
        f"/projects/{pid}/jobs/{job['id']}/steps/{step}/output-groups",
        200,
        query_string={"page_size": 1},
    )
    assert json.loads(response.headers["X-Pagination"])["total"] == 2
    assert len(response.get_json()) == 1
    service.get(f"/projects/{pid}/jobs/{job['id']}/steps/999999/output-groups", 404)


def test_logs_download_one_host_or_a_whole_step(service, project, account, lab):
    hosts = add_hosts(service, project, lab, 3, first=60)
    pid = project["id"]
    job = run_script(
        service, project, hosts, 'echo "line for $1"; echo oops >&2', params=["x y"], account_id=account["id"]
    )
    done = service.wait_job(pid, job["id"])
    step = done["steps"][0]["id"]

    response = service.api("GET", f"/projects/{pid}/jobs/{job['id']}/host-results/{hosts[0]['id']}/log", 200)
    assert "attachment" in response.headers["Content-Disposition"]
    assert "line for x y" in response.get_data(as_text=True)

    response = service.api("GET", f"/projects/{pid}/jobs/{job['id']}/steps/{step}/logs", 200)
    assert response.mimetype == "application/gzip"
    assert f"job-{job['id']}-step-{step}-logs.tar.gz" in response.headers["Content-Disposition"]
    with tarfile.open(fileobj=io.BytesIO(response.get_data()), mode="r:gz") as archive:
        names = archive.getnames()
        assert names == [f"{h['name']}.log" for h in hosts]
        text = archive.extractfile(names[1]).read().decode()
    assert hosts[1]["name"] in text and "line for x y" in text and "oops" in text
    service.get(f"/projects/{pid}/jobs/{job['id']}/steps/999999/logs", 404)
