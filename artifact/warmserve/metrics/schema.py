"""Column contracts of a run's output files (docs/design.md §4).

Both backends produce DataFrames with exactly these columns; ``conform``
checks and orders them so a run's files are identical in layout whichever
backend made them.

Conventions
-----------
* ``gpus`` is a string of sorted global GPU indices joined by ``","``
  (``"4,5"``), empty when there is none (a request that never reached an
  instance). A string keeps the parquet flat and groupable.
* ``instance_id`` is ``-1`` when there is none.
* Times are seconds from the replay start; missing times are NaN.
* Request ``status`` is ``ok|failed|timeout``; ``start_kind`` is
  ``warm|prewarmed|worker|cold`` (``warmserve.control.seam.StartKind``) or
  empty for a request that never reached an instance.
* ``ttft_s == queue_s + load_s + init_s + prefill_s`` holds exactly (``ttft_s``
  is computed as that sum) for every row that has a first token.
* ``tpot_s = (finish_s - first_token_s) / (output_tokens - 1)``; NaN when
  ``output_tokens <= 1`` (the published client wrote -1) or unfinished.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from warmserve.workload.schema import REQUEST_COLUMNS as WORKLOAD_COLUMNS

# docs/design.md §4, request log: the workload's columns, then what the run measured.
REQUEST_COLUMNS: dict[str, str] = {
    **WORKLOAD_COLUMNS,
    "system": "str",
    "instance_id": "int64",
    "gpus": "str",
    "first_token_s": "float64",
    "finish_s": "float64",
    "ttft_s": "float64",
    "tpot_s": "float64",
    "status": "str",
    "start_kind": "str",
    "queue_s": "float64",
    "load_s": "float64",
    "init_s": "float64",
    "prefill_s": "float64",
}

TIMELINE_KINDS = (
    "instance_start",  # start_kind says how; bytes = weights per GPU
    "instance_ready",
    "instance_stopping",
    "instance_stop",
    "prewarm_start",  # bytes = per GPU
    "prewarm_done",
    "evict",  # a replica (loaded or loading) dropped; detail says why
    "claim",  # a replica adopted by an instance start (memory switching)
    "load_start",  # a weight load began; detail = source (nvme|host_cache), bytes = whole load
    "load_done",
    "load_cancel",  # bytes = transferred before cancel
    "kv_reserve",  # blocks = blocks now lent to prewarming
    "preempt",  # a sequence preempted by recomputation (blocks = its KV blocks)
    "forecast",  # mean/peak = the policy's forecast for the next window
)

TIMELINE_COLUMNS: dict[str, str] = {
    "t_s": "float64",
    "kind": "str",
    "model": "str",
    "instance_id": "int64",
    "gpus": "str",
    "bytes": "int64",
    "blocks": "int64",
    "start_kind": "str",
    "detail": "str",
    "mean": "float64",
    "peak": "float64",
}

UTILIZATION_COLUMNS: dict[str, str] = {
    "t_s": "float64",  # interval start
    "gpu": "int64",
    "node": "int64",
    "busy": "float64",  # fraction of the interval some instance on the GPU was computing
    "weights_bytes": "int64",  # weights of running instances (sampled at interval start)
    "kv_bytes": "int64",  # KV of running instances, net of blocks lent to prewarming
    "prewarm_bytes": "int64",  # prewarmed replicas (loaded or loading)
}


def _as_category(s: pd.Series) -> pd.Categorical:
    """String columns are stored as categoricals (dictionary-encoded in parquet): 10^7-row logs
    stay small, and ``df.model == "x"`` or ``groupby`` work as on plain strings."""
    if not isinstance(s.dtype, pd.CategoricalDtype):
        s = pd.Series(pd.Categorical(s.astype(object).where(s.notna(), "")), index=s.index)
    cats = [str(c) for c in s.cat.categories]
    c = pd.Categorical(s, categories=s.cat.categories).rename_categories(cats)
    if c.isna().any():
        if "" not in cats:
            c = c.add_categories([""])
        c = c.fillna("")
    return c


def labels_categorical(labels: list[str] | np.ndarray, idx: np.ndarray) -> pd.Categorical:
    """``labels[idx]`` as a categorical, built from integer codes (no per-row Python strings).

    Categories are the sorted distinct labels that occur -- exactly what
    ``pd.Categorical(labels[idx])`` (and so ``metrics.schema.conform``) would
    make -- but in O(rows) integer work, which matters for 10^7-row logs.
    ``labels`` may repeat a label.
    """
    labels = np.asarray(labels, dtype=object)
    used = np.bincount(idx, minlength=len(labels)) > 0 if len(idx) else np.zeros(len(labels), dtype=bool)
    cats = sorted({str(labels[i]) for i in np.flatnonzero(used)})
    code_of = {c: j for j, c in enumerate(cats)}
    remap = np.array([code_of.get(str(lab), -1) for lab in labels], dtype=np.int32)
    codes = remap[idx]
    return pd.Categorical.from_codes(codes.astype(np.int8 if len(cats) < 127 else np.int32), categories=cats)


def constant_categorical(value: str, n: int) -> pd.Categorical:
    """A column holding ``value`` in every one of ``n`` rows, as a one-category categorical."""
    return pd.Categorical.from_codes(np.zeros(n, dtype=np.int8), categories=[value] if n else [])


def gpus_str(gpus: tuple[int, ...] | list[int] | None) -> str:
    return "" if not gpus else ",".join(str(g) for g in gpus)


TimelineRow = tuple[float, str, str, int, str, int, int, str, str, float, float]
"""One timeline row, its fields in ``TIMELINE_COLUMNS`` order."""


def timeline_row(t_s: float, kind: str, model: str = "", instance_id: int = -1, gpus: str = "", nbytes: int = 0,
                 blocks: int = 0, start_kind: str = "", detail: str = "", mean: float = math.nan,
                 peak: float = math.nan) -> TimelineRow:
    """The one constructor of a timeline row (the twin's events, the testbed's, the runner's forecasts), so
    the row shape is written once; the defaults are the schema's "not applicable" values, not settings."""
    return (t_s, kind, model, instance_id, gpus, nbytes, blocks, start_kind, detail, mean, peak)


def empty(columns: dict[str, str]) -> pd.DataFrame:
    return conform(pd.DataFrame({c: [] for c in columns}), columns, "empty")


def conform(df: pd.DataFrame, columns: dict[str, str], what: str) -> pd.DataFrame:
    """Return ``df`` with exactly ``columns`` in order and dtype; missing ones are a bug."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {missing}")
    out = {}
    for col, dtype in columns.items():
        s = df[col]
        if dtype == "str":
            out[col] = _as_category(s)
        else:
            out[col] = s.to_numpy(dtype=np.dtype(dtype), copy=False)
    return pd.DataFrame(out, copy=False)  # columns already of the right dtype are shared, not copied
