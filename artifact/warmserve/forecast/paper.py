"""The published predictor: seasonal prior + exponentially weighted error correction.

docs/reference.md §4: the prior of window ``w`` is the mean over the earlier
days of the week of the same 5-minute slot (``history.parquet``); after
window ``w`` ends, the forecast of ``w+1`` is ``prior[w+1] + e`` where ``e``
is the weighted mean of the last ``K = min(history_windows, w+1)`` errors
``observed - prior`` with weights ``decay^d`` (d = 0 for the newest;
published: 10 windows, weights ``2^-d``). Mean and peak are corrected
separately. Before any observation the forecast is the prior itself.

Beyond the priors (a replay longer than the prior hour) there is no prior
to correct: the forecast degrades to the last observed window (naive), and
``fallback_windows`` counts how often that happened, so it is never silent.
"""

from __future__ import annotations

import numpy as np

from warmserve.control.policy import PolicyInputs
from warmserve.forecast.base import Forecaster, Prediction, require
from warmserve.forecast.history import prior_arrays
from warmserve.workload.predictor import weighted_error


class PaperForecaster(Forecaster):
    name = "paper"

    def __init__(self, history_windows: int = 10, decay: float = 0.5) -> None:
        super().__init__()
        if history_windows < 1 or not 0.0 < decay <= 1.0:
            raise ValueError("paper forecaster: history_windows >= 1 and 0 < decay <= 1 required")
        self.history_windows = history_windows
        self.decay = decay
        self._fallback: set[int] = set()
        self._prior: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._err: dict[str, list[tuple[float, float]]] = {}
        self._last: dict[str, tuple[float, float]] = {}

    def _fit(self, inputs: PolicyInputs) -> None:
        require(inputs.priors, "priors (history.parquet)", self.name)
        self._prior = prior_arrays(inputs.priors, self.models, self.name)
        self._err = {m: [] for m in self.models}
        self._last = {}
        self._fallback = set()

    @property
    def fallback_windows(self) -> int:
        """How many windows were forecast naively because the priors ran out."""
        return len(self._fallback)

    def _prior_at(self, model: str, w: int) -> tuple[float, float] | None:
        mean, peak = self._prior[model]
        return (float(mean[w]), float(peak[w])) if w < len(mean) else None

    def _predict(self) -> dict[str, Prediction]:
        out: dict[str, Prediction] = {}
        w = self.window
        for m in self.models:
            prior = self._prior_at(m, w)
            if prior is None:
                self._fallback.add(w)
                out[m] = Prediction(*self._last.get(m, (0.0, 0.0)))
                continue
            errs = self._err[m][-self.history_windows :][::-1]  # newest first
            e = np.asarray(errs, dtype=np.float64).reshape(-1, 2)
            out[m] = Prediction(prior[0] + weighted_error(e[:, 0], self.decay),
                                prior[1] + weighted_error(e[:, 1], self.decay))
        return out

    def _observe(self, observed: dict[str, tuple[float, float]]) -> None:
        w = self.window
        for m in self.models:
            obs = (float(observed[m][0]), float(observed[m][1]))
            self._last[m] = obs
            prior = self._prior_at(m, w)
            if prior is not None:
                self._err[m].append((obs[0] - prior[0], obs[1] - prior[1]))
