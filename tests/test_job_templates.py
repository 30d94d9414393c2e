"""Job templates and plans: saving, checking, syncing, launching with values, step operations and
rolling batches, on hosts reached through the local connection."""

from __future__ import annotations

import io
import time
import uuid

import pytest

from tests.conftest import IMPORT_FORMS, add_hosts, add_local_host, make_member, run_script, sent_as


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def local_hosts(service, project, count: int) -> list[dict]:
    return [add_local_host(service, project, unique("local")) for _ in range(count)]


def script_step(key: str, content: str, hosts: list[dict], **extra) -> dict:
    return {
        "key": key,
        "name": key,
        "type": "script",
        "script": {"language": "bash", "content": content},
        "targets": {"hosts": [host["id"] for host in hosts]},
        "timeout": 60,
        **extra,
    }


def manual_step(key: str, **extra) -> dict:
    return {"key": key, "name": key, "type": "manual", "manual": {"message": "go?"}, **extra}


def make_template(service, pid: int, steps: list[dict], variables: list[dict] | None = None) -> dict:
    body = {"name": unique("template"), "steps": steps, "variables": variables or []}
    return service.post(f"/projects/{pid}/job-templates", body, expect=201).get_json()


def launch(service, pid: int, template: dict, expect: int = 202, **body) -> dict:
    body.setdefault("variables", {})
    return service.post(f"/projects/{pid}/job-templates/{template['id']}/launch", body, expect).get_json()


def operate(service, pid: int, job: dict, step: dict, operation: str, expect: int = 202, **body) -> dict:
    path = f"/projects/{pid}/jobs/{job['id']}/steps/{step['id']}/{operation}"
    return service.post(path, body, expect).get_json()


def test_plans_keep_their_choices_until_synced(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 1)
    variables = [
        {"name": "colour", "type": "string", "default": "blue"},
        {"name": "password", "type": "secret", "default": "hunter2-secret"},
    ]
    steps = [script_step("one", "echo one", hosts), script_step("two", "echo two", hosts)]
    template = make_template(service, pid, steps, variables)
    assert template["version"] == 1
    plan = service.post(
        f"/projects/{pid}/job-plans",
        {
            "template_id": template["id"],
            "name": unique("plan"),
            "enabled_steps": ["two"],
            "values": {"colour": "red", "password": "plan-secret-1"},
        },
        expect=201,
    ).get_json()
    assert plan["values"] == {"colour": "red", "password": "******"}
    assert "plan-secret-1" not in str(plan) and "hunter2" not in str(plan)

    changed = service.api(
        "PATCH",
        f"/projects/{pid}/job-templates/{template['id']}",
        200,
        json={"steps": [*steps, script_step("three", "echo three", hosts)]},
    ).get_json()
    assert changed["version"] == 2
    stale = service.get(f"/projects/{pid}/job-plans/{plan['id']}")
    assert stale["out_of_date"] is True and [s["key"] for s in stale["steps"]] == ["one", "two"]
    synced = service.post(f"/projects/{pid}/job-plans/{plan['id']}/sync", expect=200).get_json()
    assert synced["out_of_date"] is False
    assert synced["enabled_steps"] == ["two", "three"]
    assert synced["values"] == {"colour": "red", "password": "******"}

    job = service.post(f"/projects/{pid}/job-plans/{plan['id']}/launch", {}, expect=202).get_json()
    assert [step["template_step"] for step in job["steps"]] == ["two", "three"]
    assert job["variables"]["colour"]["value"] == "red"
    assert job["plan_id"] == plan["id"] and job["template_id"] == template["id"]
    assert service.wait_job(pid, job["id"], statuses={"success", "failed"})["status"] == "success"
    relaunch = f"/projects/{pid}/jobs/{job['id']}/relaunch"
    service.post(relaunch, {"failed_only": True}, expect=409)
    again = service.post(relaunch, {}, expect=202).get_json()
    assert (again["launch_type"], again["relaunch_of_id"], again["plan_id"]) == (
        "relaunch",
        job["id"],
        plan["id"],
    )
    assert again["variables"]["colour"]["value"] == "red"
    listed = service.get(f"/projects/{pid}/job-plans", query_string={"template_id": template["id"]})
    assert [p["id"] for p in listed] == [plan["id"]]


