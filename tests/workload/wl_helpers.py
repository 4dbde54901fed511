"""Helpers for the workload tests (a uniquely named module: safe next to other test folders)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from warmserve.config import configs_dir


def synthetic_cfg(**over):
    cfg = OmegaConf.load(configs_dir() / "source" / "synthetic.yaml")
    for k, v in over.items():
        cfg[k] = v
    return cfg


def write_csv(path: Path, rows: list[tuple[str, object, object]],
              header: str = "TIMESTAMP,ContextTokens,GeneratedTokens") -> Path:
    path.write_text(header + "\n" + "".join(f"{a},{b},{c}\n" for a, b, c in rows))
    return path


def rng_week_rows(start: str, days: int, per_day: int, seed: int = 0) -> list[tuple[str, int, int]]:
    """A few rows per day from ``start`` (e.g. a Sunday), timestamps in mixed formats."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC")
    secs = np.sort(rng.uniform(0, days * 86400, size=days * per_day))
    secs[::3] = np.floor(secs[::3])  # whole seconds
    out = []
    for s in secs:
        ts = t0 + pd.Timedelta(microseconds=int(round(s * 1e6)))
        text = ts.strftime("%Y-%m-%d %H:%M:%S") + (f".{ts.microsecond:06d}" if ts.microsecond else "") + "+00:00"
        out.append((text, int(rng.integers(1, 3000)), int(rng.integers(0, 800))))
    return out
