"""Reference-point forecasters: ``naive`` (last window) and ``oracle`` (the truth).

``naive`` predicts the window that just ended; before the first observation
it uses the window-0 prior when priors exist, else zero.

``oracle`` reads the replayed workload itself and predicts each window's
true mean and peak in-flight count under the published service-time proxy
(``prefill_ms + output_tokens x decode_ms``, docs/reference.md §2.4). It is an
oracle of the *offered load*, not of queueing inside a particular system, so
it is the forecaster every other one is scored against, and the ``oracle``
system is "WarmServe with perfect foresight of demand".
"""

from __future__ import annotations

import numpy as np

from warmserve.control.policy import PolicyInputs
from warmserve.forecast.base import Forecaster, Prediction, require
from warmserve.forecast.history import prior_arrays, workload_concurrency


class NaiveForecaster(Forecaster):
    name = "naive"

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, Prediction] = {}

    def _fit(self, inputs: PolicyInputs) -> None:
        self._last = {m: Prediction(0.0, 0.0) for m in self.models}
        if inputs.priors is not None:
            for m, (mean, peak) in prior_arrays(inputs.priors, self.models, self.name).items():
                self._last[m] = Prediction(float(mean[0]), float(peak[0]))

    def _predict(self) -> dict[str, Prediction]:
        return dict(self._last)

    def _observe(self, observed: dict[str, tuple[float, float]]) -> None:
        self._last = {m: Prediction(float(observed[m][0]), float(observed[m][1])) for m in self.models}


class OracleForecaster(Forecaster):
    name = "oracle"

    def __init__(self) -> None:
        super().__init__()
        self._truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def _fit(self, inputs: PolicyInputs) -> None:
        require(inputs.workload, "the replayed workload", self.name)
        self._truth = workload_concurrency(inputs.workload, inputs.models, inputs.window_s)

    def _predict(self) -> dict[str, Prediction]:
        out = {}
        for m in self.models:
            mean, peak = self._truth[m]
            w = self.window
            out[m] = Prediction(float(mean[w]), float(peak[w])) if w < len(mean) else Prediction(0.0, 0.0)
        return out
