"""A seeded synthetic Azure-2024-like week, written in the exact 2024 CSV schema.

The real 2024 week files are not bundled, so the default source is this
generator. It is matched to what *is* bundled (``data/traces``, see ``data/SOURCES.md``):

* request volume: the digitized per-minute envelope of the 2024 week
  (``azure2024_<trace>_per_minute_envelope_digitized.csv``: per ~7.2-minute
  pixel column, the lowest / highest / mid per-minute count). Minute ``m``
  gets rate ``mid + jitter * half_range * U(-1, 1)`` of its column, times
  ``scale``, and a Poisson count with that mean;
* arrivals inside a minute: a block of consecutive real inter-arrival gaps of
  the 2023 trace of the same kind (normalised to mean 1, random start,
  rescaled to fill the minute), which keeps the 2023 trace's sub-minute
  burstiness instead of assuming Poisson arrivals;
* token lengths: inverse-CDF samples of the digitized 2024 ContextTokens /
  GeneratedTokens CDFs of the trace (input and output drawn independently:
  the bundled data has no joint distribution).

The output has the real file's header, starts at the envelope's first
timestamp (conv: Sunday 2024-05-12, code: Friday 2024-05-10, UTC), is sorted,
and writes ``TIMESTAMP`` like the real file: microseconds with a ``+00:00``
offset, and no fraction when it is zero (``2024-05-12 00:00:01+00:00``), so
it exercises the loader's mixed-format parsing. ``scale=1`` reproduces the
real week's size (conv 27.3 M rows, 1.1 GB). Everything made from it is
labelled synthetic.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from warmserve.config import bundled, shown_path
from warmserve.errors import InputError

MINUTE_S = 60.0


def _data_path(rel: str) -> Path:
    p = Path(rel)
    if not p.is_absolute():
        return bundled(p)
    if not p.is_file():
        raise InputError(f"synthetic source: reference file not found: {p}")
    return p


def _per_key(value, trace: str, what: str) -> str:
    if isinstance(value, str):
        return value
    if trace not in value:
        raise InputError(f"source.{what} has no entry for trace '{trace}' (have {list(value)})")
    return str(value[trace])


def load_envelope(path: Path) -> pd.DataFrame:
    env = pd.read_csv(path)
    need = ["utc_start", "start_min", "end_min", "min_req_per_min", "max_req_per_min", "mid_req_per_min"]
    missing = [c for c in need if c not in env.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {missing}")
    return env


def envelope_per_minute(env: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(mid, half-range) request rate per minute of the week, from the column covering each minute."""
    minutes = int(round(float(env["end_min"].iloc[-1])))
    centers = np.arange(minutes) + 0.5
    col = np.clip(np.searchsorted(env["end_min"].to_numpy(), centers, side="right"), 0, len(env) - 1)
    mid = env["mid_req_per_min"].to_numpy(dtype=float)[col]
    half = (env["max_req_per_min"].to_numpy(dtype=float) - env["min_req_per_min"].to_numpy(dtype=float))[col] / 2
    return mid, half


def token_cdf(path: Path, field: str, trace: str) -> tuple[np.ndarray, np.ndarray]:
    """(cdf percent, tokens) of one digitized CDF curve, made monotone."""
    cdf = pd.read_csv(path)
    sel = cdf[(cdf["field"] == field) & (cdf["trace"] == trace)].sort_values("cdf_percent")
    if sel.empty:
        raise InputError(f"{path}: no CDF for field={field} trace={trace}")
    x = sel["cdf_percent"].to_numpy(dtype=float)
    y = np.maximum.accumulate(sel["tokens_at_percent"].to_numpy(dtype=float))
    return x, y


def reference_gaps(path: Path) -> np.ndarray:
    """Inter-arrival gaps of a real (2023) trace, normalised to mean 1."""
    ts = pd.to_datetime(pd.read_csv(path, usecols=["TIMESTAMP"])["TIMESTAMP"], format="ISO8601")
    ns = np.sort(ts.to_numpy(dtype="datetime64[ns]").astype(np.int64))
    gaps = np.diff(ns).astype(np.float64)
    if len(gaps) < 2 or gaps.mean() <= 0:
        raise InputError(f"{path}: too few arrivals for reference gaps")
    return gaps / gaps.mean()