@pytest.mark.parametrize(
    "change, field",
    [
        (lambda s: s[0].update(targets={"variable": "nowhere"}), "steps.0.targets.variable"),
        (lambda s: s[0].update(script={"script_id": 999999}), "steps.0.script.script_id"),
        (lambda s: s[0].update(targets={"hosts": [999999]}), "steps.0.targets.hosts"),
        (lambda s: s[0].update(rolling={"expression": "1 ten%"}), "steps.0.rolling.expression"),
        (lambda s: s[0].update(rolling={"expression": "0"}), "steps.0.rolling.expression"),
        (lambda s: s[0].update(account_id=999999), "steps.0.account_id"),
        (lambda s: s[1].update(key="first"), "steps.1.key"),
        (
            lambda s: s.append(
                {
                    "name": "push",
                    "type": "file_transfer",
                    "targets": s[0]["targets"],
                    "transfer": {"sources": [{"file_id": 999999}], "target_path": "/tmp/x"},
                }
            ),
            "steps.2.transfer.sources.0.file_id",
        ),
        (lambda s: s[1].update(targets=s[0]["targets"]), "steps.1.targets"),
        (lambda s: s[0].update(manual={"message": "x"}), "steps.0.manual"),
    ],
)
def test_bad_steps_are_refused_naming_the_field(service, project, change, field):
    pid = project["id"]
    hosts = local_hosts(service, project, 1)
    steps = [script_step("first", "echo hi", hosts), manual_step("second")]
    change(steps)
    before = len(service.get(f"/projects/{pid}/job-templates"))
    body = {"name": unique("bad"), "steps": steps, "variables": [{"name": "servers", "type": "string"}]}
    error = service.post(f"/projects/{pid}/job-templates", body, expect=422).get_json()["error"]
    assert error["field"] == field, error
    assert len(service.get(f"/projects/{pid}/job-templates")) == before


@pytest.mark.parametrize(
    "values, field",
    [
        ({"nope": "x"}, "variables.nope"),
        ({"version": 3}, "variables.version"),
        ({}, "variables.version"),
        ({"version": "1", "fixed": "other"}, "variables.fixed"),
        ({"version": "1", "items": "not a list"}, "variables.items"),
        ({"version": "1", "servers": {"hosts": [999999]}}, "variables.servers.hosts"),
    ],
)
def test_launch_values_are_checked_before_anything_runs(service, project, values, field):
    pid = project["id"]
    hosts = local_hosts(service, project, 1)
    variables = [
        {"name": "version", "type": "string", "required": True},
        {"name": "fixed", "type": "string", "default": "f", "changeable": False},
        {"name": "items", "type": "array", "default": []},
        {"name": "servers", "type": "host_list", "default": {"hosts": [hosts[0]["id"]]}},
    ]
    template = make_template(service, pid, [script_step("s", "echo $version", hosts)], variables)
    before = len(service.get(f"/projects/{pid}/jobs"))
    error = launch(service, pid, template, 422, variables=values)["error"]
    assert error["field"] == field, error
    assert len(service.get(f"/projects/{pid}/jobs")) == before


def test_reserved_variable_names_are_refused(service, project):
    hosts = local_hosts(service, project, 1)
    for name in ("PATH", "OPSFLOW_JOB_ID", "hosts", "9lives"):
        body = {
            "name": unique("t"),
            "steps": [script_step("s", "true", hosts)],
            "variables": [{"name": name, "type": "string"}],
        }
        error = service.post(f"/projects/{project['id']}/job-templates", body, expect=422).get_json()["error"]
        assert error["field"] == "variables.0.name", error


def test_a_plan_of_another_project(service, project):
    other = service.post("/projects", {"name": unique("other")}, expect=201).get_json()
    hosts = local_hosts(service, other, 1)
    template = make_template(service, other["id"], [script_step("s", "true", hosts)])
    plan = service.post(
        f"/projects/{other['id']}/job-plans", {"template_id": template["id"], "name": "p"}, expect=201
    ).get_json()
    pid = project["id"]
    service.post(f"/projects/{pid}/job-plans/{plan['id']}/launch", {}, expect=404)
    error = service.post(
        f"/projects/{pid}/job-plans", {"template_id": template["id"], "name": "p"}, expect=422
    ).get_json()["error"]
    assert error["field"] == "template_id"
    service.post(f"/projects/{pid}/job-templates/{template['id']}/launch", {}, expect=404)


