"""The paper's experiments as Hydra multirun presets plus a small driver (``python -m warmserve.experiments``).

Shared here: how durations are printed and the wall-time log ``results/.timings.json`` that both
the driver (per experiment) and the reproduction (per step) append to and read ETAs from.
"""

from __future__ import annotations

import json

from warmserve.config import REPO_ROOT

TIMINGS = REPO_ROOT / "results" / ".timings.json"


def fmt_duration(seconds: float) -> str:
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def read_timings() -> dict[str, float]:
    return json.loads(TIMINGS.read_text()) if TIMINGS.is_file() else {}


def record_timing(key: str, seconds: float) -> None:
    """Add one measured wall time; re-reads the file so concurrent writers' keys are kept."""
    TIMINGS.parent.mkdir(parents=True, exist_ok=True)
    doc = read_timings()
    doc[key] = round(seconds, 1)
    TIMINGS.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
