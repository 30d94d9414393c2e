"""Who may call what: every endpoint of the API, for every kind of caller.

The matrix is data: one row per endpoint with the least it needs. A new endpoint joins by adding a
row; the completeness test fails while one is missing.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from app.api.flows import NODE_OPERATIONS, TASK_OPERATIONS
from tests.conftest import ADMIN_TOKEN, add_local_host, basic_auth

PASSWORD = "matrix-Password-2026"
CALLERS = ("anonymous", "nobody", "viewer", "operator", "other_admin", "admin", "sysadmin")


@dataclass
class World:
    """A project with one of everything, the users holding each role in it, and their tokens."""

    service: object
    project: int
    other_project: int
    host: int
    group: int
    account: int
    job: int
    users: dict[str, int]
    tokens: dict[str, str | None]

    def make(self, path: str, body: dict) -> int:
        return self.service.post(path, body, expect=201).get_json()["id"]

    def unique(self, prefix: str) -> str:
        return f"{prefix}{uuid.uuid4().hex[:10]}"


# Each row: method, URL rule, what the endpoint needs, and how to build the request (path, body).
Request = Callable[[World], tuple[str, dict | None]]
P = "/projects/{p}"


def fresh_host(w: World) -> int:
    return w.make(f"/projects/{w.project}/hosts", {"name": w.unique("h"), "address": "10.0.0.1"})


def fresh_group(w: World) -> int:
    return w.make(f"/projects/{w.project}/groups", {"name": w.unique("g")})


def fresh_dynamic_group(w: World) -> int:
    return w.make(f"/projects/{w.project}/dynamic-groups", {"name": w.unique("d")})


def fresh_account(w: World) -> int:
    return w.make(f"/projects/{w.project}/accounts", {"name": w.unique("a"), "username": "u"})


def job_step(w: World) -> int:
    return w.service.get(f"/projects/{w.project}/jobs/{w.job}")["steps"][0]["id"]


def fresh_member(w: World) -> int:
    user = w.make("/users", {"username": w.unique("member"), "password": PASSWORD})
    w.service.post(f"/projects/{w.project}/members", {"user_id": user, "role": "viewer"}, expect=201)
    return user


def fresh_user(w: World) -> int:
    return w.make("/users", {"username": w.unique("user"), "password": PASSWORD})


def fresh_user_token(w: World) -> str:
    """A new user's token, as its URL path under /users."""
    name = w.unique("holder")
    user = w.make("/users", {"username": name, "password": PASSWORD})
    token = w.service.api(
        "POST", "/users/me/tokens", 201, token=None, json={"name": "t"}, headers=basic_auth(name, PASSWORD)
    ).get_json()["id"]
    return f"/users/{user}/tokens/{token}"


def scope(w: World, public: bool) -> str:
    """Where a library resource lives: at the top for public (global) ones, else in the project."""
    return "" if public else f"/projects/{w.project}"


def fresh_script(w: World, public: bool = False) -> int:
    return w.make(f"{scope(w, public)}/scripts", {"name": w.unique("s"), "language": "bash"})


def fresh_version(w: World, public: bool = False, operation: str | None = None) -> str:
    """A new script's draft version (put through `operation` when given), as its URL path."""
    scripts = f"{scope(w, public)}/scripts/{fresh_script(w, public)}"
    version = w.make(f"{scripts}/versions", {"version": "1", "content": "echo hi"})
    if operation:
        w.service.post(f"{scripts}/versions/{version}/{operation}", expect=200)
    return f"{scripts}/versions/{version}"


def fresh_file(w: World) -> int:
    return w.service.post(f"/projects/{w.project}/files?name={w.unique('f')}", expect=201).get_json()["id"]


def fresh_template(w: World) -> int:
    steps = [{"name": "gate", "type": "manual"}]
    return w.make(f"/projects/{w.project}/job-templates", {"name": w.unique("t"), "steps": steps})


def fresh_plan(w: World) -> int:
    return w.make(
        f"/projects/{w.project}/job-plans", {"name": w.unique("p"), "template_id": fresh_template(w)}
    )


def fresh_credential(w: World) -> int:
    return w.make(
        f"/projects/{w.project}/credentials", {"name": w.unique("c"), "kind": "vault", "password": "p"}
    )


def fresh_repository(w: World) -> int:
    return w.make(
        f"/projects/{w.project}/repositories", {"name": w.unique("r"), "source": {"type": "archive"}}
    )