def test_variables_reach_scripts_as_data(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 2)
    variables = [
        {"name": "greeting", "type": "string", "default": "it's $(id) {{ lookup('pipe','id') }} `id`"},
        {"name": "password", "type": "secret", "default": "pa55-word-value"},
        {"name": "items", "type": "array", "default": ["one two", "three"]},
        {"name": "tag", "type": "namespace", "default": "unset"},
    ]
    steps = [
        script_step(
            "set",
            'echo "$greeting|$password|$items"\n'
            'echo "OPSFLOW_SET tag={{ x }} $(printf %s "$OPSFLOW_JOB_ID")"\n',
            hosts,
        ),
        script_step("read", 'echo "tag=$tag ok=$OPSFLOW_PREVIOUS_SUCCESS_HOSTS"', hosts),
    ]
    template = make_template(service, pid, steps, variables)
    job = launch(service, pid, template)
    done = service.wait_job(pid, job["id"], statuses={"success", "failed"})
    assert done["status"] == "success", done
    first, second = done["steps"]
    for result in service.host_results(pid, job["id"], step=first["id"]):
        assert result["stdout"] == "it's $(id) {{ lookup('pipe','id') }} `id`|******|one two\nthree\n" + (
            f"OPSFLOW_SET tag={{{{ x }}}} {job['id']}\n"
        )
    names = " ".join(sorted(host["name"] for host in hosts))
    for result in service.host_results(pid, job["id"], step=second["id"]):
        assert result["stdout"] == f"tag={{{{ x }}}} {job['id']} ok={names}\n"


def test_a_failed_step_stops_the_job_until_ignored(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 2)
    template = make_template(
        service,
        pid,
        [
            script_step("break", "echo broken; exit 3", hosts),
            script_step("after", "echo after", hosts),
            script_step("tolerated", "exit 4", hosts, ignore_error=True),
            script_step("last", "echo last", hosts),
        ],
    )
    job = launch(service, pid, template)
    failed = service.wait_job(pid, job["id"], statuses={"failed", "success"})
    assert failed["status"] == "failed"
    broken, after = failed["steps"][:2]
    assert [s["status"] for s in failed["steps"]] == ["failed", "waiting", "waiting", "waiting"]
    operate(service, pid, failed, after, "confirm", 409)
    operate(service, pid, failed, after, "ignore", 409)
    operate(service, pid, failed, broken, "ignore", reason="known issue")
    done = service.wait_job(pid, job["id"], statuses={"failed", "success"})
    assert [s["status"] for s in done["steps"]] == ["ignored_error", "success", "ignored_error", "success"]
    assert done["status"] == "success"
    assert [(op["action"], op["reason"]) for op in done["operations"]] == [("ignore", "known issue")]


def test_skip_terminate_and_reject(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 1)
    steps = [
        manual_step("gate"),
        script_step("run", "echo run", hosts),
        script_step("more", "echo more", hosts),
    ]
    template = make_template(service, pid, steps)

    job = launch(service, pid, template)
    waiting = service.wait_job(pid, job["id"], statuses={"waiting_user"})
    gate, run = waiting["steps"][:2]
    operate(service, pid, waiting, run, "retry", 409)
    operate(service, pid, waiting, run, "skip", reason="not today")
    operate(service, pid, waiting, gate, "confirm")
    done = service.wait_job(pid, job["id"], statuses={"success", "failed"})
    assert [s["status"] for s in done["steps"]] == ["success", "skipped", "success"]
    assert done["steps"][1]["counts"]["skipped"] == 1
    operate(service, pid, done, gate, "confirm", 409)

    job = launch(service, pid, template)
    waiting = service.wait_job(pid, job["id"], statuses={"waiting_user"})
    operate(service, pid, waiting, waiting["steps"][0], "reject", reason="not approved")
    rejected = service.get(f"/projects/{pid}/jobs/{job['id']}")
    assert rejected["status"] == "terminated"
    assert [s["status"] for s in rejected["steps"]] == ["terminated"] * 3
    assert [op["action"] for op in rejected["operations"]] == ["reject", "terminate"]

    job = launch(service, pid, template)
    waiting = service.wait_job(pid, job["id"], statuses={"waiting_user"})
    service.post(f"/projects/{pid}/jobs/{job['id']}/cancel", expect=202)
    assert service.get(f"/projects/{pid}/jobs/{job['id']}")["status"] == "terminated"
    operate(service, pid, waiting, waiting["steps"][0], "confirm", 409)


