"""The testbed's timeline: events of docs/design.md §4 (plus each start's mechanism) as they happen.

Rows are recorded as plain dicts on the wall clock while the backend acts (they carry each start's
mechanism beside its detail) and become the runner's timeline frame only at the end, so recording costs
the loop next to nothing; the frame's rows are made by the one ``metrics.schema.timeline_row``, as the
twin's are.
"""

from __future__ import annotations

import pandas as pd

from warmserve.metrics.schema import TIMELINE_COLUMNS, conform, timeline_row
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
        rows = [timeline_row(e["t_s"], e["kind"], e["model"] or "",
                             -1 if e["instance_id"] is None else e["instance_id"],
                             e["gpus"] or "", int(e["bytes"] or 0), 0, e["start_kind"] or "",
                             "; ".join(str(x) for x in (e["mechanism"], e["detail"]) if x))
                for e in self.rows]
        df = pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS))
        return conform(df, TIMELINE_COLUMNS, "testbed timeline")
