"""Archives made by tests: sound ones from a directory, and the attacks an upload must refuse."""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
from pathlib import Path


def tar_gz(source: Path) -> bytes:
    """A .tar.gz of the files under `source`, their paths relative to it."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(source.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(source)), recursive=False)
    return buffer.getvalue()


def tar_gz_of(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    info.mode = 0o644
    return info


def zip_of(files: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


def attacks(unpacked_max: int) -> dict[str, tuple[bytes, int]]:
    """Archives an upload refuses, by what they try, with the status each is refused with."""
    ok = (member("site.yml"), b"- hosts: all\n")
    return {
        "a path through ..": (tar_gz_of(ok, (member("../escaped.yml"), b"x")), 422),
        "an absolute path": (tar_gz_of(ok, (member("/tmp/absolute.yml"), b"x")), 422),
        "a symlink out of the tree": (
            tar_gz_of(ok, (member("roles/out", tarfile.SYMTYPE, "../../../etc"), b"")),
            422,
        ),
        "an absolute symlink": (tar_gz_of(ok, (member("passwd", tarfile.SYMTYPE, "/etc/passwd"), b"")), 422),
        "a hard link out of the tree": (
            tar_gz_of(ok, (member("shadow", tarfile.LNKTYPE, "../etc/shadow"), b"")),
            422,
        ),
        "a device file": (tar_gz_of(ok, (member("dev/null", tarfile.CHRTYPE), b"")), 422),
        "a zip symlink out of the tree": (zip_of({"site.yml": b"x"}, {"out": "../../etc/passwd"}), 422),
        "a zip path through ..": (zip_of({"../escaped.yml": b"x"}), 422),
        "a zip bomb": (zip_of({"bomb.bin": b"\0" * (unpacked_max + 1)}), 413),
        "not an archive": (b"just some text, not an archive\n", 422),
    }
