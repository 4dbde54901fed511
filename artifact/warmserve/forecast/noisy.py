"""Error injection: wrap any forecaster and perturb its forecasts by a controlled relative error.

For sensitivity studies ("how good must the forecast be?"). Every forecast
``x`` of the inner forecaster becomes ``max(0, x * (1 + e))`` with

* ``mode=bias``:    ``e = rel_error`` (a systematic over- or under-forecast);
* ``mode=uniform``: ``e ~ U(-rel_error, +rel_error)``;
* ``mode=normal``:  ``e ~ N(0, rel_error)``.

Draws are independent per (window, model, series) and deterministic: each
comes from ``numpy.random.default_rng([seed, window, model index])``, so a
forecast does not depend on how often it is asked for. The seed defaults to
the run's seed (``PolicyInputs.seed``).
"""

from __future__ import annotations

import numpy as np

from warmserve.control.policy import PolicyInputs
from warmserve.forecast.base import Forecaster, Prediction

MODES = ("bias", "uniform", "normal")


class NoisyForecaster(Forecaster):
    name = "noisy"

    def __init__(self, inner: Forecaster, rel_error: float, mode: str = "uniform", seed: int | None = None) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"noisy forecaster: mode must be one of {MODES}, got '{mode}'")
        if mode != "bias" and rel_error < 0:
            raise ValueError("noisy forecaster: rel_error must be >= 0 for random modes")
        self.inner = inner
        self.rel_error = float(rel_error)
        self.mode = mode
        self.seed = seed
        self.name = f"noisy({inner.name})"

    def _fit(self, inputs: PolicyInputs) -> None:
        self.inner.fit(inputs)
        self._seed = inputs.seed if self.seed is None else self.seed

    def _factors(self, model_index: int) -> tuple[float, float]:
        if self.mode == "bias":
            return 1.0 + self.rel_error, 1.0 + self.rel_error
        rng = np.random.default_rng([self._seed, self.window, model_index])
        if self.mode == "uniform":
            e = rng.uniform(-self.rel_error, self.rel_error, size=2)
        else:
            e = rng.normal(0.0, self.rel_error, size=2)
        return 1.0 + float(e[0]), 1.0 + float(e[1])

    def _predict(self) -> dict[str, Prediction]:
        raw = self.inner.predict()
        out = {}
        for i, m in enumerate(self.models):
            fm, fp = self._factors(i)
            out[m] = Prediction(max(0.0, raw[m].mean * fm), max(0.0, raw[m].peak * fp))
        return out

    def _observe(self, observed: dict[str, tuple[float, float]]) -> None:
        self.inner.observe(observed)
