"""File transfers over real SSH to loopback hosts: uploads, inline files, sources on hosts, modes, faults."""

from __future__ import annotations

import hashlib
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.execution.ingest import error_of, host_status
from app.execution.runner import CALLBACK_DIR
from app.models import HostStatus
from tests.conftest import add_hosts, add_unreachable_host, plugin_module
from tests.sshd import SshLab

ODD_NAME = "-rf my 'file' \"quoted\" é 日本.txt"


def upload(service, project, content: bytes, name: str = ODD_NAME) -> dict:
    return service.api(
        "POST", f"/projects/{project['id']}/files", 201, query_string={"name": name}, data=content
    ).get_json()


def transfer(service, project, body: dict, expect: int = 202) -> dict:
    return service.post(f"/projects/{project['id']}/file-transfers", body, expect=expect).get_json()


def file_results(service, project, job_id: int, **filters) -> list[dict]:
    query = {"page_size": 100, **filters}
    return service.get(f"/projects/{project['id']}/jobs/{job_id}/file-results", query_string=query)


@pytest.fixture(scope="module")
def lab_without_sftp(tmp_path_factory) -> Iterator[SshLab]:
    """A second sshd whose hosts offer no SFTP subsystem."""
    with SshLab(tmp_path_factory.mktemp("ssh-no-sftp"), sftp=False) as ssh_lab:
        yield ssh_lab


@pytest.fixture
def target_dir(tmp_path) -> Path:
    directory = tmp_path / f"target {uuid.uuid4().hex[:6]}"
    directory.mkdir()
    return directory


def test_upload_pushed_to_hosts_then_unchanged(service, project, account, lab, target_dir):
    content = b"payload\n" * 10_000
    stored = upload(service, project, content)
    hosts = add_hosts(service, project, lab, 2)
    body = {
        "sources": [{"file_id": stored["id"]}, {"name": "app.conf", "content": "key = {{ value }}\n"}],
        "target_path": str(target_dir),
        "targets": {"hosts": [host["id"] for host in hosts]},
        "account_id": account["id"],
    }
    job = transfer(service, project, body)
    assert job["kind"] == "file_transfer"
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "success", service.host_results(project["id"], job["id"])
    assert (target_dir / ODD_NAME).read_bytes() == content
    assert (target_dir / "app.conf").read_text() == "key = {{ value }}\n"
    results = file_results(service, project, job["id"])
    assert len(results) == 4
    for result in results:
        assert result["status"] in ("copied", "unchanged")
        assert result["checksum_verified"] is True
        assert result["source"] == "controller"
        assert result["duration"] is not None
    assert all(result["error"] is None for result in results)
    assert [r["error"] for r in service.host_results(project["id"], job["id"])] == [None, None]
    by_path = {result["path"] for result in results}
    assert by_path == {str(target_dir / ODD_NAME), str(target_dir / "app.conf")}
    [copied] = [r for r in results if r["status"] == "copied" and r["path"].endswith(".txt")][:1]
    assert copied["size"] == len(content) and copied["speed"] > 0

    again = service.post(f"/projects/{project['id']}/jobs/{job['id']}/relaunch", {}, expect=202).get_json()
    done = service.wait_job(project["id"], again["id"])
    assert done["status"] == "success"
    assert {r["status"] for r in file_results(service, project, again["id"])} == {"unchanged"}


