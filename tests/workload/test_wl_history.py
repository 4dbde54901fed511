"""Per-window in-flight mean/peak against brute force; priors against the week load; scaling option."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.workload import history
from warmserve.workload.api import build_workload


def brute(arr, out, prefill_ms, decode_ms, window_s, n_windows):
    ends = arr + (prefill_ms + out * decode_ms) / 1000.0
    mean, peak = [], []
    for w in range(n_windows):
        lo, hi = w * window_s, (w + 1) * window_s
        overlap = np.clip(np.minimum(ends, hi) - np.maximum(arr, lo), 0, None).sum()
        mean.append(overlap / window_s)
        pts = [lo] + [t for t in np.concatenate([arr, ends]) if lo <= t < hi]
        peak.append(max(int(((arr <= t) & (ends > t)).sum()) for t in pts))
    return np.array(mean), np.array(peak, dtype=float)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 60),
    seed=st.integers(0, 2**31),
    prefill=st.sampled_from([35.0, 70.0, 100.0]),
    decode=st.sampled_from([15.0, 20.0, 30.0]),
    chunk=st.integers(1, 5),
    grid=st.booleans(),
)
def test_inflight_load_matches_brute_force(n, seed, prefill, decode, chunk, grid):
    rng = np.random.default_rng(seed)
    arr = np.sort(rng.uniform(0, 50, size=n))
    if grid:  # many ties: arrivals and completions on a coarse grid
        arr = np.round(arr)
    out = rng.integers(0, 400, size=n) if not grid else rng.integers(0, 4, size=n) * 100 // 3 * 3
    m, p = history.inflight_load(arr, out, prefill, decode, 10.0, 6, chunk_windows=chunk)
    bm, bp = brute(arr, out.astype(float), prefill, decode, 10.0, 6)
    assert m == pytest.approx(bm, abs=1e-9)
    assert np.array_equal(p, bp)


def test_priors_average_earlier_days_of_week_load():
    b = build_workload({"source": {"name": "synthetic", "scale": 0.02}, "models": "small2", "rps": 0.5})
    wl = b.week_load
    assert set(wl.columns) >= {"model", "window", "day", "window_of_day", "mean", "peak", "replayed"}
    assert wl.groupby("model").size().tolist() == [2016, 2016]
    for model, day in b.meta["replay_day"].items():
        w = wl[wl.model == model]
        assert w.loc[w.replayed, "window"].tolist() == list(range(day * 288, day * 288 + 12))
        hist = w[(w.day < day) & (w.window_of_day < 12)]
        exp_mean = hist.groupby("window_of_day")["mean"].mean().to_numpy()
        exp_peak = hist.groupby("window_of_day")["peak"].mean().to_numpy()
        pr = b.priors[b.priors.model == model].sort_values("window")
        assert pr["prior_mean"].to_numpy() == pytest.approx(exp_mean, rel=1e-12)
        assert pr["prior_peak"].to_numpy() == pytest.approx(exp_peak, rel=1e-12)
        assert (pr["prior_mean"] > 0).all()


def test_corrected_scaling_differs_by_duplication_factor():
    base = {"source": {"name": "synthetic", "scale": 0.02}, "models": "small2", "rps": 4.0}
    pub = build_workload(base)
    cor = build_workload({**base, "prior_scaling": "corrected"})
    assert pub.requests.equals(cor.requests)
    for model, info in pub.meta["per_model"].items():
        assert info["dup"] > 1
        a = pub.priors[pub.priors.model == model]["prior_mean"].to_numpy()
        c = cor.priors[cor.priors.model == model]["prior_mean"].to_numpy()
        assert c == pytest.approx(a * info["dup"], rel=1e-12)
        # corrected: the prior mean of the sampled rate is ~ n / rows times the source's load
        assert cor.meta["per_model"][model]["scale"] == pytest.approx(info["n"] / info["rows"])


def test_scale_factor_rejects_unknown_option():
    with pytest.raises(Exception, match="prior_scaling"):
        history.scale_factor(10, 5, 2, "other")
