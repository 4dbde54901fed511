"""Writing a run directory: the files of docs/design.md §4, deterministically (same inputs -> same bytes).

``requests.parquet``, ``timeline.parquet``, ``utilization.parquet`` (pyarrow,
zstd, no index), ``run.json`` and ``summary.json`` (sorted keys, NaN as null)
and ``trace.json`` (Chrome trace events). Call inside
``warmserve.atomic.atomic_output_dir`` so a failed run leaves nothing.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from warmserve.metrics.schema import REQUEST_COLUMNS, TIMELINE_COLUMNS, UTILIZATION_COLUMNS, conform
from warmserve.metrics.trace import chrome_trace, write_chrome_trace


def _clean(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "item"):  # numpy scalars
        return _clean(x.item())
    return x


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.write_text(json.dumps(_clean(doc), indent=2, sort_keys=True, allow_nan=False) + "\n")


PARQUET_CHUNK_ROWS = 1_000_000  # rows converted to Arrow at a time (bounds the extra memory of a 10^7-row log)


def write_parquet(path: Path, df: pd.DataFrame, chunk_rows: int = PARQUET_CHUNK_ROWS) -> None:
    """zstd parquet, no index; dictionary encoding only for the string (categorical) columns.

    Float columns of a request log are nearly all distinct, so trying to
    dictionary-encode them only costs time (~25 % of the write). Large frames
    are written as row groups of ``chunk_rows`` so that Arrow never holds a
    second full copy of a 10^7-row log. Deterministic: same frame, same bytes.
    """
    cats = [str(c) for c in df.columns if isinstance(df[c].dtype, pd.CategoricalDtype)]
    opts: dict[str, Any] = {"compression": "zstd", "use_dictionary": cats if cats else False}
    if len(df) <= chunk_rows:
        df.to_parquet(path, index=False, engine="pyarrow", **opts)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    first = pa.Table.from_pandas(df.iloc[:chunk_rows], preserve_index=False)
    with pq.ParquetWriter(path, first.schema, **opts) as writer:
        writer.write_table(first)
        del first
        for a in range(chunk_rows, len(df), chunk_rows):
            writer.write_table(pa.Table.from_pandas(df.iloc[a:a + chunk_rows], preserve_index=False))


def write_run(stage: Path, *, requests: pd.DataFrame, timeline: pd.DataFrame, utilization: pd.DataFrame,
              run: dict[str, Any], summary: dict[str, Any], gpus_per_node: int, end_s: float,
              trace: bool = True) -> None:
    write_parquet(stage / "requests.parquet", conform(requests, REQUEST_COLUMNS, "request log"))
    write_parquet(stage / "timeline.parquet", conform(timeline, TIMELINE_COLUMNS, "timeline"))
    write_parquet(stage / "utilization.parquet", conform(utilization, UTILIZATION_COLUMNS, "utilization"))
    outputs = ["requests.parquet", "timeline.parquet", "utilization.parquet", "run.json", "summary.json"]
    # run.json lists what the run wrote, so a resume check (warmserve.rundir.is_finished) can see a missing file
    write_json(stage / "run.json", {**run, "outputs": outputs + (["trace.json"] if trace else [])})
    write_json(stage / "summary.json", summary)
    if trace:
        write_chrome_trace(stage / "trace.json", chrome_trace(timeline, gpus_per_node, end_s,
                                                              title=str(run.get("name", ""))))
