"""Per-task results of playbook runs: every task of every host, as it ran, over real SSH to loopback hosts."""

from __future__ import annotations

import uuid

from tests.conftest import add_hosts
from tests.test_job_templates import launch, make_template, operate

SECRET = "s3cret-" + uuid.uuid4().hex[:8]

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    # A stored playbook is one file: the role it uses is written beside it, on the controller, first.
    - name: role directory
      run_once: true
      delegate_to: localhost
      file:
        path: "{{ playbook_dir }}/roles/greeter/tasks"
        state: directory
    - name: role tasks
      run_once: true
      delegate_to: localhost
      copy:
        dest: "{{ playbook_dir }}/roles/greeter/tasks/main.yml"
        content: |
          - name: greet
            command: echo hello from the role
    - name: say ok
      debug:
        msg: all good
    - name: change something
      command: echo changed
    - name: skip me
      command: echo never
      when: false
    - name: fail but ignore
      command: /bin/false
      ignore_errors: true
    - block:
        - name: fail and be rescued
          command: /bin/false
      rescue:
        - name: rescue
          debug:
            msg: rescued
    - name: use the role
      include_role:
        name: greeter
    - name: write a file
      diff: true
      copy:
        dest: "/tmp/opsflow-tasks-MARK-{{ inventory_hostname }}"
        content: "new content\\n"
    - name: show the token
      command: echo "token={{ token }}"
    - name: hidden
      no_log: true
      diff: true
      copy:
        dest: "/tmp/opsflow-tasks-MARK-{{ inventory_hostname }}.secret"
        content: "{{ token }}\\n"
    - name: ready?
      command: test -e /tmp/opsflow-tasks-MARK-ready