def test_rolling_batches_wait_for_confirmation(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 5)
    rolling = {"expression": "1 50%", "mode": "confirm"}
    template = make_template(service, pid, [script_step("roll", "echo rolled", hosts, rolling=rolling)])
    job = launch(service, pid, template)
    for batch in (1, 2):
        waiting = service.wait_job(pid, job["id"], statuses={"waiting_user", "failed"})
        assert waiting["status"] == "waiting_user", waiting
        [step] = waiting["steps"]
        assert [b["size"] for b in step["batches"]] == [1, 3, 1]
        assert [b["status"] for b in step["batches"]][:batch] == ["success"] * batch
        assert step["counts"]["success"] == [1, 4][batch - 1]
        operate(service, pid, waiting, step, "confirm")
    done = service.wait_job(pid, job["id"], statuses={"success", "failed"})
    assert done["status"] == "success"
    assert [b["status"] for b in done["steps"][0]["batches"]] == ["success"] * 3


def test_rolling_pauses_on_a_failed_batch_and_retries_it(service, project, account, lab, tmp_path):
    pid = project["id"]
    # SSH hosts: a local host's script runs in a sandbox of its own, which never sees the test's files.
    hosts = add_hosts(service, project, lab, 4)
    flag, first = tmp_path / "flag", tmp_path / "first-done"
    flag.touch()
    content = f"if [ -e '{flag}' ] && [ -e '{first}' ]; then exit 3; fi; touch '{first}'"
    step = script_step("roll", content, hosts, rolling={"expression": "1 2", "mode": "pause"})
    steps = [{**step, "account_id": account["id"]}]
    template = make_template(service, pid, steps)
    job = launch(service, pid, template)
    paused = service.wait_job(pid, job["id"], statuses={"failed", "success"})
    [step] = paused["steps"]
    assert paused["status"] == "failed"
    assert [b["status"] for b in step["batches"]] == ["success", "failed", "waiting"]
    assert step["counts"]["failed"] == 2 and step["counts"]["waiting"] == 1
    flag.unlink()
    operate(service, pid, paused, step, "retry", failed_only=True)
    done = service.wait_job(pid, job["id"], statuses={"failed", "success"})
    assert done["status"] == "success", done
    assert done["steps"][0]["counts"]["success"] == 4


def test_every_retry_adds_an_attempt_and_keeps_the_earlier_ones(service, project, lab, account, tmp_path):
    pid = project["id"]
    # Lab hosts over SSH share the test's files; a local host's run is sandboxed and would not.
    hosts = add_hosts(service, project, lab, 2)
    lock = tmp_path / "lock"
    # Of the hosts running at once, the one that makes the lock succeeds; the others fail.
    content = f"if mkdir '{lock}' 2>/dev/null; then echo won; else echo lost; exit 3; fi"
    job = run_script(service, project, hosts, content, account_id=account["id"])
    failed = service.wait_job(pid, job["id"])
    [step] = failed["steps"]
    first = {r["host_id"]: r for r in service.host_results(pid, job["id"])}
    assert sorted((r["attempt"], r["status"], r["stdout"]) for r in first.values()) == [
        (1, "failed", "lost\n"),
        (1, "success", "won\n"),
    ]
    winner = next(host for host, r in first.items() if r["status"] == "success")

    operate(service, pid, failed, step, "retry", failed_only=False)
    both_failed = service.wait_job(pid, job["id"])
    assert both_failed["steps"][0]["counts"]["failed"] == 2
    lock.rmdir()
    operate(service, pid, both_failed, step, "retry", failed_only=True)
    done = service.wait_job(pid, job["id"])
    assert done["steps"][0]["counts"]["success"] == 1 and done["steps"][0]["counts"]["failed"] == 1
    assert [piece["index"] for piece in done["steps"][0]["slices"]] == [0, 1, 2]

    latest = service.host_results(pid, job["id"])
    assert sorted((r["attempt"], r["latest"], r["status"]) for r in latest) == [
        (3, True, "failed"),
        (3, True, "success"),
    ]
    second = service.host_results(pid, job["id"], attempt=2)
    assert [(r["status"], r["stdout"], r["latest"]) for r in second] == [("failed", "lost\n", False)] * 2
    assert {r["host_id"]: r["stdout"] for r in service.host_results(pid, job["id"], attempt=1)} == {
        host: r["stdout"] for host, r in first.items()
    }
    assert service.host_results(pid, job["id"], attempt=4) == []
    groups = service.get(f"/projects/{pid}/jobs/{job['id']}/steps/{step['id']}/output-groups")
    assert sum(group["count"] for group in groups) == 2

    log_path = f"/projects/{pid}/jobs/{job['id']}/host-results/{winner}/log"
    assert "won" in service.api("GET", log_path, 200, query_string={"attempt": 1}).get_data(as_text=True)
    assert "· attempt 2" in service.api("GET", log_path, 200, query_string={"attempt": 2}).get_data(
        as_text=True
    )
    assert "· attempt 3" in service.api("GET", log_path, 200).get_data(as_text=True)
    missing = service.api("GET", log_path, 404, query_string={"attempt": 4}).get_json()["error"]
    assert "attempt 4" in missing["message"]
    for bad in ("0", "-1", "two"):
        for path in (f"/projects/{pid}/jobs/{job['id']}/host-results", log_path):
            error = service.api("GET", path, 422, query_string={"attempt": bad}).get_json()["error"]
            assert error["field"] == "attempt", error


