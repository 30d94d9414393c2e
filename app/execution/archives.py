"""Repository archives (.tar.gz, .tgz, .zip): checked entry by entry before anything is kept, and unpacked
with the same checks, the bytes counted as they are written.

Refused: absolute paths, paths through `..`, links (symbolic or hard) that point outside the tree,
device files, FIFOs, and archives whose files hold more than the limit once unpacked (zip bombs) or that
have too many entries.
"""

from __future__ import annotations

import os
import posixpath
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

GZIP_MAGIC = b"\x1f\x8b"
ZIP_MAGIC = b"PK\x03\x04"
CHUNK_BYTES = 1024 * 1024


class ArchiveRefused(Exception):
    """An archive that is not kept; `too_large` when its size is the reason."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.too_large = too_large


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str  # file, dir, symlink, hardlink, special
    size: int = 0
    target: str = ""


def archive_format(path: Path) -> str:
    """ "tar.gz" or "zip", from the file's first bytes."""
    with path.open("rb") as handle:
        head = handle.read(4)
    if head.startswith(GZIP_MAGIC):
        return "tar.gz"
    if head == ZIP_MAGIC:
        return "zip"
    raise ArchiveRefused("not a .tar.gz, .tgz or .zip archive")


def checked_name(name: str) -> str:
    """The entry's path inside the tree, or ArchiveRefused when it would land outside it."""
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        raise ArchiveRefused(f"entry {name!r} has control characters in its name")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveRefused(f"entry {name!r} has an absolute path")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ArchiveRefused(f"entry {name!r} leaves the tree (..)")
    return posixpath.normpath(name.replace("\\", "/"))


def check_link(entry: Entry) -> None:
    if entry.target.startswith("/") or not entry.target:
        raise ArchiveRefused(f"link {entry.name!r} points outside the tree, to {entry.target!r}")
    base = posixpath.dirname(entry.name) if entry.kind == "symlink" else ""
    resolved = posixpath.normpath(posixpath.join(base, entry.target))
    if resolved == ".." or resolved.startswith("../") or ".." in entry.target.split("/"):
        raise ArchiveRefused(f"link {entry.name!r} points outside the tree, to {entry.target!r}")


def tar_entries(path: Path) -> Iterator[Entry]:
    with tarfile.open(path, "r:gz") as archive:
        for member in archive:
            if member.isdir():
                kind = "dir"
            elif member.isreg():
                kind = "file"
            elif member.issym():
                kind = "symlink"
            elif member.islnk():
                kind = "hardlink"
            else:
                kind = "special"
            yield Entry(member.name, kind, member.size, member.linkname)


def zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16
    if info.is_dir():
        return "dir"
    if stat.S_ISLNK(mode):
        return "symlink"
    # Archivers that record no file type leave its bits 0: a plain file.
    if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
        return "special"
    return "file"


def zip_entries(path: Path) -> Iterator[Entry]:
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            kind = zip_kind(info)
            target = archive.read(info).decode(errors="replace") if kind == "symlink" else ""
            yield Entry(info.filename, kind, info.file_size, target)


def inspect(path: Path, unpacked_max: int, entries_max: int) -> int:
    """Check every entry of the archive; returns how many bytes its files hold."""
    fmt = archive_format(path)
    total = count = 0
    try:
        for entry in tar_entries(path) if fmt == "tar.gz" else zip_entries(path):
            count += 1
            if count > entries_max:
                raise ArchiveRefused(f"the archive has more than {entries_max} entries", too_large=True)
            checked_name(entry.name)
            if entry.kind == "special":
                raise ArchiveRefused(f"entry {entry.name!r} is a device file or FIFO")
            if entry.kind in ("symlink", "hardlink"):
                check_link(entry)
            total += entry.size
            if total > unpacked_max:
                raise ArchiveRefused(
                    f"the archive holds more than {unpacked_max} bytes once unpacked", too_large=True
                )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise ArchiveRefused(f"the archive cannot be read: {exc}") from exc
    return total


def unpack(path: Path, destination: Path, unpacked_max: int, entries_max: int) -> int:
    """Unpack into `destination` (an empty directory) with the checks of `inspect`; returns the number of
    entries. Bytes are counted as they are written, so an archive that lies about its sizes stops there."""
    inspect(path, unpacked_max, entries_max)
    root = destination.resolve()
    if archive_format(path) == "tar.gz":
        written = 0

        def only_data(member: tarfile.TarInfo, where: str) -> tarfile.TarInfo:
            nonlocal written
            written += member.size
            if written > unpacked_max:
                raise ArchiveRefused(f"the archive holds more than {unpacked_max} bytes once unpacked", True)
            try:
                return tarfile.data_filter(member, where)
            except tarfile.FilterError as exc:
                raise ArchiveRefused(f"entry {member.name!r} refused: {exc}") from exc

        with tarfile.open(path, "r:gz") as archive:
            archive.extractall(root, filter=only_data)
            count = len(archive.getmembers())
    else:
        count = unpack_zip(path, root, unpacked_max)
    check_tree(root)
    return count


def unpack_zip(path: Path, root: Path, unpacked_max: int) -> int:
    written = 0
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        for info in infos:
            kind = zip_kind(info)
            target = root / checked_name(info.filename)
            inside(root, target.parent)
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if kind == "symlink":
                link = archive.read(info).decode()
                check_link(Entry(info.filename, kind, 0, link))
                os.symlink(link, target)
                continue
            with archive.open(info) as source, open(target, "xb") as sink:
                while chunk := source.read(CHUNK_BYTES):
                    written += len(chunk)
                    if written > unpacked_max:
                        raise ArchiveRefused(
                            f"the archive holds more than {unpacked_max} bytes once unpacked", too_large=True
                        )
                    sink.write(chunk)
            if (info.external_attr >> 16) & 0o111:
                target.chmod(0o755)
    return len(infos)


def inside(root: Path, path: Path) -> None:
    resolved = path.resolve()
    if resolved != root and root not in resolved.parents:
        raise ArchiveRefused(f"{path.relative_to(root)} leads outside the tree")


def check_tree(root: Path) -> None:
    """Every link of the unpacked tree resolves inside it, through the links it passes too."""
    for directory, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            path = Path(directory) / name
            if path.is_symlink():
                inside(root, path)
