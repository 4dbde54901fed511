"""Fixtures for the workload tests: a private cache dir and small week CSVs in the 2024 schema."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from wl_helpers import synthetic_cfg

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


