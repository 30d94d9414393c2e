"""A run's session takes the run's niceness (plugins/launcher/opsflow_priority.py)."""

from __future__ import annotations

import errno
import io
from pathlib import Path

from app.execution.runner import LAUNCHER_DIR
from tests.conftest import plugin_module

priority = plugin_module(LAUNCHER_DIR / "opsflow_priority.py", "opsflow_priority")


def test_the_session_takes_the_processs_niceness(tmp_path: Path, monkeypatch) -> None:
    autogroup = tmp_path / "autogroup"
    monkeypatch.setattr(priority.os, "nice", lambda increment: 7)
    assert priority.take_niceness(str(autogroup)) is True
    assert autogroup.read_text() == "7"


def test_a_process_at_niceness_0_leaves_its_session_alone(tmp_path: Path, monkeypatch) -> None:
    autogroup = tmp_path / "autogroup"
    monkeypatch.setattr(priority.os, "nice", lambda increment: 0)
    assert priority.take_niceness(str(autogroup)) is False
    assert not autogroup.exists()


def test_a_change_refused_for_now_is_tried_once_more(monkeypatch) -> None:
    """Without CAP_SYS_ADMIN, Linux allows one change of a session's niceness per 100 ms machine-wide."""
    written, pauses = [], []

    def refusing_once(path: str, mode: str) -> io.StringIO:
        if not pauses:
            raise OSError(errno.EAGAIN, "write could not complete without blocking")
        handle = io.StringIO()
        handle.close = lambda: written.append(handle.getvalue())
        return handle

    monkeypatch.setattr(priority.os, "nice", lambda increment: 10)
    monkeypatch.setattr(priority.time, "sleep", lambda seconds: pauses.append(seconds) if seconds else None)
    monkeypatch.setattr(priority, "open", refusing_once, raising=False)
    assert priority.take_niceness() is True
    assert written == ["10"] and pauses == [priority.RETRY_SECONDS]


def test_where_the_kernel_has_no_sessions_scheduling_nothing_happens(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(priority.os, "nice", lambda increment: 10)
    assert priority.take_niceness(str(tmp_path / "missing" / "autogroup")) is False
