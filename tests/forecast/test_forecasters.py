"""Forecasters: hand-worked paper predictor, naive, oracle, error injection, statsmodels fits."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.config import model_specs
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import PolicyInputs
from warmserve.errors import InputError
from warmserve.forecast import (
    HoltWintersForecaster,
    NaiveForecaster,
    NoisyForecaster,
    OracleForecaster,
    PaperForecaster,
    SarimaxForecaster,
)
from warmserve.forecast.history import window_concurrency

SPECS = model_specs("small2")
M0, M1 = list(SPECS)


def priors(means, peaks, models=(M0, M1)):
    rows = []
    for m in models:
        for w, (a, p) in enumerate(zip(means, peaks, strict=True)):
            rows.append({"model": m, "window": w, "prior_mean": float(a), "prior_peak": float(p)})
    return pd.DataFrame(rows)


def inputs(**kw):
    kw.setdefault("window_s", 300.0)
    return PolicyInputs(models=SPECS, nodes=1, gpus_per_node=4, hardware=None, features=BackendFeatures(), seed=42,
                        **kw)


def test_paper_hand_worked():
    f = PaperForecaster()
    f.fit(inputs(priors=priors([10, 20, 30], [15, 25, 35])))
    assert f.predict()[M0] == (10, 15)
    f.observe({M0: (12, 15), M1: (10, 15)})  # errors (2, 0)
    assert f.predict()[M0] == pytest.approx((22, 25))
    assert f.predict()[M1] == pytest.approx((20, 25))
    f.observe({M0: (20, 27), M1: (20, 25)})  # newest errors (0, 2), then (2, 0); weights 1, 1/2
    assert f.predict()[M0] == pytest.approx((30 + 1 / 1.5, 35 + 2 / 1.5))
    assert f.fallback_windows == 0
    f.observe({M0: (31, 40), M1: (30, 35)})  # beyond the 3 prior windows: naive fallback, counted
    assert f.predict()[M0] == (31, 40)
    assert f.fallback_windows == 1


def test_paper_window_limit_and_decay():
    f = PaperForecaster(history_windows=2, decay=0.5)
    f.fit(inputs(priors=priors([0] * 5, [0] * 5)))
    for e in (8.0, 4.0, 2.0):
        f.observe({M0: (e, e), M1: (0, 0)})
    # only the last two errors: (2*1 + 4*0.5) / 1.5
    assert f.predict()[M0].mean == pytest.approx(4 / 1.5)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=11))
def test_paper_correction_is_a_weighted_mean_of_errors(errs):
    n = len(errs) + 1
    f = PaperForecaster()
    f.fit(inputs(priors=priors([100.0] * n, [100.0] * n)))
    for e in errs:
        f.observe({M0: (100 + e, 100 + e), M1: (100, 100)})
    pred = f.predict()
    recent = errs[-10:]
    assert min(recent) - 1e-9 <= pred[M0].mean - 100 <= max(recent) + 1e-9
    assert pred[M1] == (100, 100)


def test_paper_needs_priors_for_every_model():
    with pytest.raises(InputError, match="needs priors"):
        PaperForecaster().fit(inputs())
    with pytest.raises(InputError, match=f"no priors for model '{M1}'"):
        PaperForecaster().fit(inputs(priors=priors([1], [1], models=(M0,))))


def test_naive_repeats_last_window():
    f = NaiveForecaster()
    f.fit(inputs(priors=priors([3, 4], [5, 6])))
    assert f.predict()[M0] == (3, 5)
    f.observe({M0: (7, 9), M1: (1, 2)})
    assert f.predict() == {M0: (7, 9), M1: (1, 2)}


def test_window_concurrency_hand_worked():
    # [10, 20) and [15, 115) with 100 s windows
    mean, peak = window_concurrency(np.array([10.0, 15.0]), np.array([10.0, 100.0]), 100.0, 2)
    assert mean[0] == pytest.approx((10 + 85) / 100) and peak[0] == 2
    assert mean[1] == pytest.approx(15 / 100) and peak[1] == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 290), st.floats(0.1, 50)), min_size=1, max_size=30))
def test_window_concurrency_conserves_busy_time(reqs):
    arr = np.array([a for a, _ in reqs])
    dur = np.array([d for _, d in reqs])
    mean, peak = window_concurrency(arr, dur, 100.0, 4)
    total = np.minimum(arr + dur, 400.0) - arr
    assert mean.sum() * 100.0 == pytest.approx(total.sum(), rel=1e-9, abs=1e-6)
    assert np.all(mean <= peak + 1e-12)


def test_oracle_reads_the_replayed_workload():
    wl = pd.DataFrame(
        {"request_id": [0, 1], "arrival_s": [10.0, 400.0], "model": [M0, M1], "input_tokens": [5, 5],
         "output_tokens": [100, 200]}
    )
    f = OracleForecaster()
    f.fit(inputs(workload=wl))
    # llama2-7b: 35 ms + 100 x 15 ms = 1.535 s in flight in window 0
    assert f.predict()[M0].mean == pytest.approx(1.535 / 300) and f.predict()[M0].peak == 1
    assert f.predict()[M1] == (0, 0)
    f.observe({M0: (0, 0), M1: (0, 0)})
    assert f.predict()[M1].peak == 1 and f.predict()[M0] == (0, 0)
    with pytest.raises(InputError, match="replayed workload"):
        OracleForecaster().fit(inputs())


def test_noisy_wrapper_is_controlled_and_deterministic():
    base = priors([10, 20], [20, 40])
    f = NoisyForecaster(PaperForecaster(), rel_error=0.1, mode="bias")
    f.fit(inputs(priors=base))
    assert f.predict()[M0] == pytest.approx((11, 22))
    g = NoisyForecaster(PaperForecaster(), rel_error=0.2, mode="uniform", seed=7)
    g.fit(inputs(priors=base))
    a, b = g.predict(), g.predict()
    assert a == b  # asking twice does not redraw
    assert 8 <= a[M0].mean <= 12 and 16 <= a[M0].peak <= 24
    h = NoisyForecaster(PaperForecaster(), rel_error=0.2, mode="uniform", seed=8)
    h.fit(inputs(priors=base))
    assert h.predict() != a
    with pytest.raises(ValueError):
        NoisyForecaster(PaperForecaster(), 0.1, mode="wild")


def week_load(days=4, season=24, replay_day=3, level=20.0, amp=10.0, noise=0.5, const_model=None):
    rng = np.random.default_rng(0)
    rows = []
    for m in (M0, M1):
        for w in range(days * season):
            v = level + amp * np.sin(2 * np.pi * w / season) + rng.normal(0, noise)
            if m == const_model:
                v = 0.0
            rows.append({"model": m, "window": w, "day": w // season, "window_of_day": w % season,
                         "mean": v, "peak": v * 1.5, "replayed": w // season == replay_day})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    "make",
    [lambda s: HoltWintersForecaster(season_windows=s),
     lambda s: SarimaxForecaster(season_windows=s, harmonics=2, maxiter=20)],
    ids=["holt_winters", "sarimax"],
)
def test_statsmodels_forecasters_follow_the_season(make):
    season = 24
    f = make(season)
    f.fit(inputs(week_load=week_load(const_model=M1), window_s=3600.0))
    assert f.fit_seconds > 0
    for w in range(3):  # replayed windows 72, 73, 74
        truth = 20 + 10 * np.sin(2 * np.pi * (72 + w) / season)
        assert f.predict()[M0].mean == pytest.approx(truth, abs=2.5)
        assert f.predict()[M1] == (0, 0)  # constant history: constant forecast, no fit
        f.observe({M0: (truth, 1.5 * truth), M1: (0, 0)})


def test_statsmodels_bad_history_is_a_clear_error():
    with pytest.raises(InputError, match=f"model '{M0}' has 24 history windows"):
        HoltWintersForecaster(season_windows=24).fit(inputs(week_load=week_load(days=2, replay_day=1)))
    with pytest.raises(InputError, match="needs the week's load"):
        SarimaxForecaster().fit(inputs())


def test_fit_failure_names_model_and_reason(monkeypatch):
    def boom(self, y, season):
        raise np.linalg.LinAlgError("singular matrix")

    monkeypatch.setattr(SarimaxForecaster, "_fit_series", boom)
    with pytest.raises(InputError, match=f"fit failed for model '{M0}' \\(mean\\): singular matrix"):
        SarimaxForecaster(season_windows=24).fit(inputs(week_load=week_load()))