def repository_rows() -> dict[tuple[str, str], tuple[str, Request]]:
    """Credentials, repositories and the runs of their playbooks."""
    credentials = "/api/v1/projects/<int:pid>/credentials"
    rows: dict[tuple[str, str], tuple[str, Request]] = {
        ("GET", credentials): ("read", lambda w: (f"/projects/{w.project}/credentials", None)),
        ("POST", credentials): (
            "admin",
            lambda w: (
                f"/projects/{w.project}/credentials",
                {"name": w.unique("c"), "kind": "vault", "password": "p"},
            ),
        ),
        ("GET", f"{credentials}/<int:item_id>"): (
            "read",
            lambda w: (f"/projects/{w.project}/credentials/{fresh_credential(w)}", None),
        ),
        ("PATCH", f"{credentials}/<int:item_id>"): (
            "admin",
            lambda w: (f"/projects/{w.project}/credentials/{fresh_credential(w)}", {"vault_id": "v"}),
        ),
        ("DELETE", f"{credentials}/<int:item_id>"): (
            "admin",
            lambda w: (f"/projects/{w.project}/credentials/{fresh_credential(w)}", None),
        ),
    }
    repositories = "/api/v1/projects/<int:pid>/repositories"
    item = f"{repositories}/<int:item_id>"
    rows.update(
        {
            ("GET", repositories): ("read", lambda w: (f"/projects/{w.project}/repositories", None)),
            ("POST", repositories): (
                "admin",
                lambda w: (
                    f"/projects/{w.project}/repositories",
                    {"name": w.unique("r"), "source": {"type": "archive"}},
                ),
            ),
            ("GET", item): (
                "read",
                lambda w: (f"/projects/{w.project}/repositories/{fresh_repository(w)}", None),
            ),
            ("PATCH", item): (
                "admin",
                lambda w: (f"/projects/{w.project}/repositories/{fresh_repository(w)}", {"description": "x"}),
            ),
            ("DELETE", item): (
                "admin",
                lambda w: (f"/projects/{w.project}/repositories/{fresh_repository(w)}", None),
            ),
            ("POST", f"{repositories}/<int:rid>/sync"): (
                "operate",
                lambda w: (f"/projects/{w.project}/repositories/{fresh_repository(w)}/sync", {}),
            ),
            ("GET", f"{repositories}/<int:rid>/playbooks"): (
                "read",
                lambda w: (f"/projects/{w.project}/repositories/{fresh_repository(w)}/playbooks", None),
            ),
            ("POST", "/api/v1/projects/<int:pid>/playbook-runs"): (
                "operate",
                lambda w: (
                    f"/projects/{w.project}/playbook-runs",
                    {
                        "repository_id": fresh_repository(w),
                        "playbook": "site.yml",
                        "targets": {"hosts": [w.host]},
                    },
                ),
            ),
            ("POST", f"{repositories}/<int:rid>/archive"): (
                "admin",
                lambda w: (f"/projects/{w.project}/repositories/{fresh_repository(w)}/archive", None),
            ),
        }
    )
    return rows


def template_rows() -> dict[tuple[str, str], tuple[str, Request]]:
    """Job templates, plans, and the operations on a job's steps."""
    templates, plans = "/api/v1/projects/<int:pid>/job-templates", "/api/v1/projects/<int:pid>/job-plans"
    rows: dict[tuple[str, str], tuple[str, Request]] = {
        ("GET", templates): ("read", lambda w: (f"/projects/{w.project}/job-templates", None)),
        ("POST", templates): (
            "operate",
            lambda w: (
                f"/projects/{w.project}/job-templates",
                {"name": w.unique("t"), "steps": [{"name": "gate", "type": "manual"}]},
            ),
        ),
        ("GET", f"{templates}/<int:item_id>"): (
            "read",
            lambda w: (f"/projects/{w.project}/job-templates/{fresh_template(w)}", None),
        ),
        ("PATCH", f"{templates}/<int:item_id>"): (
            "operate",
            lambda w: (f"/projects/{w.project}/job-templates/{fresh_template(w)}", {"description": "x"}),
        ),
        ("DELETE", f"{templates}/<int:item_id>"): (
            "operate",
            lambda w: (f"/projects/{w.project}/job-templates/{fresh_template(w)}", None),
        ),
        ("POST", f"{templates}/<int:item_id>/launch"): (
            "operate",
            lambda w: (f"/projects/{w.project}/job-templates/{fresh_template(w)}/launch", {}),
        ),
        ("GET", f"{templates}/<int:item_id>/export"): (
            "read",
            lambda w: (f"/projects/{w.project}/job-templates/{fresh_template(w)}/export", None),
        ),
        ("POST", f"{templates}/import"): (
            "operate",
            lambda w: (
                f"/projects/{w.project}/job-templates/import",
                {
                    "format": "opsflow-job-templates/1",
                    "templates": [{"name": w.unique("i"), "steps": [{"name": "gate", "type": "manual"}]}],
                },
            ),
        ),
        ("GET", plans): ("read", lambda w: (f"/projects/{w.project}/job-plans", None)),
        ("POST", plans): (
            "operate",
            lambda w: (
                f"/projects/{w.project}/job-plans",
                {"name": w.unique("p"), "template_id": fresh_template(w)},
            ),
        ),
        ("GET", f"{plans}/<int:item_id>"): (
            "read",
            lambda w: (f"/projects/{w.project}/job-plans/{fresh_plan(w)}", None),
        ),
        ("PATCH", f"{plans}/<int:item_id>"): (
            "operate",
            lambda w: (f"/projects/{w.project}/job-plans/{fresh_plan(w)}", {"description": "x"}),
        ),
        ("DELETE", f"{plans}/<int:item_id>"): (
            "operate",
            lambda w: (f"/projects/{w.project}/job-plans/{fresh_plan(w)}", None),
        ),
        ("POST", f"{plans}/<int:item_id>/sync"): (
            "operate",
            lambda w: (f"/projects/{w.project}/job-plans/{fresh_plan(w)}/sync", None),
        ),
        ("POST", f"{plans}/<int:item_id>/launch"): (
            "operate",
            lambda w: (f"/projects/{w.project}/job-plans/{fresh_plan(w)}/launch", {}),
        ),
    }
    for operation in ("retry", "ignore", "skip", "confirm", "reject"):
        rows["POST", f"/api/v1/projects/<int:pid>/jobs/<int:jid>/steps/<int:sid>/{operation}"] = (
            "operate",
            lambda w, operation=operation: (
                f"/projects/{w.project}/jobs/{w.job}/steps/{job_step(w)}/{operation}",
                {},
            ),
        )
    return rows