def test_script_executions_are_idempotent_by_key(service, project):
    hosts = local_hosts(service, project, 1)
    body = {
        "script": {"content": "echo once"},
        "targets": {"hosts": [hosts[0]["id"]]},
        "idempotency_key": unique("key"),
    }
    path = f"/projects/{project['id']}/script-executions"
    first = service.post(path, body, expect=202).get_json()
    second = service.post(path, body, expect=202).get_json()
    assert first["id"] == second["id"]
    other = service.post(path, {**body, "idempotency_key": unique("key")}, expect=202).get_json()
    assert other["id"] != first["id"]
    service.post(path, body, expect=422, headers={"Idempotency-Key": "different"})


PLAYBOOK = """\
- hosts: web
  gather_facts: false
  tasks:
    - name: greet
      command: echo "{{ greeting }} {{ release }} {{ build }}"
      tags: [greet]
    - name: rescued
      block:
        - command: /bin/false
      rescue:
        - debug:
            msg: rescued
    - name: untagged
      command: echo untagged
"""


def test_a_playbook_step_runs_unchanged_with_variables_as_data(service, project):
    pid = project["id"]
    web = local_hosts(service, project, 2)
    idle = local_hosts(service, project, 1)
    group = service.post(
        f"/projects/{pid}/groups",
        {"name": unique("web").replace("-", "_"), "hosts": [h["id"] for h in web]},
        201,
    ).get_json()
    content = PLAYBOOK.replace("hosts: web", f"hosts: {group['name']}")
    variables = [
        {"name": "greeting", "type": "string", "default": "{{ lookup('pipe', 'id') }}"},
        {"name": "build", "type": "namespace", "default": "b0"},
    ]
    step = {
        "key": "play",
        "name": "play",
        "type": "playbook",
        "playbook": {"content": content, "extra_vars": {"release": "r1"}},
        "targets": {"hosts": [host["id"] for host in [*web, *idle]]},
        "timeout": 60,
    }
    template = make_template(service, pid, [step], variables)
    job = launch(service, pid, template)
    done = service.wait_job(pid, job["id"], statuses={"success", "failed"})
    assert done["status"] == "success", service.host_results(pid, job["id"])
    results = {r["host_name"]: r for r in service.host_results(pid, job["id"])}
    for host in web:
        assert results[host["name"]]["status"] == "success"
    assert results[idle[0]["name"]]["status"] == "skipped"
    log = service.api("GET", f"/projects/{pid}/jobs/{job['id']}/host-results/{web[0]['id']}/log", 200)
    assert "{{ lookup('pipe', 'id') }} r1 b0" in log.get_data(as_text=True)
    assert "uid=" not in log.get_data(as_text=True)

    tagged = {**step, "playbook": {**step["playbook"], "tags": ["greet"], "limit": web[0]["name"]}}
    service.api("PATCH", f"/projects/{pid}/job-templates/{template['id']}", 200, json={"steps": [tagged]})
    job = launch(service, pid, template)
    done = service.wait_job(pid, job["id"], statuses={"success", "failed"})
    statuses = {r["host_name"]: r["status"] for r in service.host_results(pid, job["id"])}
    assert statuses == {web[0]["name"]: "success", web[1]["name"]: "skipped", idle[0]["name"]: "skipped"}


