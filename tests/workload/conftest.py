"""Fixtures for the workload tests: a private cache dir and small week CSVs in the 2024 schema."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from warmserve.config import configs_dir
from warmserve.workload import synthetic


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Keep test caches out of the checkout's .cache (and start every session cold, like CI)."""
    old = os.environ.get("WARMSERVE_CACHE")
    os.environ["WARMSERVE_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("WARMSERVE_CACHE", None)
    else:
        os.environ["WARMSERVE_CACHE"] = old


def synthetic_cfg(**over):
    cfg = OmegaConf.load(configs_dir() / "source" / "synthetic.yaml")
    for k, v in over.items():
        cfg[k] = v
    return cfg


@pytest.fixture(scope="session")
def week_csv(tmp_path_factory) -> Path:
    """A small (0.3 % scale, ~80k rows) synthetic conv week written as a 2024 CSV, with a few
    whole-second timestamps forced in so both TIMESTAMP formats occur."""
    us, ctx, gen, _ = synthetic.synthesize(synthetic_cfg(scale=0.003))
    us = us.copy()
    us[5::997] -= us[5::997] % 1_000_000  # whole seconds -> written without a fraction
    us.sort()
    path = tmp_path_factory.mktemp("csv") / "week_conv.csv"
    synthetic.write_azure_csv(path, us, ctx, gen)
    return path


def write_csv(path: Path, rows: list[tuple[str, object, object]], header: str = "TIMESTAMP,ContextTokens,GeneratedTokens") -> Path:
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
