"""Archive checks and unpacking, on files: what a repository archive may hold."""

from __future__ import annotations

import os

import pytest

from app.execution.archives import ArchiveRefused, inspect, unpack
from tests.archive_files import attacks, tar_gz, zip_of

LIMIT = 1024 * 1024


@pytest.mark.parametrize("attack", sorted(attacks(LIMIT)))
def test_attacks_are_refused_before_anything_is_written(tmp_path, attack):
    data, status = attacks(LIMIT)[attack]
    archive = tmp_path / "upload"
    archive.write_bytes(data)
    destination = tmp_path / "tree"
    destination.mkdir()
    with pytest.raises(ArchiveRefused) as refused:
        unpack(archive, destination, LIMIT, 1000)
    assert refused.value.too_large == (status == 413)
    assert list(destination.iterdir()) == []


def test_a_sound_archive_unpacks_with_its_links_inside_the_tree(tmp_path):
    source = tmp_path / "source"
    (source / "roles" / "web" / "tasks").mkdir(parents=True)
    (source / "roles" / "web" / "tasks" / "main.yml").write_text("- ping:\n")
    (source / "site.yml").write_text("- hosts: all\n")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    os.symlink("roles/web", source / "web")
    for name, data in (
        ("repo.tgz", tar_gz(source)),
        ("repo.zip", zip_of({"site.yml": b"x"}, {"s": "site.yml"})),
    ):
        archive = tmp_path / name
        archive.write_bytes(data)
        destination = tmp_path / f"tree-{name}"
        destination.mkdir()
        assert inspect(archive, LIMIT, 1000) > 0
        unpack(archive, destination, LIMIT, 1000)
        if name.endswith("tgz"):
            assert (destination / "web" / "tasks" / "main.yml").read_text() == "- ping:\n"
            assert os.access(destination / "run.sh", os.X_OK)
        else:
            assert os.readlink(destination / "s") == "site.yml"


def test_too_many_entries_are_refused(tmp_path):
    archive = tmp_path / "many.zip"
    archive.write_bytes(zip_of({f"f{n}.yml": b"x" for n in range(11)}))
    with pytest.raises(ArchiveRefused) as refused:
        inspect(archive, LIMIT, 10)
    assert refused.value.too_large
