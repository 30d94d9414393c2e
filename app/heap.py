"""The heap of a long-lived process: what it built while starting is kept out of the collector's way.

A full collection walks every tracked object, and an API process holds about 200,000 once its
application is built (models, schemas, SQLAlchemy's caches): on a slow core that walk took 200 ms of
CPU with the GIL held, a stall every request in flight in the process waited for. Frozen objects are
never walked again, and a process forked afterwards (a work horse) does not copy the pages holding
them when a collection of its own would have touched them.
"""

from __future__ import annotations

import gc


def freeze() -> None:
    """Collect what start-up left as garbage, then keep everything still alive out of later collections."""
    gc.collect()
    gc.freeze()
