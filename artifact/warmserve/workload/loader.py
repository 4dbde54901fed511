"""Loading an Azure LLM inference trace 2024 week CSV (``TIMESTAMP, ContextTokens, GeneratedTokens``).

What the published generator does (docs/reference.md §2.2) and what we do instead:

* Timestamps. The 2024 files mix ``2024-05-12 00:00:00.001163+00:00`` and,
  when the fraction is zero, ``2024-05-12 00:00:01+00:00``. The published
  code coerces with the pandas of its day and drops NaN rows silently, which
  can lose rows depending on the pandas version. We parse every ISO-8601
  variant (with or without fraction, with or without a UTC offset, up to
  nanoseconds) with Arrow's parser, fall back to pandas' ISO-8601 coercion
  only if Arrow rejects a value, and *count* the rows that still cannot be
  parsed; more than ``max_unparseable`` of them is an error.
* Week re-basing. ``t`` is seconds since the first row (as published, so the
  floats equal the published ones). The published code then subtracts one day
  for conv and three for code, choosing by the substring "conv" in the file
  name; we derive the shift from the first timestamp's weekday
  (``(7 - weekday) % 7`` days, Sunday -> 1, Friday -> 3, Monday -> 0), so a
  renamed file or another week works. Negative values wrap by one week, and
  rows are sorted by ``t`` with a *stable* sort (ties keep file order; the
  published ``sort_values`` default is not stable, see ``recipe``).
* ``day_origin``: ``first_row`` (published) measures days from the first
  row's time of day; ``midnight`` from 00:00 of the first row's date (the two
  differ by the first row's offset from midnight, ~1 ms in the real files).
"""

from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from omegaconf import OmegaConf

from warmserve.config import configs_dir
from warmserve.errors import InputError
from warmserve.workload.schema import AZURE_COLUMNS

DAY_S = 86400.0
WEEK_S = 7 * DAY_S


@functools.cache
def token_limit() -> int:
    """``token_limit`` of ``configs/workload/_defaults.yaml`` (why that bound: see the comment there)."""
    return int(OmegaConf.load(configs_dir() / "workload" / "_defaults.yaml").token_limit)


def check_tokens(values: np.ndarray, path: Path | str, column: str) -> np.ndarray:
    """``values`` as int64 after checking them *as numbers*: finite, whole, >= 0 and <= ``token_limit``.

    Converting first would wrap 1e20 to a negative int64, truncate 12.7 to 12 and turn inf into a
    huge negative; the error names the file, the column and the first bad row (1 = first data row).
    """
    v = np.asarray(values)
    if v.dtype.kind in "iu":
        bad = (v < 0) | (v > token_limit())
    else:
        v = v.astype(np.float64, copy=False)
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(v) | (v < 0) | (v > token_limit()) | (v != np.floor(v))
    if bad.any():
        i = int(np.argmax(bad))
        x = v[i].item()  # a Python number, so the message shows -5, not np.int64(-5)
        why = ("empty/NaN/non-numeric" if x != x else "not finite" if not np.isfinite(x) else "negative" if x < 0
               else f"above token_limit={token_limit()} (configs/workload/_defaults.yaml)" if x > token_limit()
               else "not a whole number")
        raise InputError(f"{path}: column '{column}' row {i + 1}: {why} ({x!r}); {int(bad.sum())} bad value(s)")
    return v.astype(np.int64, copy=False)


def check_arrivals(values: np.ndarray, path: Path | str, column: str) -> np.ndarray:
    """Arrival times as float64, each finite and >= 0 (an inf row would otherwise vanish silently)."""
    v = np.asarray(values, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(v) | (v < 0)
    if bad.any():
        i = int(np.argmax(bad))
        x = v[i].item()
        why = "empty/NaN/non-numeric" if x != x else "not finite" if not np.isfinite(x) else "negative"
        raise InputError(f"{path}: column '{column}' row {i + 1}: {why} ({x!r}); {int(bad.sum())} bad value(s)")
    return v


@dataclass(slots=True)
class Trace:
    """A source trace after parsing and re-basing: ``frame`` has TRACE_COLUMNS, sorted by ``t_s``."""

    frame: pd.DataFrame
    info: dict = field(default_factory=dict)

    @property
    def days_present(self) -> int:
        t = self.frame["t_s"].to_numpy()
        return int(t.max() // DAY_S) + 1 if len(t) else 0


_NS_MISSING = np.iinfo(np.int64).min


def _header(path: Path) -> list[str]:
    with path.open("rb") as fh:
        return fh.readline().decode("utf-8", "replace").strip().split(",")


def _read_fast(path: Path, ts_type: pa.DataType) -> pa.Table:
    """Arrow parses timestamps and integers natively (multi-threaded); raises ArrowInvalid on any odd cell."""
    return pacsv.read_csv(
        path,
        convert_options=pacsv.ConvertOptions(
            column_types={"TIMESTAMP": ts_type, "ContextTokens": pa.int64(), "GeneratedTokens": pa.int64()},
            include_columns=list(AZURE_COLUMNS),
        ),
    )


def _read_slow(path: Path) -> tuple[np.ndarray, int, pa.Table]:
    """Strings + per-value ISO-8601 coercion: used only when the fast path rejects a file."""
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types={"TIMESTAMP": pa.string(), "ContextTokens": pa.float64(), "GeneratedTokens": pa.float64()},
                include_columns=list(AZURE_COLUMNS),
            ),
        )
    except pa.ArrowInvalid as exc:
        msg = str(exc).splitlines()[0]
        m = re.search(r"CSV column #(\d+)", msg)
        header = _header(path)
        if m and int(m.group(1)) < len(header):
            raise InputError(f"{path}: column '{header[int(m.group(1))]}' is not numeric ({msg})") from None
        raise InputError(f"{path}: cannot read as CSV ({msg})") from None
    ns, bad = parse_timestamps(table.column("TIMESTAMP"))
    return ns, bad, table.drop_columns(["TIMESTAMP"])


