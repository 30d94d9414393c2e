"""The file store: streamed uploads (raw and multipart), sha256, size limit, names, download, retention."""

from __future__ import annotations

import dataclasses
import hashlib
import io
from datetime import timedelta

import pytest

from app.extensions import db
from app.models import StoredFile
from app.models.base import utcnow
from app.services.files import housekeep

ODD_NAME = "-rf my 'file' \"quoted\" é 日本.txt"


def upload(service, project, content: bytes, name: str | None = ODD_NAME, expect: int = 201, **kwargs):
    query = {"name": name} if name is not None else {}
    return service.api(
        "POST", f"/projects/{project['id']}/files", expect, query_string=query, data=content, **kwargs
    ).get_json()


def stored(service, project) -> list[str]:
    directory = service.data_dir / "files" / str(project["id"])
    return sorted(path.name for path in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def small_limit(service):
    settings = service.app.config["OPSFLOW"]
    service.app.config["OPSFLOW"] = dataclasses.replace(settings, file_max_bytes=1000)
    yield 1000
    service.app.config["OPSFLOW"] = settings


def test_upload_list_download_delete(service, project):
    content = b"\x00binary\xff" * 50_000
    row = upload(service, project, content, headers={"Content-Type": "application/octet-stream"})
    assert row["name"] == ODD_NAME
    assert row["size"] == len(content)
    assert row["sha256"] == hashlib.sha256(content).hexdigest()
    assert row["uploaded_by"] == "admin"
    listed = service.get(f"/projects/{project['id']}/files")
    assert [item["id"] for item in listed] == [row["id"]]
    assert service.get(f"/projects/{project['id']}/files", query_string={"name": "nope"}) == []

    download = service.api("GET", f"/projects/{project['id']}/files/{row['id']}/content", 200)
    assert download.get_data() == content
    assert "attachment" in download.headers["Content-Disposition"]
    assert "filename*=UTF-8''" in download.headers["Content-Disposition"]

    [storage_name] = stored(service, project)
    assert storage_name != ODD_NAME
    service.api("DELETE", f"/projects/{project['id']}/files/{row['id']}", 204)
    service.api("GET", f"/projects/{project['id']}/files/{row['id']}", 404)
    assert stored(service, project) == []


def test_uploads_are_not_bound_by_the_json_body_limit(service, project):
    service.app.config["MAX_CONTENT_LENGTH"], saved = 1000, service.app.config["MAX_CONTENT_LENGTH"]
    try:
        assert upload(service, project, b"y" * 5000, name="larger than a json body")["size"] == 5000
    finally:
        service.app.config["MAX_CONTENT_LENGTH"] = saved


def test_multipart_upload_takes_the_part_filename(service, project):
    content = b"key = value\n"
    data = {"file": (io.BytesIO(content), "app config.ini"), "other": (io.BytesIO(b"x"), "ignored.txt")}
    response = service.api(
        "POST", f"/projects/{project['id']}/files", 201, data=data, content_type="multipart/form-data"
    )
    row = response.get_json()
    assert (row["name"], row["size"], row["sha256"]) == (
        "app config.ini",
        len(content),
        hashlib.sha256(content).hexdigest(),
    )
    # Only the part named file is kept.
    assert len(stored(service, project)) == 1


def test_multipart_without_a_file_part(service, project):
    response = service.api(
        "POST",
        f"/projects/{project['id']}/files",
        422,
        data={"other": "text"},
        content_type="multipart/form-data",
    )
    assert response.get_json()["error"]["field"] == "file"
    assert stored(service, project) == []


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "/etc/passwd", "a/b", "..", ".", "nul\x00byte", "line\nbreak", "back\\slash"]
)
def test_names_that_would_leave_the_directory_are_refused(service, project, name):
    error = upload(service, project, b"data", name=name, expect=422)["error"]
    assert error["field"] == "name"
    assert stored(service, project) == []


def test_a_name_is_required(service, project):
    assert upload(service, project, b"data", name=None, expect=422)["error"]["field"] == "name"
    assert upload(service, project, b"data", name="", expect=422)["error"]["field"] == "name"
    assert stored(service, project) == []


def test_over_the_limit_is_413_declared_or_streamed(service, project, small_limit):
    for size in (small_limit + 1, small_limit + 100_000):
        error = upload(service, project, b"x" * size, expect=413)["error"]
        assert (error["code"], error["field"]) == ("too_large", "file")
    # A chunked body declares no length: it is counted as it arrives, and the partial file removed.
    chunked = service.api(
        "POST",
        f"/projects/{project['id']}/files",
        413,
        query_string={"name": "big"},
        input_stream=io.BytesIO(b"x" * (small_limit * 3)),
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert chunked.get_json()["error"]["code"] == "too_large"
    assert stored(service, project) == []
    assert service.get(f"/projects/{project['id']}/files") == []
    # Exactly at the limit is fine.
    assert upload(service, project, b"x" * small_limit, name="at-limit")["size"] == small_limit


def test_retention_removes_old_files(service, project):
    old = upload(service, project, b"old", name="old.txt")
    new = upload(service, project, b"new", name="new.txt")
    row = db.session.get(StoredFile, old["id"])
    row.created_at = utcnow() - timedelta(days=31)
    db.session.commit()
    settings = dataclasses.replace(service.app.config["OPSFLOW"], file_retention_days=30)
    assert housekeep(settings) >= 1
    db.session.expire_all()
    assert [item["id"] for item in service.get(f"/projects/{project['id']}/files")] == [new["id"]]
    assert len(stored(service, project)) == 1


def test_viewer_cannot_upload(service, project):
    from tests.conftest import basic_auth

    user = service.post("/users", {"username": "fviewer", "password": "a-Long-passphrase-42"}, expect=201)
    service.post(
        f"/projects/{project['id']}/members", {"user_id": user.get_json()["id"], "role": "viewer"}, expect=201
    )
    token = service.api(
        "POST", "/users/me/tokens", 201, token=None, json={"name": "t"},
        headers=basic_auth("fviewer", "a-Long-passphrase-42"),
    ).get_json()["token"]  # fmt: skip
    service.api(
        "POST", f"/projects/{project['id']}/files", 403, token=token, query_string={"name": "x"}, data=b"x"
    )
    assert stored(service, project) == []
