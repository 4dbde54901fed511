"""The published predictor against a literal transcription of the reference pseudo-code."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.workload.predictor import mean_relative_error, published_forecast, seasonal_prior


def literal(obs, prior):
    """docs/reference.md §4, one window at a time."""
    weights = [2.0**-d for d in range(10)]
    preds = [prior[0]]
    for w in range(len(obs) - 1):
        k = min(10, w + 1)
        e = sum(weights[d] * (obs[w - d] - prior[w - d]) for d in range(k)) / sum(weights[:k])
        preds.append(prior[w + 1] + e)
    return np.array(preds)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100)), min_size=1, max_size=40))
def test_matches_literal(pairs):
    obs = np.array([p[0] for p in pairs])
    prior = np.array([p[1] for p in pairs])
    assert published_forecast(obs, prior) == pytest.approx(literal(obs, prior), rel=1e-9, abs=1e-9)


def test_perfect_prior_gives_zero_error_and_bias_is_corrected():
    obs = np.linspace(10, 20, 30)
    assert mean_relative_error(published_forecast(obs, obs), obs) == 0.0
    biased = published_forecast(obs, obs - 5.0)  # a constant bias is learned after one window
    assert biased[1:] == pytest.approx(obs[1:])


def test_seasonal_prior_is_mean_of_earlier_days():
    x = np.arange(3 * 4, dtype=float)  # 3 days of 4 windows
    p = seasonal_prior(x, 4)
    assert np.isnan(p[:4]).all()
    assert p[4:8].tolist() == [0, 1, 2, 3] and p[8:].tolist() == [2, 3, 4, 5]
