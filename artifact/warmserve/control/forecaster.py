"""The one forecaster interface every system uses.

It lives in ``warmserve.control`` because the policies that consume it own it:
``warmserve.forecast`` implements it (and imports ``warmserve.control``), the
control layer never imports ``warmserve.forecast`` (no package cycle); the
forecasters are built from ``configs/forecaster`` by Hydra and handed in.

A forecaster predicts, for each model, the *next* window's mean and peak
in-flight concurrency (requests queued or running at the front door, the
quantity ``warmserve.control.load.LoadTracker`` measures). Its life cycle
follows the published predictor (docs/reference.md §4):

1. ``fit(inputs)``   once, before the replay, on the history it is allowed to
                     see (priors / the week's load before the replayed day /
                     for the ``oracle`` only, the replayed workload itself);
2. ``predict()``     the forecast for window ``self.window`` (0 = the first
                     window of the replay), per model: ``Prediction(mean, peak)``;
3. ``observe(obs)``  the window ``self.window`` has ended with ``obs[model] =
                     (mean, peak)``; the forecaster updates and moves on to the
                     next window.

Forecasts are raw model outputs (a corrected prior may be negative);
consumers clamp (``warmserve.control.demand``). ``fit_seconds`` records the
measured wall time of ``fit`` so fit costs can be reported.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from typing import NamedTuple

from warmserve.control.policy import PolicyInputs


class Prediction(NamedTuple):
    """Forecast of one model's in-flight concurrency over one window."""

    mean: float
    peak: float


class Forecaster(ABC):
    """Fit on history, predict the next window, observe the window that ended."""

    name: str = "forecaster"

    def __init__(self) -> None:
        self.window = 0  # index of the window being predicted (from the replay start)
        self.models: list[str] = []
        self.fit_seconds = 0.0
        self._fitted = False

    def fit(self, inputs: PolicyInputs) -> None:
        """Fit on what ``inputs`` allows this forecaster to see; times itself."""
        self.models = list(inputs.models)
        self.window = 0
        t0 = time.perf_counter()
        self._fit(inputs)
        self.fit_seconds = time.perf_counter() - t0
        self._fitted = True

    def predict(self) -> dict[str, Prediction]:
        """Forecast of window ``self.window`` for every model."""
        if not self._fitted:
            raise RuntimeError(f"{self.name}: predict() before fit()")
        return self._predict()

    def observe(self, observed: dict[str, tuple[float, float]]) -> None:
        """Window ``self.window`` ended with ``observed[model] = (mean, peak)``."""
        missing = [m for m in self.models if m not in observed]
        if missing:
            raise ValueError(f"{self.name}: observation lacks models {missing}")
        self._observe(observed)
        self.window += 1

    @abstractmethod
    def _fit(self, inputs: PolicyInputs) -> None: ...

    @abstractmethod
    def _predict(self) -> dict[str, Prediction]: ...

    def _observe(self, observed: dict[str, tuple[float, float]]) -> None:  # noqa: B027
        """Default: nothing to update (e.g. the oracle)."""