def test_playbook_steps_need_a_project_admin_and_valid_yaml(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 1)
    step = {
        "name": "play",
        "type": "playbook",
        "playbook": {"content": "- hosts: all\n  tasks: [\n"},
        "targets": {"hosts": [hosts[0]["id"]]},
    }
    body = {"name": unique("t"), "steps": [step]}
    error = service.post(f"/projects/{pid}/job-templates", body, 422).get_json()["error"]
    assert error["field"] == "steps.0.playbook.content" and "line" in error["message"]
    step["playbook"]["content"] = "- hosts: all\n  tasks: []\n"
    operator = make_member(service, pid, "operator")
    service.post(f"/projects/{pid}/job-templates", body, 403, token=operator)
    service.post(f"/projects/{pid}/job-templates", body, 201)


def include_step(key: str, template: dict) -> dict:
    return {"key": key, "name": key, "type": "template", "template": {"template_id": template["id"]}}


def test_included_templates_run_in_place_and_cannot_include_themselves(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 1)
    inner = make_template(
        service,
        pid,
        [script_step("hello", 'echo "inner $who"', hosts)],
        [{"name": "who", "type": "string", "default": "inner-default"}],
    )
    outer = make_template(
        service, pid, [script_step("first", "echo outer", hosts), include_step("inc", inner)]
    )
    job = launch(service, pid, outer, variables={"who": "given"})
    done = service.wait_job(pid, job["id"], statuses={"success", "failed"})
    assert [s["template_step"] for s in done["steps"]] == ["first", "inc.hello"]
    assert done["steps"][1]["name"] == "inc: hello"
    [result] = service.host_results(pid, job["id"], step=done["steps"][1]["id"])
    assert result["stdout"] == "inner given\n"

    plan = service.post(
        f"/projects/{pid}/job-plans", {"template_id": outer["id"], "name": unique("plan")}, 201
    ).get_json()
    assert plan["enabled_steps"] == ["first", "inc.hello"]
    service.api(
        "PATCH",
        f"/projects/{pid}/job-templates/{inner['id']}",
        200,
        json={"steps": [script_step("hello", "echo changed", hosts)]},
    )
    assert service.get(f"/projects/{pid}/job-plans/{plan['id']}")["out_of_date"] is True
    assert (
        service.post(f"/projects/{pid}/job-plans/{plan['id']}/sync", expect=200).get_json()["out_of_date"]
        is False
    )

    error = service.api(
        "PATCH",
        f"/projects/{pid}/job-templates/{inner['id']}",
        422,
        json={"steps": [script_step("hello", "echo x", hosts), include_step("back", outer)]},
    ).get_json()["error"]
    assert error["field"] == "steps.1.template.template_id" and "cycle" in error["message"], error
    own = service.api(
        "PATCH",
        f"/projects/{pid}/job-templates/{inner['id']}",
        422,
        json={"steps": [include_step("me", inner)]},
    ).get_json()["error"]
    assert own["field"] == "steps.0.template.template_id"


