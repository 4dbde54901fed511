"""The testbed's timeline: events of docs/design.md §4 (plus each start's mechanism) as they happen.

Rows are recorded as plain dicts on the wall clock while the backend acts and become the
runner's timeline frame only at the end, so recording costs the loop next to nothing.
"""

from __future__ import annotations

import math

import pandas as pd

from warmserve.metrics.schema import TIMELINE_COLUMNS, conform
from warmserve.testbed.clock import WallClock


class TimelineLog:
    """Timeline rows of one backend."""

    def __init__(self, clock: WallClock) -> None:
        self.clock = clock
        self.rows: list[dict] = []

    def record(self, kind: str, **kw: object) -> None:
        row = {"t_s": self.clock.now(), "kind": kind, "model": None, "instance_id": None, "gpus": None,
               "bytes": 0, "mechanism": None, "start_kind": None, "detail": None}
        row.update(kw)
        if isinstance(row["gpus"], tuple):
            row["gpus"] = ",".join(map(str, row["gpus"]))
        self.rows.append(row)

    def frame(self) -> pd.DataFrame:
        """The rows in the runner's ``TIMELINE_COLUMNS`` (mechanism and detail joined into ``detail``)."""
        rows = []
        for e in self.rows:
            rows.append({"t_s": e["t_s"], "kind": e["kind"], "model": e["model"] or "",
                         "instance_id": -1 if e["instance_id"] is None else e["instance_id"],
                         "gpus": e["gpus"] or "", "bytes": int(e["bytes"] or 0), "blocks": 0,
                         "start_kind": e["start_kind"] or "",
                         "detail": "; ".join(str(x) for x in (e["mechanism"], e["detail"]) if x),
                         "mean": math.nan, "peak": math.nan})
        df = pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))
        return conform(df, TIMELINE_COLUMNS, "testbed timeline")