NAP = {"id": "nap", "type": "activity", "atom": "sleep", "inputs": {"seconds": 0}}
FLOW_GRAPH = {
    "nodes": [{"id": "start", "type": "start"}, NAP, {"id": "end", "type": "end"}],
    "edges": [{"from": "start", "to": "nap"}, {"from": "nap", "to": "end"}],
}


def fresh_flow(w: World) -> int:
    return w.make(f"/projects/{w.project}/flows", {"name": w.unique("f"), **FLOW_GRAPH})


def fresh_task(w: World) -> str:
    """A task of a new flow, created and not started, as its URL path."""
    task = w.make(f"/projects/{w.project}/flows/{fresh_flow(w)}/tasks", {"start": False})
    return f"/projects/{w.project}/flow-tasks/{task}"


def fresh_variable(w: World) -> int:
    return w.make(f"/projects/{w.project}/variables", {"name": w.unique("v"), "value": 1})


def timed_job_body(w: World, on_template: bool = False) -> dict:
    """A timed job on a script execution or a template, disabled so that it never fires."""
    script = {"script": {"language": "bash", "content": "true"}, "targets": {"hosts": [w.host]}}
    target = {"template_id": fresh_template(w)} if on_template else {"script_execution": script}
    schedule = {"cron": "0 0 3 * * *"}
    return {"name": w.unique("timer"), "target": target, "schedule": schedule, "enabled": False}


def fresh_timed_job(w: World, on_template: bool = False) -> str:
    """A new timed job, as its URL path."""
    timed_jobs = f"/projects/{w.project}/timed-jobs"
    return f"{timed_jobs}/{w.make(timed_jobs, timed_job_body(w, on_template))}"


