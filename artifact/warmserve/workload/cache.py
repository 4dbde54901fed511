"""On-disk cache of prepared source weeks, so every run after the first builds its workload in ~1 s.

A week source (a real 2024 CSV, the synthetic week, a ServeGen week) is
parsed once; what the recipe and the priors need from it is kept under
``.cache/warmserve/week-<key>/`` (git-ignored; ``WARMSERVE_CACHE`` moves it):

``info.json``       loader counts and labels (written last: marks the entry complete);
``hours.parquet``   the first hour of every day (``day, t_s`` day-relative, raw tokens),
                    exactly the rows and floats the recipe samples from;
``trace.parquet``   the whole re-based week (to compute load for new service constants);
``load-<window>-<prefill>-<decode>.parquet``  raw (unscaled) per-window mean/peak in flight.

``info.json`` also records the byte size of ``trace.parquet`` and
``hours.parquet``; an entry whose files are missing, of another size or
unreadable (a killed writer, a full disk, a hand edit) is rebuilt with a
one-line notice on stderr. A cache directory that cannot be written is named
in a one-line notice and the week is built without a cache.

``key`` hashes everything that determines the content (the source parameters
and the identity of input files: path, size, mtime), plus ``CACHE_VERSION``;
bump it when the loader or generator changes what they produce. Entries are
written through temporary files and ``os.replace``, so concurrent runs that
race to fill the same entry both end with a complete, identical entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from warmserve.config import REPO_ROOT
from warmserve.workload.history import inflight_load
from warmserve.workload.loader import DAY_S, Trace
from warmserve.workload.recipe import first_hour

CACHE_VERSION = 3  # 3: info.json records file sizes
SIZED = ("trace.parquet", "hours.parquet")  # files whose size info.json records


def notice(msg: str) -> None:
    """One line on stderr: the cache is a speed-up, so its problems are notices, not errors."""
    print(f"notice: {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("WARMSERVE_CACHE", REPO_ROOT / ".cache" / "warmserve"))


def file_identity(path: str | os.PathLike[str]) -> dict:
    p = Path(path).resolve()
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def key_of(obj: dict) -> str:
    blob = json.dumps({"v": CACHE_VERSION, **obj}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


_UNCHECKED = object()  # WeekStore._verdict before the entry was checked


class WeekStore:
    """A cached week source: first-hour slices, per-window load, and loader info."""

    def __init__(self, key: str, make_trace: Callable[[], Trace], use_cache: bool = True) -> None:
        self.dir = cache_root() / f"week-{key}"
        self._make = make_trace
        self._use_cache = use_cache
        self._trace: Trace | None = None
        self._hours: pd.DataFrame | None = None
        self._info: dict | None = None
        self._verdict: object = _UNCHECKED

    # -- checking -----------------------------------------------------------
    def _valid_info(self) -> dict | None:
        """The entry's info.json if the entry is complete and its files have the recorded sizes
        (decided once per store, so a damaged entry is reported once)."""
        if self._verdict is not _UNCHECKED:
            return cast("dict | None", self._verdict)  # no longer the sentinel: what the check found
        self._verdict = None
        info_path = self.dir / "info.json"
        if not (self._use_cache and info_path.is_file()):
            return None
        try:
            info = json.loads(info_path.read_text())
            sizes = info["cache_files"]
            ok = all((self.dir / f).stat().st_size == int(sizes[f]) for f in SIZED)
        except (OSError, ValueError, KeyError, TypeError):
            ok, info = False, None
        if not ok:
            notice(f"workload cache entry {self.dir} is incomplete or corrupt; rebuilding it")
            return None
        self._verdict = info
        return info

    def _disable(self, exc: OSError) -> None:
        notice(f"workload cache {self.dir.parent} is not writable ({exc.strerror or exc}); building without a cache")
        self._use_cache = False

    # -- filling ------------------------------------------------------------
    def _trace_now(self) -> Trace:
        if self._trace is None:
            info = self._valid_info()
            if info is not None:
                try:
                    frame = pd.read_parquet(self.dir / "trace.parquet")
                    frame = frame.astype({"input_tokens": np.int64, "output_tokens": np.int64})
                    self._trace = Trace(frame=frame, info=info)
                except Exception:  # pyarrow raises several types for a damaged file
                    notice(f"workload cache entry {self.dir} has an unreadable trace.parquet; rebuilding it")
                    self._verdict = None
            if self._trace is None:
                self._trace = self._make()
        return self._trace

    def _ensure(self) -> None:
        if self._info is not None:
            return
        info_path = self.dir / "info.json"
        valid = self._valid_info()
        if valid is not None:
            try:
                self._hours = pd.read_parquet(self.dir / "hours.parquet")
                self._info = valid
                return
            except Exception:  # pyarrow raises several types for a damaged file
                notice(f"workload cache entry {self.dir} has an unreadable hours.parquet; rebuilding it")
                self._verdict = None
        trace = self._trace_now()
        t = trace.frame["t_s"].to_numpy()
        info = dict(trace.info)
        info["days_present"] = trace.days_present
        info["days_with_rows"] = sorted({int(d) for d in np.unique(np.floor(t / DAY_S))}) if len(t) else []
        info["t_max_s"] = float(t[-1]) if len(t) else 0.0
        parts = []
        for day in range(max(trace.days_present, 0)):
            idx, rel = first_hour(t, day)
            sel = trace.frame.iloc[idx]
            parts.append(
                pd.DataFrame(
                    {
                        "day": np.full(len(idx), day, np.int64),
                        "t_s": rel,
                        "input_tokens": sel["input_tokens"].to_numpy(),
                        "output_tokens": sel["output_tokens"].to_numpy(),
                    }
                )
            )
        self._hours = hours = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
            {"day": [], "t_s": [], "input_tokens": [], "output_tokens": []}
        )
        self._info = info
        if self._use_cache:
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                small = trace.frame.astype({"input_tokens": np.int32, "output_tokens": np.int32})
                _write_atomic(self.dir / "trace.parquet", lambda p: small.to_parquet(p, index=False))
                _write_atomic(self.dir / "hours.parquet", lambda p: hours.to_parquet(p, index=False))
                sized = {**info, "cache_files": {f: (self.dir / f).stat().st_size for f in SIZED}}
                _write_atomic(info_path, lambda p: p.write_text(json.dumps(sized, indent=1, default=str)))
            except OSError as exc:
                self._disable(exc)

    # -- reading ------------------------------------------------------------
    @property
    def info(self) -> dict:
        self._ensure()
        assert self._info is not None
        return self._info

    def hour(self, day: int) -> pd.DataFrame:
        """Rows of the first hour of ``day`` (``t_s`` relative to the day start), in time order."""
        self._ensure()
        if self._hours is None:
            self._hours = pd.read_parquet(self.dir / "hours.parquet")
        h = self._hours
        return h.loc[h["day"].to_numpy() == day, ["t_s", "input_tokens", "output_tokens"]].reset_index(drop=True)

    def load(self, prefill_ms: float, decode_ms: float, window_s: float) -> tuple[np.ndarray, np.ndarray]:
        """Raw per-window (mean, peak) in flight over the whole week (unscaled)."""
        self._ensure()
        n_windows = int(round(self.info["days_present"] * DAY_S / window_s))
        path = self.dir / f"load-{window_s:g}-{prefill_ms:g}-{decode_ms:g}.parquet"
        if self._use_cache and path.is_file():
            try:
                df = pd.read_parquet(path)
                if len(df) == n_windows:
                    return df["mean"].to_numpy(), df["peak"].to_numpy()
            except Exception:  # pyarrow raises several types for a damaged file
                pass
            notice(f"workload cache file {path} is corrupt; recomputing it")
        tr = self._trace_now()
        mean, peak = inflight_load(
            tr.frame["t_s"].to_numpy(), tr.frame["output_tokens"].to_numpy(), prefill_ms, decode_ms, window_s, n_windows
        )
        if self._use_cache:
            df = pd.DataFrame({"mean": mean, "peak": peak})
            try:
                self.dir.mkdir(parents=True, exist_ok=True)
                _write_atomic(path, lambda p: df.to_parquet(p, index=False))
            except OSError as exc:
                self._disable(exc)
        return mean, peak