def parse_timestamps(strings: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """ISO-8601 strings (mixed offsets/fractions allowed) -> int64 ns since the epoch, UTC for naive values.

    Unparseable values become a sentinel; returns (ns, number unparseable).
    """
    parsed = pd.to_datetime(pd.Series(strings.to_pandas()), format="ISO8601", errors="coerce", utc=True)
    bad = parsed.isna().to_numpy()
    ns = parsed.dt.as_unit("ns").to_numpy(dtype="datetime64[ns]").astype(np.int64)
    ns[bad] = _NS_MISSING
    return ns, int(bad.sum())


def rebase(ns: np.ndarray, day_origin: str = "first_row") -> tuple[np.ndarray, dict]:
    """Seconds since the first row (or its midnight), shifted so day 0 is Monday, negatives wrapped.

    ``t = (ns - ns[0]) / 1e9`` is one correctly rounded division per row, the
    value pandas 2.x ``total_seconds()`` (the published code's) returns; pandas
    3.1 splits whole and fractional seconds and can differ in the last ulp.
    """
    first = pd.Timestamp(int(ns[0]), unit="ns", tz="UTC")
    shift_days = (7 - first.weekday()) % 7
    t = (ns - ns[0]).astype(np.float64) / 1e9
    if day_origin == "midnight":
        t += (first - first.normalize()).total_seconds()
    elif day_origin != "first_row":
        raise InputError(f"source.day_origin must be 'first_row' or 'midnight', got '{day_origin}'")
    t -= shift_days * DAY_S
    wrapped = t < 0
    t[wrapped] += WEEK_S
    info = {
        "rows_wrapped": int(wrapped.sum()),
        "first_timestamp": str(first),
        "first_weekday": first.day_name(),
        "weekday_shift_days": shift_days,
        "day_origin": day_origin,
    }
    return t, info


def read_azure_rows(path: str | os.PathLike[str],
                    max_unparseable: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(ns timestamps, ContextTokens, GeneratedTokens, counts) of an Azure-schema CSV, sorted by time (stable)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"trace file not found: {path}")
    header = _header(path)
    missing = [c for c in AZURE_COLUMNS if c not in header]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}; header is {header}")
    table = None
    for ts_type in (pa.timestamp("ns", tz="UTC"), pa.timestamp("ns")):
        try:
            table = _read_fast(path, ts_type)
            break
        except pa.ArrowInvalid:
            continue
    if table is not None:
        ns = table.column("TIMESTAMP").cast(pa.int64()).to_numpy()
        n_bad_ts = 0
        table = table.drop_columns(["TIMESTAMP"])
    else:
        ns, n_bad_ts, table = _read_slow(path)
    n_read = table.num_rows
    if n_read == 0:
        raise InputError(f"{path}: no data rows")
    if n_bad_ts > max_unparseable:
        first_bad = int(np.argmax(ns == _NS_MISSING)) + 1
        raise InputError(
            f"{path}: column 'TIMESTAMP' row {first_bad}: cannot be parsed; {n_bad_ts} of {n_read} such rows "
            f"(allowed: source.max_unparseable={max_unparseable})"
        )
    tokens = {}
    for name in ("ContextTokens", "GeneratedTokens"):
        col = table.column(name)
        if col.null_count:
            raise InputError(f"{path}: column '{name}' has {col.null_count} empty/NaN value(s)")
        tokens[name] = check_tokens(col.to_numpy(), path, name)
    del table
    ctx, gen = tokens["ContextTokens"], tokens["GeneratedTokens"]
    if n_bad_ts:
        keep = ns != _NS_MISSING
        ns, ctx, gen = ns[keep], ctx[keep], gen[keep]
    if len(ns) == 0:
        raise InputError(f"{path}: no parseable rows")
    unsorted_rows = 0
    if not np.all(ns[1:] >= ns[:-1]):
        order = np.argsort(ns, kind="stable")
        unsorted_rows = int((order != np.arange(len(order))).sum())
        ns, ctx, gen = ns[order], ctx[order], gen[order]
    counts = {
        "path": str(path),
        "rows_read": int(n_read),
        "rows_unparseable_timestamp": int(n_bad_ts),
        "rows_kept": int(len(ns)),
        "rows_out_of_order_in_file": unsorted_rows,
    }
    return ns, ctx, gen, counts


def load_azure_csv(path: str | os.PathLike[str], max_unparseable: int = 0, day_origin: str = "first_row") -> Trace:
    """Read a 2024-format week CSV into a ``Trace`` (see the module doc for what differs from the published code)."""
    ns, ctx, gen, counts = read_azure_rows(path, max_unparseable)
    t, info = rebase(ns, day_origin)
    del ns
    if not np.all(t[1:] >= t[:-1]):
        # the wrapped rows are a prefix of the time-sorted file; moving them to the end is the
        # stable sort unless the file is longer than a week (then sort for real)
        k = info["rows_wrapped"]
        t, ctx, gen = (np.concatenate([a[k:], a[:k]]) for a in (t, ctx, gen))
        if not np.all(t[1:] >= t[:-1]):
            t, ctx, gen = (np.concatenate([a[-k:], a[:-k]]) for a in (t, ctx, gen))
            order = np.argsort(t, kind="stable")
            t, ctx, gen = t[order], ctx[order], gen[order]
            del order
    frame = pd.DataFrame({"t_s": t, "input_tokens": ctx, "output_tokens": gen}, copy=False)
    info.update(counts)
    return Trace(frame=frame, info=info)
