"""Something done every few seconds on a thread of its own while a block of work runs: the heartbeats
that say a slice, or a flow engine busy with one advance, is still alive."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def every(seconds: float, action: Callable[[], None], name: str) -> Iterator[None]:
    """Call `action` every `seconds` until the block ends; `action` handles its own failures. Once the
    block has ended, no call is left running."""
    stop = threading.Event()

    def repeat() -> None:
        while not stop.wait(seconds):
            action()

    thread = threading.Thread(target=repeat, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
