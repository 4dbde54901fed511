"""Per-request state of a replay in flat typed arrays (no per-request objects).

At internet scale (~10^7 requests) Python objects per request would cost GBs;
``array.array`` columns cost 8 bytes a value and are fast to index from
Python. They become numpy arrays (zero copy) when the request log is built.
"""

from __future__ import annotations

from array import array

import numpy as np
import pandas as pd

from warmserve.errors import InputError

# status codes
PENDING, OK, FAILED, TIMEOUT = 0, 1, 2, 3
STATUS_NAMES = np.array(["timeout", "ok", "failed", "timeout"], dtype=object)  # pending at the end = timeout


def _filled(typecode: str, n: int, value: float | int) -> array:
    a = array(typecode, [value])
    return a * n


class RequestTable:
    """Workload columns (read-only) plus the twin's per-request results."""

    def __init__(self, workload: pd.DataFrame, model_index: dict[str, int]) -> None:
        n = len(workload)
        for col in ("request_id", "arrival_s", "model", "input_tokens", "output_tokens"):
            if col not in workload.columns:
                raise InputError(f"workload: missing column '{col}'")
        self.n = n
        self.request_id = workload["request_id"].to_numpy(np.int64)
        arrival = workload["arrival_s"].to_numpy(np.float64)
        if n and (np.any(np.diff(arrival) < 0) or not np.all(np.isfinite(arrival))):
            raise InputError("workload.arrival_s: must be finite and sorted ascending")
        codes = workload["model"].map(model_index)
        if codes.isna().any():
            bad = sorted(set(workload.loc[codes.isna(), "model"].astype(str)))
            raise InputError(f"workload.model: {bad} not in the configured models {list(model_index)}")
        self.model_names = list(model_index)
        self.arrival_np = arrival
        self.model_np = codes.to_numpy(np.int64)
        self.inp_np = workload["input_tokens"].to_numpy(np.int64)
        self.out_np = workload["output_tokens"].to_numpy(np.int64)
        if n and (self.inp_np.min() < 1 or self.out_np.min() < 1):
            raise InputError("workload.input_tokens/output_tokens: must be >= 1")
        # Python-indexable copies for the hot loop
        self.arrival = array("d", arrival.tobytes())
        self.model = array("q", self.model_np.tobytes())
        self.inp = array("q", self.inp_np.tobytes())
        self.out = array("q", self.out_np.tobytes())
        self.ids = array("q", self.request_id.tobytes())  # Python ints without numpy scalar boxing
        ids_are_rows = n == 0 or bool(np.array_equal(self.request_id, np.arange(n)))
        self.ids_are_rows = ids_are_rows  # request_id == row: no lookup on dispatch
        self._row_of: dict[int, int] | None = None if ids_are_rows else {
            int(r): i for i, r in enumerate(self.request_id)}
        if self._row_of is not None and len(self._row_of) != n:
            raise InputError("workload.request_id: duplicate ids")
        nan = float("nan")
        self.instance = _filled("q", n, -1)
        self.first = _filled("d", n, nan)
        self.finish = _filled("d", n, nan)
        self.prefill = _filled("d", n, nan)
        self.status = _filled("b", n, PENDING)
        self.gen = _filled("q", n, 0)  # tokens generated as of admit_step
        self.admit_step = _filled("q", n, 0)
        self.epoch = _filled("q", n, 0)  # bumped on preemption: invalidates heap entries

    def row(self, request_id: int) -> int:
        return request_id if self._row_of is None else self._row_of[request_id]