def test_sources_on_hosts_staged_per_host_in_safe_mode(service, project, account, lab, tmp_path, target_dir):
    source = tmp_path / "logs"
    (source / "sub dir").mkdir(parents=True)
    (source / "app.log").write_text("app\n")
    (source / "other.log").write_text("other\n")
    (source / "skip.txt").write_text("no\n")
    (source / "sub dir" / "-deep 'one'.log").write_text("deep\n")
    sources = add_hosts(service, project, lab, 2, first=40)
    targets = add_hosts(service, project, lab, 1, first=45)
    missing = add_hosts(service, project, lab, 1, first=47)
    login = account["id"]
    body = {
        "sources": [
            {
                "path": f"{source}/*.log",
                "source_hosts": {"hosts": [h["id"] for h in sources]},
                "account_id": login,
            },
            {"path": f"{source}/", "source_hosts": {"hosts": [sources[0]["id"]]}, "account_id": login},
            {
                "path": f"{source}/nothing-*.log",
                "source_hosts": {"hosts": [missing[0]["id"]]},
                "account_id": login,
            },
        ],
        "target_path": f"{target_dir}/${{date}}",
        "targets": {"hosts": [targets[0]["id"]]},
        "account_id": login,
        "mode": "safe",
        "date_format": "%Y",
    }
    job = transfer(service, project, body)
    done = service.wait_job(project["id"], job["id"])
    year = time.strftime("%Y", time.gmtime())
    fetches = [step for step in done["steps"] if step["kind"] == "file_fetch"]
    push = next(step for step in done["steps"] if step["kind"] == "file_push")
    assert [step["seq"] for step in fetches] == [1, 1, 1] and push["seq"] == 2
    [lost] = service.host_results(project["id"], job["id"], status="failed")
    assert lost["host_name"] == missing[0]["name"]
    assert lost["error"].startswith("source missing: ")
    assert push["status"] == "success"
    assert done["status"] == "failed"
    base = target_dir / year
    for host in sources:
        assert (base / host["name"] / "app.log").read_text() == "app\n"
        assert (base / host["name"] / "other.log").read_text() == "other\n"
    # A directory comes with its own name and tree.
    deep = base / sources[0]["name"] / "logs" / "sub dir" / "-deep 'one'.log"
    assert deep.read_text() == "deep\n"
    # The glob takes only the files it matches; the directory takes everything.
    assert not (base / sources[1]["name"] / "skip.txt").exists()
    assert (base / sources[0]["name"] / "logs" / "skip.txt").exists()
    assert not (base / missing[0]["name"]).exists()
    results = file_results(service, project, job["id"])
    assert len(results) == 2 + 2 + 4
    assert {r["source"] for r in results} == {h["name"] for h in sources}
    assert all(r["checksum_verified"] for r in results)
    # A failed transfer keeps what it fetched for a retry; skipped past its failure, the job succeeds
    # and the ingester's periodic pass removes the staging directory.
    staging = service.data_dir / "staging" / str(job["id"])
    assert staging.is_dir()
    path = f"/projects/{project['id']}/jobs/{job['id']}/steps/{lost['step_instance_id']}/skip"
    service.post(path, {"reason": "host retired"}, expect=202)
    assert service.wait_job(project["id"], job["id"])["status"] == "success"
    deadline = time.monotonic() + 30
    while staging.exists():
        assert time.monotonic() < deadline, "staging directory left behind"
        time.sleep(0.2)


def test_a_long_source_path_is_named_within_limits(service, project, account, lab, tmp_path, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=80)
    long_dir = tmp_path / ("d" * 200) / ("e" * 200)
    long_dir.mkdir(parents=True)
    (long_dir / "f.txt").write_text("f\n")
    body = {
        "sources": [
            {
                "path": str(long_dir / "f.txt"),
                "source_hosts": {"hosts": [host["id"]]},
                "account_id": account["id"],
            }
        ],
        "target_path": str(target_dir),
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
        "mode": "safe",
    }
    job = transfer(service, project, body)
    assert all(len(step["name"]) <= 255 for step in job["steps"])
    assert service.wait_job(project["id"], job["id"])["status"] == "success"
    assert (target_dir / host["name"] / "f.txt").read_text() == "f\n"


def test_safe_mode_by_host_and_date(service, project, account, lab, tmp_path, target_dir):
    source = tmp_path / "one.txt"
    source.write_text("one\n")
    [host] = add_hosts(service, project, lab, 1, first=50)
    body = {
        "sources": [
            {"path": str(source), "source_hosts": {"hosts": [host["id"]]}, "account_id": account["id"]}
        ],
        "target_path": f"{target_dir}/from-${{source_address}}",
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
        "mode": "safe",
        "safe_layout": "host_date",
        "date_format": "%Y-%m",
    }
    job = transfer(service, project, body)
    assert service.wait_job(project["id"], job["id"])["status"] == "success"
    month = time.strftime("%Y-%m", time.gmtime())
    assert (target_dir / f"from-{host['address']}" / host["name"] / month / "one.txt").read_text() == "one\n"