def test_export_imports_into_another_project(service, project):
    pid = project["id"]
    host = add_local_host(service, project, "web-1")
    service.post(f"/projects/{pid}/groups", {"name": "web", "hosts": [host["id"]]}, 201)
    script = service.post(f"/projects/{pid}/scripts", {"name": "greet", "language": "bash"}, 201).get_json()
    version = service.post(
        f"/projects/{pid}/scripts/{script['id']}/versions",
        {"version": "1", "content": "echo greet $who"},
        201,
    ).get_json()
    service.post(f"/projects/{pid}/scripts/{script['id']}/versions/{version['id']}/publish", expect=200)
    group_id = service.get(f"/projects/{pid}/groups")[0]["id"]
    inner = make_template(
        service,
        pid,
        [
            {
                "key": "pinned",
                "name": "pinned",
                "type": "script",
                "script": {"version_id": version["id"]},
                "targets": {"groups": [group_id]},
            }
        ],
        [
            {"name": "who", "type": "string", "default": "world"},
            {"name": "key", "type": "secret", "default": "k-1"},
        ],
    )
    outer = make_template(
        service,
        pid,
        [
            {
                "key": "online",
                "name": "online",
                "type": "script",
                "script": {"script_id": script["id"]},
                "targets": {"variable": "servers"},
            },
            include_step("inc", inner),
        ],
        [{"name": "servers", "type": "host_list", "default": {"hosts": [host["id"]]}}],
    )
    service.post(
        f"/projects/{pid}/job-plans",
        {"template_id": outer["id"], "name": "nightly", "values": {"who": "plan"}},
        201,
    )
    exported = service.api("GET", f"/projects/{pid}/job-templates/{outer['id']}/export", 200)
    assert "attachment" in exported.headers["Content-Disposition"]
    document = exported.get_json()
    assert [t["name"] for t in document["templates"]] == [inner["name"], outer["name"]]
    assert document["templates"][1]["steps"][0]["script"] == {"script_id": "greet", "params": []}
    assert document["templates"][0]["steps"][0]["script"]["version_id"] == {"script": "greet", "version": "1"}
    assert "k-1" not in str(document)
    as_yaml = service.api(
        "GET", f"/projects/{pid}/job-templates/{outer['id']}/export", 200, query_string={"format": "yaml"}
    )
    assert as_yaml.mimetype == "application/yaml"

    other = service.post("/projects", {"name": unique("other")}, 201).get_json()
    oid = other["id"]
    missing = service.post(f"/projects/{oid}/job-templates/import", document, 422).get_json()["error"]
    assert missing["field"] == "templates.0.steps.0.targets.groups.0", missing
    assert service.get(f"/projects/{oid}/job-templates") == []

    moved = add_local_host(service, other, "web-1")
    service.post(f"/projects/{oid}/groups", {"name": "web", "hosts": [moved["id"]]}, 201)
    copy = service.post(f"/projects/{oid}/scripts", {"name": "greet", "language": "bash"}, 201).get_json()
    copy_version = service.post(
        f"/projects/{oid}/scripts/{copy['id']}/versions", {"version": "1", "content": "echo hi $who"}, 201
    ).get_json()
    service.post(f"/projects/{oid}/scripts/{copy['id']}/versions/{copy_version['id']}/publish", expect=200)
    imported = service.api(
        "POST",
        f"/projects/{oid}/job-templates/import",
        201,
        data=as_yaml.get_data(),
        headers={"Content-Type": "application/yaml"},
    ).get_json()
    assert [t["name"] for t in imported["templates"]] == [inner["name"], outer["name"]]
    [plan] = imported["plans"]
    assert plan["values"] == {"who": "plan"} and plan["name"] == "nightly"
    new_outer = imported["templates"][1]
    assert new_outer["variables"][0]["default"] == {"hosts": [moved["id"]]}
    job = service.post(f"/projects/{oid}/job-plans/{plan['id']}/launch", {}, 202).get_json()
    done = service.wait_job(oid, job["id"], statuses={"success", "failed"})
    assert done["status"] == "success", done
    assert {r["stdout"] for r in service.host_results(oid, job["id"])} == {"hi plan\n"}
    again = service.post(f"/projects/{oid}/job-templates/import", document, 409).get_json()["error"]
    assert again["field"] == "templates.0.name"


def test_a_cycle_of_template_imports_is_refused(service, project):
    steps_of = {
        "a": [{"name": "to b", "type": "template", "template": {"template_id": "b"}}],
        "b": [{"name": "to a", "type": "template", "template": {"template_id": "a"}}],
    }
    document = {
        "format": "opsflow-job-templates/1",
        "templates": [{"name": name, "steps": steps} for name, steps in steps_of.items()],
    }
    error = service.post(f"/projects/{project['id']}/job-templates/import", document, 422).get_json()["error"]
    assert "cycle" in error["message"] and error["field"] == "templates.0.steps.0.template.template_id", error
    assert service.get(f"/projects/{project['id']}/job-templates") == []
    bad = service.api(
        "POST",
        f"/projects/{project['id']}/job-templates/import",
        422,
        data="format: [unclosed",
        headers={"Content-Type": "application/yaml"},
    ).get_json()["error"]
    assert bad["field"] == "document"


def test_a_running_step_is_neither_retried_nor_skipped(service, project):
    pid = project["id"]
    hosts = local_hosts(service, project, 1)
    template = make_template(service, pid, [script_step("slow", "sleep 4; echo done", hosts)])
    job = launch(service, pid, template)
    running = service.wait_job(pid, job["id"], statuses={"running"})
    step = running["steps"][0]
    deadline = time.monotonic() + 30
    while step["status"] != "running":
        assert time.monotonic() < deadline
        step = service.get(f"/projects/{pid}/jobs/{job['id']}")["steps"][0]
    retried = operate(service, pid, running, step, "retry", 409)["error"]
    assert "only a step that failed can be retried" in retried["message"]
    operate(service, pid, running, step, "skip", 409)
    operate(service, pid, running, step, "ignore", 409)
    assert service.wait_job(pid, job["id"], statuses={"success", "failed"})["status"] == "success"