"""


def tasks_of(service, pid: int, job_id: int, host_id: int, expect: int = 200, **filters) -> list[dict]:
    path = f"/projects/{pid}/jobs/{job_id}/host-results/{host_id}/tasks"
    if expect != 200:
        return service.get(path, expect=expect, query_string=filters)
    return service.get_all(path, **filters)


def test_a_playbook_step_shows_every_task_of_every_host(service, project, account, lab):
    pid = project["id"]
    mark = uuid.uuid4().hex[:10]
    hosts = add_hosts(service, project, lab, 2, first=300)
    step = {
        "key": "play",
        "name": "play",
        "type": "playbook",
        "playbook": {"content": PLAYBOOK.replace("MARK", mark)},
        "targets": {"hosts": [host["id"] for host in hosts]},
        "account_id": account["id"],
        "timeout": 120,
    }
    template = make_template(service, pid, [step], [{"name": "token", "type": "secret", "default": SECRET}])
    job = launch(service, pid, template)
    done = service.wait_job(pid, job["id"])
    # Nothing made the hosts ready: the last task fails on both.
    assert done["status"] == "failed", service.host_results(pid, job["id"])
    first, second = hosts
    tasks = tasks_of(service, pid, job["id"], first["id"])
    names = [task["name"] for task in tasks]
    assert [task["seq"] for task in tasks] == list(range(1, len(tasks) + 1))
    by_name = {task["name"]: task for task in tasks}
    # The run_once tasks ran on the first host only, and show there.
    assert names[:2] == ["role directory", "role tasks"]
    assert names[2:] == [
        "say ok",
        "change something",
        "skip me",
        "fail but ignore",
        "fail and be rescued",
        "rescue",
        "use the role",
        "greet",
        "write a file",
        "show the token",
        "hidden",
        "ready?",
    ]
    assert [task["name"] for task in tasks_of(service, pid, job["id"], second["id"])] == names[2:]
    statuses = {name: task["status"] for name, task in by_name.items()}
    assert statuses["say ok"] == "ok" and by_name["say ok"]["msg"] == "all good"
    assert statuses["change something"] == "changed" and by_name["change something"]["changed"] is True
    assert by_name["change something"]["stdout"] == "changed"
    assert statuses["skip me"] == "skipped"
    assert statuses["fail but ignore"] == "ignored"
    assert statuses["fail and be rescued"] == "rescued"
    assert statuses["rescue"] == "ok"
    assert statuses["ready?"] == "failed" and by_name["ready?"]["exit_code"] == 1
    assert "non-zero return code" in by_name["ready?"]["msg"]
    greet = by_name["greet"]
    assert (greet["role"], greet["action"], greet["stdout"]) == ("greeter", "command", "hello from the role")
    assert by_name["say ok"]["role"] is None
    for task in tasks:
        assert task["step_instance_id"] == done["steps"][0]["id"] and task["attempt"] == 1
        assert task["host_name"] == first["name"]
        assert task["started_at"] and task["ended_at"] and task["duration"] >= 0
    # Diff mode: the file's new content, as a unified diff.
    diff = by_name["write a file"]["diff"]
    assert f"+++ after: /tmp/opsflow-tasks-{mark}-{first['name']}" in diff and "+new content" in diff
    assert by_name["say ok"]["diff"] is None
    # A secret stays masked, and a no_log task shows nothing of its result.
    assert by_name["show the token"]["stdout"] == "token=******"
    hidden = by_name["hidden"]
    assert hidden["status"] == "changed" and hidden["diff"] is None and "no_log" in hidden["msg"]
    for task in tasks:
        assert SECRET not in str(task)
    log = service.api("GET", f"/projects/{pid}/jobs/{job['id']}/host-results/{first['id']}/log", 200)
    text = log.get_data(as_text=True)
    assert "greeter : greet · changed" in text and "-- diff" in text and SECRET not in text

    # Filters: by status, repeatable; a status no task can have is a 422 naming the field.
    failing = tasks_of(service, pid, job["id"], first["id"], status=["failed", "rescued"])
    assert [task["name"] for task in failing] == ["fail and be rescued", "ready?"]
    error = tasks_of(service, pid, job["id"], first["id"], expect=422, status="broken")["error"]
    assert error["field"].startswith("status")
    paged = service.api(
        "GET",
        f"/projects/{pid}/jobs/{job['id']}/host-results/{first['id']}/tasks",
        200,
        query_string={"page": 2, "page_size": 5},
    )
    assert [task["name"] for task in paged.get_json()] == names[5:10]
    assert '"total": 14' in paged.headers["X-Pagination"]

    # Ready the hosts with an ad-hoc command, retry: each host's second attempt keeps its own tasks.
    ready = service.post(
        f"/projects/{pid}/ad-hoc-runs",
        {
            "module": "file",
            "args": f"path=/tmp/opsflow-tasks-{mark}-ready state=touch",
            "targets": {"hosts": [first["id"]]},
            "account_id": account["id"],
        },
        expect=202,
    ).get_json()
    assert service.wait_job(pid, ready["id"])["status"] == "success"
    operate(service, pid, job, done["steps"][0], "retry", failed_only=True)
    again = service.wait_job(pid, job["id"])
    assert again["status"] == "success", service.host_results(pid, job["id"])
    latest = tasks_of(service, pid, job["id"], second["id"])
    assert {task["attempt"] for task in latest} == {2}
    assert latest[-1]["name"] == "ready?" and latest[-1]["status"] == "changed"
    # The retry found the file written: nothing changed, and no diff to show.
    write = next(task for task in latest if task["name"] == "write a file")
    assert write["status"] == "ok" and write["diff"] is None
    earlier = tasks_of(service, pid, job["id"], second["id"], attempt=1)
    assert {task["attempt"] for task in earlier} == {1} and earlier[-1]["status"] == "failed"
    missing = tasks_of(service, pid, job["id"], second["id"], expect=404, attempt=3)["error"]
    assert "attempt 3" in missing["message"]
    stranger = add_hosts(service, project, lab, 1, first=302)[0]
    tasks_of(service, pid, job["id"], stranger["id"], expect=404)


def test_a_script_step_has_its_result_and_no_tasks(service, project, account, lab):
    pid = project["id"]
    [host] = add_hosts(service, project, lab, 1, first=310)
    body = {
        "script": {"content": "echo one"},
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
    }
    job = service.post(f"/projects/{pid}/script-executions", body, expect=202).get_json()
    assert service.wait_job(pid, job["id"])["status"] == "success"
    assert tasks_of(service, pid, job["id"], host["id"]) == []
