"""What makes a run directory finished, and the record a failed sweep point leaves in its place.

``is_finished(run_dir)`` is the one test every resume check uses
(``python -m warmserve.run``, the experiment driver, ``analysis.results``):
every file of ``RUN_FILES`` is present and non-empty, ``summary.json`` and
``run.json`` parse as JSON objects, and every file ``run.json`` lists under
``outputs`` (``trace.json`` when it was asked for) is present. Run
directories are published whole (``warmserve.atomic``), so a directory that
fails this test was left by an older writer or by hand, and is rerun.

``FAILED`` is the small JSON record a sweep point that failed leaves where
its run directory would be (error line, time); the next attempt replaces it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

RUN_FILES = ("requests.parquet", "timeline.parquet", "utilization.parquet", "run.json", "summary.json")
FAILED = "FAILED.json"


def _json_object(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return doc if isinstance(doc, dict) else None


def is_finished(run_dir: str | Path) -> bool:
    """True only for a complete run directory (see the module doc)."""
    d = Path(run_dir)
    if not d.is_dir():
        return False
    for name in RUN_FILES:
        f = d / name
        if not f.is_file() or f.stat().st_size == 0:
            return False
    if _json_object(d / "summary.json") is None:
        return False
    run = _json_object(d / "run.json")
    if run is None:
        return False
    return all((d / str(name)).is_file() for name in run.get("outputs", []))


def is_run_output(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` holds only what a run (or a failed run) writes, so it may be replaced."""
    names = {p.name for p in Path(run_dir).iterdir()}
    return bool(names) and names <= {*RUN_FILES, "trace.json", FAILED}


def failure_record(error: str, **extra: Any) -> dict[str, Any]:
    """The document of ``FAILED.json``."""
    return {"error": error, "failed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **extra}
