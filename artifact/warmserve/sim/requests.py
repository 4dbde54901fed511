"""Per-request state of a replay in flat typed arrays (no per-request objects).

At internet scale (~10^7 requests) Python objects per request would cost GBs;
``array.array`` columns cost 1-8 bytes a value and are fast to index from
Python; numpy views of them (zero copy) serve the vectorised outputs.
Counters that stay far below 2^31 (token counts, instance ids, decode steps
of one instance, preemption epochs) are 32-bit: overflow would raise, never
wrap.
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


def _int32(a: np.ndarray, what: str) -> np.ndarray:
    if len(a) and a.max() > np.iinfo(np.int32).max:
        raise InputError(f"workload.{what}: values above 2^31 tokens")
    return a.astype(np.int32)


class RequestTable:
    """Workload columns (read-only) plus the twin's per-request results."""

    def __init__(self, workload: pd.DataFrame, model_index: dict[str, int]) -> None:
        n = len(workload)
        for col in ("request_id", "arrival_s", "model", "input_tokens", "output_tokens"):
            if col not in workload.columns:
                raise InputError(f"workload: missing column '{col}'")
        self.n = n
        request_id = workload["request_id"].to_numpy(np.int64)
        arrival = workload["arrival_s"].to_numpy(np.float64)
        if n and (np.any(np.diff(arrival) < 0) or not np.all(np.isfinite(arrival))):
            raise InputError("workload.arrival_s: must be finite and sorted ascending")
        codes = workload["model"].map(model_index)
        if codes.isna().any():
            bad = sorted(set(workload.loc[codes.isna(), "model"].astype(str)))
            raise InputError(f"workload.model: {bad} not in the configured models {list(model_index)}")
        self.model_names = list(model_index)
        inp = workload["input_tokens"].to_numpy(np.int64)
        out = workload["output_tokens"].to_numpy(np.int64)
        if n and (inp.min() < 1 or out.min() < 1):
            raise InputError("workload.input_tokens/output_tokens: must be >= 1")
        # Python-indexable columns for the hot loop; the ``*_np`` names are zero-copy numpy views
        # of them (one copy per column: ~70 B a request in all, ~0.7 GB at 10^7 requests)
        self.ids = array("q", request_id.tobytes())  # Python ints without numpy scalar boxing
        self.arrival = array("d", arrival.tobytes())
        self.model = array("i", codes.to_numpy(np.int32).tobytes())
        self.inp = array("i", _int32(inp, "input_tokens").tobytes())
        self.out = array("i", _int32(out, "output_tokens").tobytes())
        self.request_id = np.frombuffer(self.ids, dtype=np.int64)
        self.arrival_np = np.frombuffer(self.arrival, dtype=np.float64)
        self.model_np = np.frombuffer(self.model, dtype=np.int32)
        self.inp_np = np.frombuffer(self.inp, dtype=np.int32)
        self.out_np = np.frombuffer(self.out, dtype=np.int32)
        ids_are_rows = n == 0 or bool(np.array_equal(request_id, np.arange(n)))
        self.ids_are_rows = ids_are_rows  # request_id == row: no lookup on dispatch
        self._row_of: dict[int, int] | None = None if ids_are_rows else {
            int(r): i for i, r in enumerate(request_id)}
        if self._row_of is not None and len(self._row_of) != n:
            raise InputError("workload.request_id: duplicate ids")
        nan = float("nan")
        self.instance = _filled("i", n, -1)
        self.first = _filled("d", n, nan)
        self.finish = _filled("d", n, nan)
        self.prefill = _filled("d", n, nan)
        self.status = _filled("b", n, PENDING)
        self.gen = _filled("i", n, 0)  # tokens generated as of admit_step
        self.admit_step = _filled("i", n, 0)  # the instance's decode step counter at admission
        self.epoch = _filled("i", n, 0)  # bumped on preemption: invalidates heap entries

    def row(self, request_id: int) -> int:
        return request_id if self._row_of is None else self._row_of[request_id]