def flow_rows() -> dict[tuple[str, str], tuple[str, Request]]:
    """Flows, their versions and tasks, the operations on tasks and nodes, and project variables."""
    flows, tasks = "/api/v1/projects/<int:pid>/flows", "/api/v1/projects/<int:pid>/flow-tasks"
    variables = "/api/v1/projects/<int:pid>/variables"
    return {
        ("GET", flows): ("read", lambda w: (f"/projects/{w.project}/flows", None)),
        ("POST", flows): (
            "operate",
            lambda w: (f"/projects/{w.project}/flows", {"name": w.unique("f"), **FLOW_GRAPH}),
        ),
        ("GET", f"{flows}/<int:item_id>"): (
            "read",
            lambda w: (f"/projects/{w.project}/flows/{fresh_flow(w)}", None),
        ),
        ("PATCH", f"{flows}/<int:item_id>"): (
            "operate",
            lambda w: (f"/projects/{w.project}/flows/{fresh_flow(w)}", {"description": "x"}),
        ),
        ("DELETE", f"{flows}/<int:item_id>"): (
            "operate",
            lambda w: (f"/projects/{w.project}/flows/{fresh_flow(w)}", None),
        ),
        ("GET", f"{flows}/<int:item_id>/versions"): (
            "read",
            lambda w: (f"/projects/{w.project}/flows/{fresh_flow(w)}/versions", None),
        ),
        ("GET", f"{flows}/<int:item_id>/versions/<int:number>"): (
            "read",
            lambda w: (f"/projects/{w.project}/flows/{fresh_flow(w)}/versions/1", None),
        ),
        ("POST", f"{flows}/<int:item_id>/tasks"): (
            "operate",
            lambda w: (f"/projects/{w.project}/flows/{fresh_flow(w)}/tasks", {"start": False}),
        ),
        ("GET", f"{flows}/<int:item_id>/export"): (
            "read",
            lambda w: (f"/projects/{w.project}/flows/{fresh_flow(w)}/export", None),
        ),
        ("POST", f"{flows}/import"): (
            "operate",
            lambda w: (
                f"/projects/{w.project}/flows/import",
                {"format": "opsflow-flows/1", "flows": [{"name": w.unique("i"), **FLOW_GRAPH}]},
            ),
        ),
        ("GET", tasks): ("read", lambda w: (f"/projects/{w.project}/flow-tasks", None)),
        ("GET", f"{tasks}/<int:tid>"): ("read", lambda w: (fresh_task(w), None)),
        # Pausing a task that has not started: a 409 for whoever may operate it, after the access check.
        ("POST", f"{tasks}/<int:tid>/<string:op>"): ("operate", lambda w: (f"{fresh_task(w)}/pause", {})),
        ("GET", f"{tasks}/<int:tid>/nodes/<string:node>"): (
            "read",
            lambda w: (f"{fresh_task(w)}/nodes/nap", None),
        ),
        # Approving a sleep: a 409 for whoever may operate it, after the access check.
        ("POST", f"{tasks}/<int:tid>/nodes/<string:node>/<string:op>"): (
            "operate",
            lambda w: (f"{fresh_task(w)}/nodes/nap/approve", {}),
        ),
        ("GET", variables): ("read", lambda w: (f"/projects/{w.project}/variables", None)),
        ("POST", variables): (
            "admin",
            lambda w: (f"/projects/{w.project}/variables", {"name": w.unique("v"), "value": 1}),
        ),
        ("GET", f"{variables}/<int:item_id>"): (
            "read",
            lambda w: (f"/projects/{w.project}/variables/{fresh_variable(w)}", None),
        ),
        ("PATCH", f"{variables}/<int:item_id>"): (
            "admin",
            lambda w: (f"/projects/{w.project}/variables/{fresh_variable(w)}", {"value": 2}),
        ),
        ("DELETE", f"{variables}/<int:item_id>"): (
            "admin",
            lambda w: (f"/projects/{w.project}/variables/{fresh_variable(w)}", None),
        ),
    }


def timed_job_rows() -> dict[tuple[str, str], tuple[str, Request]]:
    """Timed jobs, their runs and trigger secrets; the trigger as called with a token (its secret is
    tests/test_timed_jobs.py's)."""
    timed_jobs = "/api/v1/projects/<int:pid>/timed-jobs"
    item = f"{timed_jobs}/<int:item_id>"
    return {
        ("GET", timed_jobs): ("read", lambda w: (f"/projects/{w.project}/timed-jobs", None)),
        ("POST", timed_jobs): (
            "operate",
            lambda w: (f"/projects/{w.project}/timed-jobs", timed_job_body(w, on_template=True)),
        ),
        ("GET", item): ("read", lambda w: (fresh_timed_job(w), None)),
        ("PATCH", item): ("operate", lambda w: (fresh_timed_job(w, on_template=True), {"description": "x"})),
        ("DELETE", item): ("operate", lambda w: (fresh_timed_job(w), None)),
        ("GET", f"{item}/preview"): ("read", lambda w: (f"{fresh_timed_job(w)}/preview", None)),
        ("GET", f"{item}/runs"): ("read", lambda w: (f"{fresh_timed_job(w)}/runs", None)),
        ("POST", f"{item}/run-now"): ("operate", lambda w: (f"{fresh_timed_job(w)}/run-now", None)),
        ("POST", f"{item}/trigger"): ("operate", lambda w: (f"{fresh_timed_job(w)}/trigger", {})),
        ("POST", f"{item}/trigger-secret"): (
            "operate",
            lambda w: (f"{fresh_timed_job(w)}/trigger-secret", None),
        ),
        ("DELETE", f"{item}/trigger-secret"): (
            "operate",
            lambda w: (f"{fresh_timed_job(w)}/trigger-secret", None),
        ),
    }


# Made off, so that it never takes part in another test's checks.
NEW_RULE = {"pattern": "matrix-never-[0-9]{64}", "action": "scan", "enabled": False}


def fresh_rule(w: World, public: bool = False) -> int:
    return w.make(f"{scope(w, public)}/danger-rules", NEW_RULE)