def push_one(service, project, account, host, target: str, mode: str, content: bytes = b"x\n", **extra):
    stored = upload(service, project, content, name=extra.pop("name", "file.txt"))
    body = {
        "sources": [{"file_id": stored["id"]}],
        "target_path": target,
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
        "mode": mode,
        **extra,
    }
    return transfer(service, project, body)


def test_strict_fails_a_missing_directory_force_creates_it(service, project, account, lab, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=55)
    missing = target_dir / "not" / "there"
    job = push_one(service, project, account, host, str(missing), "strict")
    assert service.wait_job(project["id"], job["id"])["status"] == "failed"
    [result] = service.host_results(project["id"], job["id"])
    assert f"target directory missing: {missing}" in result["error"]
    assert not missing.exists()
    # The host failed before its file was sent: the file says so, with the host's reason.
    [file] = file_results(service, project, job["id"])
    assert (file["path"], file["source"], file["status"]) == (
        str(missing / "file.txt"),
        "controller",
        "failed",
    )
    assert file["error"] == f"not sent: {result['error']}" and file["checksum_verified"] is None

    job = push_one(service, project, account, host, str(missing), "force")
    assert service.wait_job(project["id"], job["id"])["status"] == "success"
    assert (missing / "file.txt").read_bytes() == b"x\n"


def test_target_is_a_file_where_a_directory_is_expected(service, project, account, lab, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=57)
    blocker = target_dir / "blocker"
    blocker.write_text("i am a file\n")
    for mode in ("strict", "force"):
        job = push_one(service, project, account, host, str(blocker), mode)
        assert service.wait_job(project["id"], job["id"])["status"] == "failed"
        [result] = service.host_results(project["id"], job["id"])
        assert "not a directory" in result["error"] or "exists" in result["error"], result["error"]
        assert blocker.read_text() == "i am a file\n"


def test_no_permission_to_write(service, project, account, lab, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=59)
    # The lab logs in as root, whom file modes do not stop: an immutable directory does.
    locked = target_dir / "locked"
    locked.mkdir()
    subprocess.run(["chattr", "+i", str(locked)], check=True)
    try:
        job = push_one(service, project, account, host, str(locked), "strict")
        assert service.wait_job(project["id"], job["id"])["status"] == "failed"
        [result] = service.host_results(project["id"], job["id"])
        assert "not permitted" in result["error"] or "ermission" in result["error"], result["error"]
        [file] = file_results(service, project, job["id"])
        assert file["status"] == "failed" and file["error"] and file["checksum_verified"] is None
    finally:
        subprocess.run(["chattr", "-i", str(locked)], check=True)
    assert list(locked.iterdir()) == []


def test_disk_full(service, project, account, lab, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=61)
    small = target_dir / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        job = push_one(service, project, account, host, str(small), "strict", content=b"z" * 3 * 1024 * 1024)
        assert service.wait_job(project["id"], job["id"])["status"] == "failed"
        [result] = service.host_results(project["id"], job["id"])
        assert "No space left" in result["error"], result["error"]
        [file] = file_results(service, project, job["id"])
        assert file["status"] == "failed"
        # Nothing half-written is left: no file at the final path, nor a temporary one beside it.
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_cancel_midway_leaves_no_partial_file(service, project, account, lab, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=63)
    # 4 MB at 200 KB/s: about 20 s on the wire.
    job = push_one(
        service, project, account, host, str(target_dir), "strict", content=b"c" * 4_000_000, speed_limit=200
    )
    deadline = time.monotonic() + 60
    while not service.host_results(project["id"], job["id"], status="running"):
        assert time.monotonic() < deadline
        time.sleep(0.2)
    time.sleep(3)
    service.post(f"/projects/{project['id']}/jobs/{job['id']}/cancel", expect=202)
    done = service.wait_job(project["id"], job["id"])
    assert done["status"] == "terminated"
    assert service.host_results(project["id"], job["id"])[0]["status"] == "cancelled"
    assert list(target_dir.iterdir()) == []


