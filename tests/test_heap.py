"""Long-lived processes keep what they built at start-up out of the garbage collector's scans."""

from __future__ import annotations

import os
import subprocess
import sys

from app.config import ROOT

REPORT = "import gc, wsgi; print(gc.get_freeze_count(), len(gc.get_objects()))"


def test_the_api_process_starts_with_its_heap_frozen(tmp_path) -> None:
    env = {**os.environ, "OPSFLOW_DATA_DIR": str(tmp_path / "data"), "PYTHONPATH": str(ROOT)}
    env.pop("DATABASE_URL", None)
    out = subprocess.run(
        [sys.executable, "-c", REPORT], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    frozen, walked = map(int, out.stdout.split())
    # The application alone is about 200,000 objects; what a full collection still walks is what was
    # made after the freeze.
    assert frozen > 100_000
    assert walked < 1_000