@pytest.mark.parametrize(
    "document, field",
    [
        ({"format": "something-else", "templates": []}, "format"),
        ({"format": "opsflow-job-templates/1", "templates": []}, "templates"),
        ({"format": "opsflow-job-templates/1", "templates": [{"steps": []}]}, "templates.0.name"),
        (
            {
                "format": "opsflow-job-templates/1",
                "templates": [
                    {
                        "name": "x",
                        "steps": [{"name": "s", "type": "template", "template": {"template_id": {}}}],
                    }
                ],
            },
            "templates.0.steps.0.template.template_id",
        ),
        (
            {
                "format": "opsflow-job-templates/1",
                "templates": [{"name": "x", "steps": [{"name": "m", "type": "manual"}]}],
                "plans": [{"template": "nowhere", "name": "p"}],
            },
            "plans.0.template",
        ),
        ([1, 2], "format"),
    ],
)
def test_bad_documents_are_refused_naming_the_field(service, project, document, field):
    error = service.post(f"/projects/{project['id']}/job-templates/import", document, 422).get_json()["error"]
    assert error["field"] == field, error
    assert service.get(f"/projects/{project['id']}/job-templates") == []


def manual_document(name: str) -> dict:
    return {
        "format": "opsflow-job-templates/1",
        "templates": [{"name": name, "steps": [{"name": "ok?", "type": "manual"}]}],
    }


@pytest.mark.parametrize("form", IMPORT_FORMS)
def test_a_template_imports_in_every_form_an_inventory_does(service, project, form):
    pid = project["id"]
    name = unique("imported")
    document = manual_document(name)
    sent = sent_as(form, document)
    imported = service.api("POST", f"/projects/{pid}/job-templates/import", 201, **sent).get_json()
    assert [t["name"] for t in imported["templates"]] == [name]
    assert [t["name"] for t in service.get(f"/projects/{pid}/job-templates")] == [name]


@pytest.mark.parametrize(
    "sent, field",
    [
        ({"json": {"format": "xml", "content": "x: 1"}}, "format"),
        ({"json": {"content": 5}}, "content"),
        ({"data": {"file": (b"x: 1", "a.yaml"), "content": "x: 1"}}, "content"),
        ({"data": {"file": (b"\xff\xfe", "a.yaml")}}, "file"),
        ({"json": {"format": "yaml", "content": "format: [unclosed"}}, "document"),
    ],
)
def test_a_bad_import_form_is_refused_naming_the_field(service, project, sent, field):
    if "data" in sent:
        raw, filename = sent["data"]["file"]
        sent = {
            "data": {**sent["data"], "file": (io.BytesIO(raw), filename)},
            "content_type": "multipart/form-data",
        }
    error = service.api("POST", f"/projects/{project['id']}/job-templates/import", 422, **sent).get_json()[
        "error"
    ]
    assert error["field"] == field, error


def test_an_import_reports_every_missing_reference_at_once(service, project):
    document = {
        "format": "opsflow-job-templates/1",
        "templates": [
            {
                "name": unique("inner"),
                "steps": [
                    {
                        "name": "a",
                        "type": "script",
                        "script": {"script_id": "nowhere"},
                        "targets": {"hosts": ["h1"]},
                    },
                ],
            },
            {
                "name": unique("outer"),
                "variables": [{"name": "servers", "type": "host_list", "default": {"groups": ["web"]}}],
                "steps": [
                    {"name": "b", "type": "template", "template": {"template_id": "missing"}},
                    {"name": "c", "type": "manual", "account_id": "deploy"},
                ],
            },
        ],
    }
    document["templates"][1]["steps"].append(
        {"name": "d", "type": "template", "template": {"template_id": document["templates"][0]["name"]}}
    )
    error = service.post(f"/projects/{project['id']}/job-templates/import", document, 422).get_json()["error"]
    assert {problem["path"] for problem in error["details"]["errors"]} == {
        "templates.0.steps.0.script.script_id",
        "templates.0.steps.0.targets.hosts.0",
        "templates.1.variables.0.default.groups.0",
        "templates.1.steps.0.template.template_id",
        "templates.1.steps.1.account_id",
    }, error
    assert error["message"].startswith("5 references find nothing in this project"), error
    assert error["field"] == error["details"]["errors"][0]["path"] == "templates.0.steps.0.targets.hosts.0"
    assert service.get(f"/projects/{project['id']}/job-templates") == []
