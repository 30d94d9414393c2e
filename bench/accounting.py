"""Linux process accounting for benchmarks: the CPU of every process that ended while it was on.

`recorded(path)` turns accounting on into a file of its own (``accton``, from Debian's ``acct``
package; root only) and off again; `recorded_in(directory, name)` does it for a benchmark's
``--accounting DIR`` (`add_option`, `prepare`), or nothing without one; `by_command(path)` reads
a file back as processes and CPU seconds per command name. A process still running when accounting
is turned off is not in the file. The kernel rounds each process's user and system time down to
10 ms, so a command of many short processes shows less than it took; two runs of the same shape lose
alike.
"""

from __future__ import annotations

import argparse
import shutil
import struct
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

# struct acct_v3 (linux/acct.h): flag, version, tty, exitcode, uid, gid, pid, ppid, btime, etime
# (float), then eight comp_t counters (utime, stime, mem, io, rw, minflt, majflt, swaps), comm.
RECORD = struct.Struct("=BBHIIIIIIf8H16s")
TICKS_PER_SECOND = 100
VERSION_3 = 3


@dataclass
class Process:
    command: str
    pid: int
    ppid: int
    elapsed: float
    user: float
    system: float

    @property
    def cpu(self) -> float:
        return self.user + self.system


@dataclass
class Command:
    processes: int = 0
    user: float = 0.0
    system: float = 0.0

    @property
    def cpu(self) -> float:
        return self.user + self.system

    def add(self, process: Process) -> None:
        self.processes += 1
        self.user += process.user
        self.system += process.system


def add_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--accounting",
        metavar="DIR",
        type=Path,
        help="process accounting of each timed run, into files in DIR (root; Debian's acct)",
    )


def prepare(parser: argparse.ArgumentParser, directory: Path | None) -> None:
    """Refuse --accounting where accton is missing; make its directory."""
    if directory is None:
        return
    if shutil.which("accton") is None:
        parser.error("--accounting needs accton (apt-get install acct) and root")
    directory.mkdir(parents=True, exist_ok=True)


@contextmanager
def recorded(path: Path) -> Iterator[Path]:
    """Process accounting into `path` (emptied first) for the duration of the block."""
    path.write_bytes(b"")
    subprocess.run(["accton", str(path)], check=True, capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["accton", "off"], check=True, capture_output=True)


@contextmanager
def recorded_in(directory: Path | None, name: str) -> Iterator[Path | None]:
    """Accounting into DIR/name.pacct around the block when DIR is given (yields its path, else None),
    and 1 s more after it, for what the run left ending (ssh masters, sshd sessions) to be written."""
    if directory is None:
        yield None
        return
    with recorded(directory / f"{name}.pacct") as path:
        yield path
        time.sleep(1.0)


def decoded(value: int) -> int:
    """A comp_t: 13 bits of mantissa, 3 bits of base-8 exponent."""
    return (value & 0x1FFF) << (3 * (value >> 13))


def processes(path: Path) -> Iterator[Process]:
    """Every process of an accounting file, in the order they ended."""
    data = path.read_bytes()
    for offset in range(0, len(data) - RECORD.size + 1, RECORD.size):
        fields = RECORD.unpack_from(data, offset)
        if fields[1] != VERSION_3:
            raise ValueError(f"{path}: not a version 3 accounting record at byte {offset}")
        yield Process(
            command=fields[18].split(b"\0", 1)[0].decode(errors="replace"),
            pid=fields[6],
            ppid=fields[7],
            elapsed=fields[9] / TICKS_PER_SECOND,
            user=decoded(fields[10]) / TICKS_PER_SECOND,
            system=decoded(fields[11]) / TICKS_PER_SECOND,
        )


def by_command(path: Path) -> dict[str, Command]:
    """Processes and CPU seconds per command name, from an accounting file."""
    commands: dict[str, Command] = {}
    for process in processes(path):
        commands.setdefault(process.command, Command()).add(process)
    return commands


def ansible_playbook(path: Path) -> tuple[Process | None, Command]:
    """The run's ansible-playbook process (the Python process that started the most Python processes)
    and its forks, from an accounting file of one run."""
    python = [p for p in processes(path) if p.command.startswith(("ansible-playboo", "python"))]
    children = Counter(process.ppid for process in python)
    main = max(python, key=lambda process: children[process.pid], default=None)
    forks = Command()
    for process in python:
        if main is not None and process.ppid == main.pid:
            forks.add(process)
    return main, forks