def script_rows(public: bool) -> dict[tuple[str, str], tuple[str, Request]]:
    """The rows of one scope of the script library: public scripts, or a project's."""
    rule = "/api/v1" + ("" if public else "/projects/<int:pid>") + "/scripts"
    read, write = ("user", "sysadmin") if public else ("read", "operate")

    def base(w: World) -> str:
        return scope(w, public)

    def operation(name: str, before: str | None) -> tuple[str, Request]:
        return write, lambda w: (f"{fresh_version(w, public, before)}/{name}", None)

    return {
        ("GET", rule): (read, lambda w: (f"{base(w)}/scripts", None)),
        ("POST", rule): (
            write,
            lambda w: (f"{base(w)}/scripts", {"name": w.unique("s"), "language": "shell"}),
        ),
        ("GET", f"{rule}/<int:sid>"): (
            read,
            lambda w: (f"{base(w)}/scripts/{fresh_script(w, public)}", None),
        ),
        ("PATCH", f"{rule}/<int:sid>"): (
            write,
            lambda w: (f"{base(w)}/scripts/{fresh_script(w, public)}", {"description": "x"}),
        ),
        ("DELETE", f"{rule}/<int:sid>"): (
            write,
            lambda w: (f"{base(w)}/scripts/{fresh_script(w, public)}", None),
        ),
        ("GET", f"{rule}/<int:sid>/usage"): (
            read,
            lambda w: (f"{base(w)}/scripts/{fresh_script(w, public)}/usage", None),
        ),
        ("GET", f"{rule}/<int:sid>/versions"): (
            read,
            lambda w: (f"{base(w)}/scripts/{fresh_script(w, public)}/versions", None),
        ),
        ("POST", f"{rule}/<int:sid>/versions"): (
            write,
            lambda w: (
                f"{base(w)}/scripts/{fresh_script(w, public)}/versions",
                {"version": "1", "content": "echo hi"},
            ),
        ),
        ("GET", f"{rule}/<int:sid>/versions/<int:vid>"): (read, lambda w: (fresh_version(w, public), None)),
        ("PATCH", f"{rule}/<int:sid>/versions/<int:vid>"): (
            write,
            lambda w: (fresh_version(w, public), {"content": "echo changed"}),
        ),
        ("POST", f"{rule}/<int:sid>/versions/<int:vid>/publish"): operation("publish", None),
        ("POST", f"{rule}/<int:sid>/versions/<int:vid>/offline"): operation("offline", "publish"),
        ("POST", f"{rule}/<int:sid>/versions/<int:vid>/disable"): operation("disable", None),
        ("POST", f"{rule}/<int:sid>/versions/<int:vid>/enable"): operation("enable", "disable"),
    }


def rule_rows(public: bool) -> dict[tuple[str, str], tuple[str, Request]]:
    """The rows of one scope of dangerous-command rules: global ones, or a project's."""
    rule = "/api/v1" + ("" if public else "/projects/<int:pid>") + "/danger-rules"
    read, write = ("user", "sysadmin") if public else ("read", "admin")

    def base(w: World) -> str:
        return scope(w, public)

    return {
        ("GET", rule): (read, lambda w: (f"{base(w)}/danger-rules", None)),
        ("POST", rule): (
            write,
            lambda w: (f"{base(w)}/danger-rules", NEW_RULE),
        ),
        ("GET", f"{rule}/<int:rid>"): (
            read,
            lambda w: (f"{base(w)}/danger-rules/{fresh_rule(w, public)}", None),
        ),
        ("PATCH", f"{rule}/<int:rid>"): (
            write,
            lambda w: (f"{base(w)}/danger-rules/{fresh_rule(w, public)}", {"description": "x"}),
        ),
        ("DELETE", f"{rule}/<int:rid>"): (
            write,
            lambda w: (f"{base(w)}/danger-rules/{fresh_rule(w, public)}", None),
        ),
    }


