"""The synthetic week against the bundled 2024 reconstruction, each statistic within a stated tolerance.

Reference: the digitized per-minute envelope (``mid_req_per_min`` per ~7.2-minute
column) and the digitized token CDFs (data/SOURCES.md). The
week is generated at 5 % scale and rates are divided by the scale.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from wl_helpers import synthetic_cfg

from warmserve.workload import synthetic
from warmserve.workload.loader import load_azure_csv

SCALE = 0.05
TOL_ACF_24H = 0.05  # absolute difference of the 24 h autocorrelation of per-minute rates
TOL_WEEKEND_RATIO = 0.03  # relative difference of weekday / weekend mean rate
TOL_HOURLY = 0.05  # max relative difference of the hour-of-day rate profile (24 values)
TOL_TOKENS_PX = 2  # token quantiles within 2 digitization pixels (17.7 input / 11.1 output tokens) or 3 %


def acf(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float(np.dot(x[:-lag], x[lag:]) / np.dot(x, x))


@pytest.fixture(scope="module", params=["conv", "code"])
def week(request):
    cfg = synthetic_cfg(scale=SCALE, trace=request.param)
    us, ctx, gen, info = synthetic.synthesize(cfg)
    env = synthetic.load_envelope(synthetic._data_path(cfg.envelope[request.param]))
    ref_mid, _ = synthetic.envelope_per_minute(env)
    start_us = pd.Timestamp(env["utc_start"].iloc[0], tz="UTC").value // 1000
    minute = (us - start_us) // 60_000_000
    per_min = np.bincount(minute, minlength=len(ref_mid))[: len(ref_mid)] / SCALE
    return request.param, cfg, env, ref_mid, per_min, ctx, gen


def test_volume_matches_reference(week):
    _, _, _, ref, syn, *_ = week
    assert syn.sum() == pytest.approx(ref.sum(), rel=0.01)


def test_daily_periodicity(week):
    _, _, _, ref, syn, *_ = week
    assert abs(acf(syn, 1440) - acf(ref, 1440)) <= TOL_ACF_24H
    assert acf(syn, 1440) > acf(syn, 720)  # the 24 h lag correlates more than the 12 h lag


def test_weekday_weekend_ratio(week):
    _, _, env, ref, syn, *_ = week
    start = pd.Timestamp(env["utc_start"].iloc[0])
    weekday = np.array([(start + pd.Timedelta(minutes=int(m))).weekday() < 5
                        for m in range(0, len(ref), 60)]).repeat(60)[: len(ref)]

    def ratio(x):
        return x[weekday].mean() / x[~weekday].mean()

    assert ratio(syn) == pytest.approx(ratio(ref), rel=TOL_WEEKEND_RATIO)


def test_hour_of_day_profile(week):
    _, _, _, ref, syn, *_ = week
    hod = (np.arange(len(ref)) // 60) % 24

    def profile(x):
        p = np.bincount(hod, weights=x, minlength=24) / np.bincount(hod, minlength=24)
        return p / p.mean()

    assert np.max(np.abs(profile(syn) / profile(ref) - 1)) <= TOL_HOURLY


@pytest.mark.parametrize(("field", "px"), [("ContextTokens", 17.7), ("GeneratedTokens", 11.1)])
def test_token_quantiles(week, field, px):
    trace, cfg, _, _, _, ctx, gen = week
    x, y = synthetic.token_cdf(synthetic._data_path(cfg.token_cdf), field, trace)
    sample = ctx if field == "ContextTokens" else gen
    for q in (10, 25, 50, 75, 90, 99):
        if q < x.min() or q > x.max():
            continue
        ref_q = float(np.interp(q, x, y))
        got = float(np.percentile(sample, q))
        assert abs(got - ref_q) <= max(TOL_TOKENS_PX * px, 0.03 * ref_q), (field, q, got, ref_q)


def test_csv_schema_and_mixed_formats_round_trip(tmp_path):
    us = np.array([1715472000_001163, 1715472001_000000, 1715558400_500000], dtype=np.int64)
    p = tmp_path / "w.csv"
    synthetic.write_azure_csv(p, us, np.array([5, 6, 7]), np.array([1, 2, 3]))
    lines = p.read_text().splitlines()
    assert lines == [
        "TIMESTAMP,ContextTokens,GeneratedTokens",
        "2024-05-12 00:00:00.001163+00:00,5,1",
        "2024-05-12 00:00:01+00:00,6,2",
        "2024-05-13 00:00:00.500000+00:00,7,3",
    ]
    tr = load_azure_csv(p)
    assert tr.info["rows_kept"] == 3 and tr.info["first_weekday"] == "Sunday"


def test_seeded_and_labelled():
    a = synthetic.synthesize(synthetic_cfg(scale=0.001), n_minutes=600)
    b = synthetic.synthesize(synthetic_cfg(scale=0.001), n_minutes=600)
    c = synthetic.synthesize(synthetic_cfg(scale=0.001, seed=7), n_minutes=600)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[3]["synthetic"] is True and "synthetic" in synthetic.label(synthetic_cfg())