def _arrivals(counts: np.ndarray, gaps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seconds since the week start for ``counts[m]`` arrivals in each minute ``m``."""
    per = counts + 1  # c arrivals split a minute into c+1 gaps
    total = int(per.sum())
    starts = np.cumsum(per) - per
    offsets = rng.integers(0, len(gaps), size=len(counts))
    j = np.arange(total, dtype=np.int64) - np.repeat(starts, per)
    g = gaps[(np.repeat(offsets, per) + j) % len(gaps)]
    # avoid all-zero groups (ties in the reference): a tiny floor keeps positions finite
    g = np.maximum(g, 1e-9)
    cs = np.cumsum(g)
    base = np.repeat(cs[starts] - g[starts], per)
    group_total = np.repeat(np.add.reduceat(g, starts), per)
    pos = (cs - base) / group_total * MINUTE_S
    minute = np.repeat(np.arange(len(counts), dtype=np.float64), per)
    keep = j < np.repeat(counts, per)  # drop the closing gap of each minute
    return minute[keep] * MINUTE_S + pos[keep]


def synthesize(cfg, n_minutes: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """(timestamps as int64 µs since the epoch, ContextTokens, GeneratedTokens, info) for ``cfg``.

    ``cfg`` is the synthetic source config (``configs/source/synthetic.yaml``).
    ``n_minutes`` truncates the week (tests only).
    """
    trace = str(cfg.get("trace", "conv"))
    if trace not in ("conv", "code"):
        raise InputError(f"source.trace must be 'conv' or 'code', got '{trace}'")
    scale = float(cfg.scale)
    if not scale > 0:
        raise InputError(f"source.scale must be > 0, got {scale}")
    rng = np.random.default_rng(int(cfg.seed))
    env_path = _data_path(_per_key(cfg.envelope, trace, "envelope"))
    env = load_envelope(env_path)
    mid, half = envelope_per_minute(env)
    if n_minutes is not None:
        mid, half = mid[:n_minutes], half[:n_minutes]
    jitter = float(cfg.minute_jitter)
    rate = np.maximum(mid + jitter * half * rng.uniform(-1.0, 1.0, size=len(mid)), 0.0) * scale
    counts = rng.poisson(rate).astype(np.int64)
    gaps = reference_gaps(_data_path(_per_key(cfg.iat_reference, trace, "iat_reference")))
    secs = _arrivals(counts, gaps, rng)
    start = pd.Timestamp(env["utc_start"].iloc[0], tz="UTC")
    us = start.value // 1000 + np.round(secs * 1e6).astype(np.int64)
    cdf_path = _data_path(str(cfg.token_cdf))
    n = len(us)
    tokens = []
    for fld in ("ContextTokens", "GeneratedTokens"):
        x, y = token_cdf(cdf_path, fld, trace)
        tokens.append(np.rint(np.interp(rng.uniform(0.0, 100.0, size=n), x, y)).astype(np.int64))
    info = {
        "synthetic": True,
        "trace": trace,
        "seed": int(cfg.seed),
        "scale": scale,
        "rows": int(n),
        "start_utc": str(start),
        "envelope": shown_path(env_path),
        "token_cdf": shown_path(cdf_path),
        "iat_reference": shown_path(_data_path(_per_key(cfg.iat_reference, trace, "iat_reference"))),
    }
    return us, tokens[0], tokens[1], info


def format_timestamps(us: np.ndarray) -> pa.Array:
    """µs since the epoch -> ``YYYY-MM-DD HH:MM:SS[.ffffff]+00:00`` (no fraction when it is zero)."""
    ts = pa.array(us.astype("datetime64[us]"))
    full = pc.cast(ts, pa.string())  # "2024-05-12 00:00:00.001163"
    whole = pc.equal(pc.cast(pa.array(us % 1_000_000), pa.int64()), 0)
    short = pc.utf8_slice_codeunits(full, 0, 19)
    body = pc.if_else(whole, short, full)
    return pc.binary_join_element_wise(body, pa.scalar("+00:00"), "")


def write_azure_csv(path: str | os.PathLike[str], us: np.ndarray, ctx: np.ndarray, gen: np.ndarray) -> None:
    """Write rows in the Azure 2024 CSV schema (header ``TIMESTAMP,ContextTokens,GeneratedTokens``)."""
    table = pa.table(
        {"TIMESTAMP": format_timestamps(us), "ContextTokens": pa.array(ctx), "GeneratedTokens": pa.array(gen)}
    )
    with open(path, "wb") as fh:
        fh.write(b"TIMESTAMP,ContextTokens,GeneratedTokens\n")  # unquoted, like the real file
        pacsv.write_csv(table, fh, write_options=pacsv.WriteOptions(quoting_style="none", include_header=False))


def label(cfg) -> str:
    return (f"synthetic Azure-2024-like {cfg.get('trace', 'conv')} week "
            f"(seed {int(cfg.seed)}, scale {float(cfg.scale):g})")