MATRIX: dict[tuple[str, str], tuple[str, Request]] = {
    **template_rows(),
    **flow_rows(),
    **timed_job_rows(),
    **repository_rows(),
    **script_rows(public=True),
    **script_rows(public=False),
    **rule_rows(public=True),
    **rule_rows(public=False),
    ("POST", "/api/v1/projects/<int:pid>/danger-rules/check"): (
        "read",
        lambda w: (f"/projects/{w.project}/danger-rules/check", {"content": "echo hi", "language": "bash"}),
    ),
    ("GET", "/api/v1/health"): ("public", lambda w: ("/health", None)),
    ("GET", "/api/v1/audit-events"): ("user", lambda w: ("/audit-events", None)),
    ("GET", "/api/v1/openapi.json"): ("public", lambda w: ("/openapi.json", None)),
    ("GET", "/api/v1/docs"): ("public", lambda w: ("/docs", None)),
    ("GET", "/api/v1/docs/assets/<path:name>"): ("public", lambda w: ("/docs/assets/swagger-ui.css", None)),
    ("GET", "/api/v1/users"): ("sysadmin", lambda w: ("/users", None)),
    ("POST", "/api/v1/users"): (
        "sysadmin",
        lambda w: ("/users", {"username": w.unique("new"), "password": PASSWORD}),
    ),
    ("GET", "/api/v1/users/me"): ("user", lambda w: ("/users/me", None)),
    # Wrong on purpose past the access check (no new password): a 422, and no password changes.
    ("POST", "/api/v1/users/me/password"): (
        "user",
        lambda w: ("/users/me/password", {"current_password": PASSWORD}),
    ),
    ("GET", "/api/v1/users/<int:user_id>"): ("sysadmin", lambda w: (f"/users/{fresh_user(w)}", None)),
    ("PATCH", "/api/v1/users/<int:user_id>"): (
        "sysadmin",
        lambda w: (f"/users/{fresh_user(w)}", {"display_name": "x"}),
    ),
    ("DELETE", "/api/v1/users/<int:user_id>"): ("sysadmin", lambda w: (f"/users/{fresh_user(w)}", None)),
    ("GET", "/api/v1/users/<int:user_id>/tokens"): (
        "sysadmin",
        lambda w: (f"/users/{fresh_user(w)}/tokens", None),
    ),
    ("DELETE", "/api/v1/users/<int:user_id>/tokens/<int:token_id>"): (
        "sysadmin",
        lambda w: (fresh_user_token(w), None),
    ),
    ("GET", "/api/v1/users/me/tokens"): ("user", lambda w: ("/users/me/tokens", None)),
    ("POST", "/api/v1/users/me/tokens"): ("user", lambda w: ("/users/me/tokens", {"name": "t"})),
    ("DELETE", "/api/v1/users/me/tokens/<int:token_id>"): (
        "user",
        lambda w: ("/users/me/tokens/999999", None),
    ),
    ("GET", "/api/v1/projects"): ("user", lambda w: ("/projects", None)),
    ("POST", "/api/v1/projects"): ("sysadmin", lambda w: ("/projects", {"name": w.unique("proj")})),
    ("GET", "/api/v1/projects/<int:pid>"): ("read", lambda w: (f"/projects/{w.project}", None)),
    ("PATCH", "/api/v1/projects/<int:pid>"): (
        "admin",
        lambda w: (f"/projects/{w.project}", {"description": "x"}),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>"): ("admin", lambda w: (f"/projects/{w.project}", None)),
    ("GET", "/api/v1/projects/<int:pid>/members"): (
        "read",
        lambda w: (f"/projects/{w.project}/members", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/members"): (
        "admin",
        lambda w: (f"/projects/{w.project}/members", {"user_id": w.users["nobody"], "role": "viewer"}),
    ),
    ("PATCH", "/api/v1/projects/<int:pid>/members/<int:user_id>"): (
        "admin",
        lambda w: (f"/projects/{w.project}/members/{fresh_member(w)}", {"role": "operator"}),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>/members/<int:user_id>"): (
        "admin",
        lambda w: (f"/projects/{w.project}/members/{fresh_member(w)}", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/hosts"): ("read", lambda w: (f"/projects/{w.project}/hosts", None)),
    ("POST", "/api/v1/projects/<int:pid>/hosts"): (
        "operate",
        lambda w: (f"/projects/{w.project}/hosts", {"name": w.unique("h"), "address": "10.0.0.2"}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/hosts/<int:item_id>"): (
        "read",
        lambda w: (f"/projects/{w.project}/hosts/{w.host}", None),
    ),
    ("PATCH", "/api/v1/projects/<int:pid>/hosts/<int:item_id>"): (
        "operate",
        # An SSH host: changing the local w.host is a system administrator's decision.
        lambda w: (f"/projects/{w.project}/hosts/{fresh_host(w)}", {"labels": {"k": "v"}}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/hosts/<int:item_id>/host-key"): (
        "read",
        lambda w: (f"/projects/{w.project}/hosts/{w.host}/host-key", None),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>/hosts/<int:item_id>/host-key"): (
        "operate",
        lambda w: (f"/projects/{w.project}/hosts/{w.host}/host-key", None),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>/hosts/<int:item_id>"): (
        "operate",
        lambda w: (f"/projects/{w.project}/hosts/{fresh_host(w)}", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/groups"): ("read", lambda w: (f"/projects/{w.project}/groups", None)),
    ("POST", "/api/v1/projects/<int:pid>/groups"): (
        "operate",
        lambda w: (f"/projects/{w.project}/groups", {"name": w.unique("g")}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/groups/<int:item_id>"): (
        "read",
        lambda w: (f"/projects/{w.project}/groups/{w.group}", None),
    ),
    ("PATCH", "/api/v1/projects/<int:pid>/groups/<int:item_id>"): (
        "operate",
        lambda w: (f"/projects/{w.project}/groups/{w.group}", {"description": "x"}),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>/groups/<int:item_id>"): (
        "operate",
        lambda w: (f"/projects/{w.project}/groups/{fresh_group(w)}", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/dynamic-groups"): (
        "read",
        lambda w: (f"/projects/{w.project}/dynamic-groups", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/dynamic-groups"): (
        "operate",
        lambda w: (f"/projects/{w.project}/dynamic-groups", {"name": w.unique("d")}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/dynamic-groups/<int:item_id>"): (
        "read",
        lambda w: (f"/projects/{w.project}/dynamic-groups/{fresh_dynamic_group(w)}", None),
    ),
    ("PATCH", "/api/v1/projects/<int:pid>/dynamic-groups/<int:item_id>"): (
        "operate",
        lambda w: (f"/projects/{w.project}/dynamic-groups/{fresh_dynamic_group(w)}", {"description": "x"}),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>/dynamic-groups/<int:item_id>"): (
        "operate",
        lambda w: (f"/projects/{w.project}/dynamic-groups/{fresh_dynamic_group(w)}", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/dynamic-groups/<int:item_id>/hosts"): (
        "read",
        lambda w: (f"/projects/{w.project}/dynamic-groups/{fresh_dynamic_group(w)}/hosts", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/inventories/import"): (
        "operate",
        lambda w: (
            f"/projects/{w.project}/inventories/import",
            {"format": "ini", "content": f"{w.unique('imported')} ansible_host=10.0.0.3\n"},
        ),
    ),
    ("GET", "/api/v1/projects/<int:pid>/inventories/export"): (
        "read",
        lambda w: (f"/projects/{w.project}/inventories/export?format=yaml", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/reachability-checks"): (
        "operate",
        lambda w: (f"/projects/{w.project}/reachability-checks", {"targets": {"hosts": [w.host]}}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/accounts"): (
        "read",
        lambda w: (f"/projects/{w.project}/accounts", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/accounts"): (
        "admin",
        lambda w: (f"/projects/{w.project}/accounts", {"name": w.unique("a"), "username": "u"}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/accounts/<int:item_id>"): (
        "read",
        lambda w: (f"/projects/{w.project}/accounts/{w.account}", None),
    ),
    ("PATCH", "/api/v1/projects/<int:pid>/accounts/<int:item_id>"): (
        "admin",
        lambda w: (f"/projects/{w.project}/accounts/{w.account}", {"become": True}),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>/accounts/<int:item_id>"): (
        "admin",
        lambda w: (f"/projects/{w.project}/accounts/{fresh_account(w)}", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/script-executions"): (
        "operate",
        lambda w: (
            f"/projects/{w.project}/script-executions",
            {"script": {"content": "true"}, "targets": {"hosts": [w.host]}, "account_id": w.account},
        ),
    ),
    ("POST", "/api/v1/projects/<int:pid>/ad-hoc-runs"): (
        "operate",
        lambda w: (f"/projects/{w.project}/ad-hoc-runs", {"module": "ping", "targets": {"hosts": [w.host]}}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/files"): ("read", lambda w: (f"/projects/{w.project}/files", None)),
    ("POST", "/api/v1/projects/<int:pid>/files"): (
        "operate",
        lambda w: (f"/projects/{w.project}/files?name={w.unique('f')}", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/files/<int:fid>"): (
        "read",
        lambda w: (f"/projects/{w.project}/files/{fresh_file(w)}", None),
    ),
    ("DELETE", "/api/v1/projects/<int:pid>/files/<int:fid>"): (
        "operate",
        lambda w: (f"/projects/{w.project}/files/{fresh_file(w)}", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/files/<int:fid>/content"): (
        "read",
        lambda w: (f"/projects/{w.project}/files/{fresh_file(w)}/content", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/file-transfers"): (
        "operate",
        lambda w: (
            f"/projects/{w.project}/file-transfers",
            {
                "sources": [{"name": "matrix.conf", "content": "x"}],
                "target_path": f"/tmp/opsflow-matrix-{w.project}",
                "targets": {"hosts": [w.host]},
                "mode": "force",
            },
        ),
    ),
    ("GET", "/api/v1/projects/<int:pid>/jobs/<int:jid>/file-results"): (
        "read",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/file-results", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/jobs"): ("read", lambda w: (f"/projects/{w.project}/jobs", None)),
    ("GET", "/api/v1/projects/<int:pid>/jobs/<int:jid>"): (
        "read",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/jobs/<int:jid>/cancel"): (
        "operate",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/cancel", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/jobs/<int:jid>/host-results"): (
        "read",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/host-results", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/jobs/<int:jid>/host-results/<int:host_id>/log"): (
        "read",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/host-results/{w.host}/log", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/jobs/<int:jid>/host-results/<int:host_id>/tasks"): (
        "read",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/host-results/{w.host}/tasks", None),
    ),
    ("POST", "/api/v1/projects/<int:pid>/jobs/<int:jid>/relaunch"): (
        "operate",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/relaunch", {}),
    ),
    ("GET", "/api/v1/projects/<int:pid>/jobs/<int:jid>/steps/<int:sid>/output-groups"): (
        "read",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/steps/{job_step(w)}/output-groups", None),
    ),
    ("GET", "/api/v1/projects/<int:pid>/jobs/<int:jid>/steps/<int:sid>/logs"): (
        "read",
        lambda w: (f"/projects/{w.project}/jobs/{w.job}/steps/{job_step(w)}/logs", None),
    ),
}

ROLE_OF = {"viewer": "viewer", "operator": "operator", "admin": "admin"}
ALLOWS = {"viewer": {"read"}, "operator": {"read", "operate"}, "admin": {"read", "operate", "admin"}}


def expected(need: str, caller: str) -> str:
    """'allowed', or the status the caller gets: 401, 403 or 404."""
    if need == "public":
        return "allowed"
    if caller == "anonymous":
        return "401"
    if need == "user" or caller == "sysadmin":
        return "allowed"
    if need == "sysadmin":
        return "403"
    if caller in ROLE_OF:
        return "allowed" if need in ALLOWS[ROLE_OF[caller]] else "403"
    return "404"


def answers(want: str, got: int) -> bool:
    """Whether status `got` is what `expected` said: allowed is anything but a refusal or a crash (a 409
    for a state that forbids the operation comes after the access check)."""
    return got not in (401, 403, 404) and got < 500 if want == "allowed" else str(got) == want


@pytest.fixture
def world(service) -> World:
    tag = uuid.uuid4().hex[:8]
    project = service.post("/projects", {"name": f"matrix-{tag}"}, expect=201).get_json()["id"]
    other = service.post("/projects", {"name": f"matrix-other-{tag}"}, expect=201).get_json()["id"]
    users, tokens = {}, {"anonymous": None, "sysadmin": ADMIN_TOKEN}
    for caller in ("nobody", "viewer", "operator", "other_admin", "admin"):
        name = f"m{tag}{caller.replace('_', '')}"
        users[caller] = service.post(
            "/users", {"username": name, "password": PASSWORD}, expect=201
        ).get_json()["id"]
        member_of = other if caller == "other_admin" else project
        if caller != "nobody":
            role = "admin" if caller == "other_admin" else caller
            service.post(
                f"/projects/{member_of}/members", {"user_id": users[caller], "role": role}, expect=201
            )
        tokens[caller] = service.api(
            "POST", "/users/me/tokens", 201, token=None, json={"name": "m"},
            headers=basic_auth(name, PASSWORD),
        ).get_json()["token"]  # fmt: skip
    host = add_local_host(service, {"id": project})["id"]
    group = service.post(f"/projects/{project}/groups", {"name": "g0"}, expect=201).get_json()["id"]
    account = service.post(
        f"/projects/{project}/accounts", {"name": "a0", "username": "u"}, expect=201
    ).get_json()["id"]
    launch = {"script": {"content": "true"}, "targets": {"hosts": [host]}}
    job = service.post(f"/projects/{project}/script-executions", launch, expect=202).get_json()["id"]
    return World(service, project, other, host, group, account, job, users, tokens)


def test_every_endpoint_is_in_the_matrix(service):
    routes = {
        (method, rule.rule)
        for rule in service.app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert routes - set(MATRIX) == set(), "add these endpoints to MATRIX"
    assert set(MATRIX) - routes == set(), "these rows name endpoints that no longer exist"


@pytest.mark.parametrize("caller", CALLERS)
def test_access(service, world, caller):
    failures = []
    for (method, rule), (need, build) in MATRIX.items():
        if (method, rule) == ("DELETE", "/api/v1/projects/<int:pid>"):
            continue
        path, body = build(world)
        response = service.api(method, path, token=world.tokens[caller], json=body)
        want = expected(need, caller)
        got = response.status_code
        ok = answers(want, got)
        if want == "allowed" and got == 404 and rule.endswith("/tokens/<int:token_id>"):
            ok = True  # revoking a token that is not yours: allowed, and answered as missing
        if not ok:
            failures.append(f"{method} {path} as {caller}: {got}, expected {want}")
    assert failures == []


@pytest.mark.parametrize("caller", ["viewer", "operator"])
def test_every_task_and_node_operation_takes_operate(service, world, caller):
    """One row stands for all the operations of a task or a node: each goes through the same check."""
    want = expected("operate", caller)
    failures = []
    for path in [*(f"/{op}" for op in TASK_OPERATIONS), *(f"/nodes/nap/{op}" for op in NODE_OPERATIONS)]:
        got = service.api("POST", fresh_task(world) + path, token=world.tokens[caller], json={}).status_code
        if not answers(want, got):
            failures.append(f"{path} as {caller}: {got}, expected {want}")
    assert failures == []


@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_an_outsider_cannot_tell_which_timed_jobs_a_project_has(service, world, method):
    answers_to = {
        path: service.api(method, f"{path}/trigger-secret", 404, token=world.tokens["nobody"]).get_json()
        for path in (fresh_timed_job(world), f"/projects/{world.project}/timed-jobs/999999")
    }
    assert len({str(answer) for answer in answers_to.values()}) == 1, answers_to


@pytest.mark.parametrize("caller", CALLERS)
def test_deleting_a_project(service, world, caller):
    response = service.api("DELETE", f"/projects/{world.project}", token=world.tokens[caller])
    want = expected("admin", caller)
    assert (response.status_code == 204) if want == "allowed" else str(response.status_code) == want