def test_relaunch_failed_only_pushes_to_failed_targets(service, project, account, lab, target_dir):
    [good] = add_hosts(service, project, lab, 1, first=65)
    stored = upload(service, project, b"r\n", name="r.txt")
    nowhere = add_unreachable_host(service, project)
    body = {
        "sources": [{"file_id": stored["id"]}],
        "target_path": str(target_dir),
        "targets": {"hosts": [good["id"], nowhere["id"]]},
        "account_id": account["id"],
    }
    job = transfer(service, project, body)
    assert service.wait_job(project["id"], job["id"])["status"] == "failed"
    again = service.post(
        f"/projects/{project['id']}/jobs/{job['id']}/relaunch", {"failed_only": True}, expect=202
    ).get_json()
    assert again["host_count"] == 1
    assert [r["host_name"] for r in service.host_results(project["id"], again["id"])] == ["nowhere"]
    [unsent] = file_results(service, project, job["id"], host="nowhere")
    assert unsent["status"] == "failed" and unsent["error"].startswith("not sent: ")
    assert "onnect" in unsent["error"], unsent


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"sources": []}, "sources"),
        ({"sources": [{"name": "../../etc/passwd", "content": "x"}]}, "sources.0.name"),
        ({"sources": [{"name": "/etc/passwd", "content": "x"}]}, "sources.0.name"),
        ({"sources": [{"name": "a\u0000b", "content": "x"}]}, "sources.0.name"),
        ({"sources": [{"content": "x"}]}, "sources.0.name"),
        ({"sources": [{"file_id": 999999}]}, "sources.0.file_id"),
        ({"sources": [{"file_id": 1, "path": "/x"}]}, "sources.0.path"),
        ({"sources": [{"path": "relative", "source_hosts": {"hosts": [1]}}]}, "sources.0.path"),
        ({"sources": [{"path": "/x"}]}, "sources.0.source_hosts"),
        ({"sources": [{"path": "/x", "source_hosts": {"hosts": [999999]}}]}, "sources.0.source_hosts.hosts"),
        ({"sources": [{"name": "a", "content": "1"}, {"name": "a", "content": "2"}]}, "sources.1"),
        ({"target_path": "relative/dir"}, "target_path"),
        ({"target_path": "/srv/${nope}"}, "target_path"),
        ({"mode": "overwrite"}, "mode"),
        ({"date_format": "%Y/%m"}, "date_format"),
        ({"speed_limit": 0}, "speed_limit"),
        ({"targets": {"hosts": [999999]}}, "targets.hosts"),
        ({"account_id": None}, "account_id"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(service, project, account, lab, change, field):
    [host] = add_hosts(service, project, lab, 1, first=70)
    body = {
        "sources": [{"name": "ok.conf", "content": "x"}],
        "target_path": "/tmp/never",
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
        **change,
    }
    error = transfer(service, project, body, expect=422)["error"]
    assert error["field"] == field, error
    assert service.get(f"/projects/{project['id']}/jobs") == []


def test_an_inline_file_over_the_limit_is_413(service, project, account, lab):
    [host] = add_hosts(service, project, lab, 1, first=72)
    body = {
        "sources": [{"name": "big.conf", "content": "x" * (1024 * 1024 + 1)}],
        "target_path": "/tmp/never",
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
    }
    assert transfer(service, project, body, expect=413)["error"]["field"] == "sources.0.content"


def test_checksum_of_the_pushed_bytes(service, project, account, lab, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=74)
    content = bytes(range(256)) * 4096
    job = push_one(
        service, project, account, host, str(target_dir), "strict", content=content, name="bin.dat"
    )
    assert service.wait_job(project["id"], job["id"])["status"] == "success"
    assert (
        hashlib.sha256((target_dir / "bin.dat").read_bytes()).hexdigest()
        == hashlib.sha256(content).hexdigest()
    )


def test_a_file_changed_in_the_store_fails_its_checksum(service, project, account, lab, target_dir):
    [host] = add_hosts(service, project, lab, 1, first=76)
    stored = upload(service, project, b"original\n", name="checked.txt")
    [path] = (service.data_dir / "files" / str(project["id"])).iterdir()
    path.write_bytes(b"tampered\n")
    body = {
        "sources": [{"file_id": stored["id"]}],
        "target_path": str(target_dir),
        "targets": {"hosts": [host["id"]]},
        "account_id": account["id"],
    }
    job = transfer(service, project, body)
    assert service.wait_job(project["id"], job["id"])["status"] == "failed"
    [file] = file_results(service, project, job["id"])
    assert (file["status"], file["checksum_verified"]) == ("failed", False)
    assert "checksum" in file["error"]
    assert not (target_dir / "checked.txt").exists()


def test_nothing_fetched_fails_the_targets(service, project, account, lab, target_dir):
    source, target = add_hosts(service, project, lab, 2, first=78)
    body = {
        "sources": [
            {
                "path": f"{target_dir}/absent",
                "source_hosts": {"hosts": [source["id"]]},
                "account_id": account["id"],
            }
        ],
        "target_path": str(target_dir),
        "targets": {"hosts": [target["id"]]},
        "account_id": account["id"],
    }
    job = transfer(service, project, body)
    done = service.wait_job(project["id"], job["id"])
    assert [step["status"] for step in done["steps"]] == ["failed", "failed"]
    errors = {r["host_name"]: r["error"] for r in service.host_results(project["id"], job["id"])}
    assert errors == {
        source["name"]: f"source missing: {target_dir}/absent",
        target["name"]: "nothing to push: no source host gave a file",
    }


def test_a_speed_limited_push_to_a_host_without_sftp(service, project, lab_without_sftp, target_dir):
    lab = lab_without_sftp
    login = {"name": "no-sftp", "username": lab.user, "private_key": lab.private_key}
    account = service.post(f"/projects/{project['id']}/accounts", login, expect=201).get_json()
    [host] = add_hosts(service, project, lab, 1, first=90)
    content = b"limited\n" * 1000
    for speed_limit in (None, 500):
        extra = {"speed_limit": speed_limit} if speed_limit else {}
        job = push_one(service, project, account, host, str(target_dir), "force", content=content, **extra)
        done = service.wait_job(project["id"], job["id"])
        results = service.host_results(project["id"], job["id"])
        assert done["status"] == "success", (speed_limit, [(r["status"], r["error"]) for r in results])
        assert (target_dir / "file.txt").read_bytes() == content
        [file] = file_results(service, project, job["id"])
        assert (file["status"], file["error"], file["checksum_verified"]) == ("copied", None, True)
        (target_dir / "file.txt").unlink()


def test_a_file_ansible_could_not_send_names_the_transfer_not_the_connection():
    msg = "Task failed: Failed to connect to the host via scp: scp: Connection closed"
    assert host_status("unreachable", msg, 3) == HostStatus.FAILED
    assert (
        error_of("unreachable", msg) == "Task failed: sending a file with scp failed: scp: Connection closed"
    )
    assert host_status("unreachable", "Failed to connect to the host via ssh: timed out", 3) == "unreachable"
    # A loop that went well sums up as "All items completed": that is no error.
    assert error_of("changed", "All items completed") is None
    assert error_of("failed", "") is None


def test_a_loop_with_an_unreachable_item_reports_the_item_not_all_items_completed():
    plugin = plugin_module(CALLBACK_DIR / "opsflow.py", "opsflow_callback")
    message = plugin.CallbackModule._message
    item = {"msg": "Task failed: Failed to connect to the host via scp: scp: Connection closed"}
    unreachable = {"msg": "All items completed", "unreachable": True, "results": [item]}
    assert message(unreachable) == item["msg"]
    failed = {"msg": "One or more items failed", "failed": True, "results": [{}, {"msg": "No space left"}]}
    assert message(failed) == "One or more items failed: No space left"
    assert message({"msg": "All items completed", "results": [{"changed": True}]}) == "All items completed"
