"""statsmodels forecasters fit on the week's history: Holt-Winters and SARIMAX.

Both fit, per model, one series for the window mean and one for the window
peak, on the windows *before* the model's replayed hour (``week_load`` rows
with ``replayed`` false that precede the first replayed one). The replay
starts right after that history, so the forecast of replay window ``w`` is
the ``w+1``-step-ahead position of the series; after each observed window
the parameters stay fixed and only the state is filtered forward (no refit),
which keeps a 24 h replay cheap.

* ``HoltWintersForecaster``: additive daily season (``86400 / window_s``
  windows), no trend (``statsmodels.tsa.holtwinters.ExponentialSmoothing``).
  Needs two full days of history.
* ``SarimaxForecaster``: ARMA(p, 0, q) with a constant and ``harmonics`` daily
  Fourier terms as regressors (``statsmodels`` SARIMAX). A seasonal SARIMAX
  with a 288-step season did not finish in 150 s and once passed 16 GB here
  (docs/environment.md §3), so the daily season enters through Fourier terms.

A series that is constant over the history (e.g. a model never used) is
forecast as that constant without fitting. A fit that raises or returns
non-finite values is an ``InputError`` naming the model, series and reason.
``fit_seconds`` is the measured total fit time (``scripts/bench_planner.py``
prints it).
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from typing import cast

import numpy as np

from warmserve.control.policy import PolicyInputs
from warmserve.errors import InputError
from warmserve.forecast.base import Forecaster, Prediction, require
from warmserve.forecast.history import history_series

SERIES = ("mean", "peak")


class _SeriesModel:
    """One fitted univariate series that can forecast one step and absorb one observation."""

    def forecast(self) -> float:
        raise NotImplementedError

    def append(self, value: float) -> None:
        raise NotImplementedError


class _Constant(_SeriesModel):
    def __init__(self, value: float) -> None:
        self.value = value

    def forecast(self) -> float:
        return self.value

    def append(self, value: float) -> None:
        pass


class _StatsForecaster(Forecaster):
    """Shared plumbing: one ``_SeriesModel`` per (model, series)."""

    min_seasons = 2

    def __init__(self, season_windows: int | None = None, history_days: float | None = None) -> None:
        super().__init__()
        self.season_windows = season_windows
        self.history_days = history_days  # fit on the last N days only (None = all history): bounds fit cost
        self._series: dict[tuple[str, str], _SeriesModel] = {}

    def _fit(self, inputs: PolicyInputs) -> None:
        require(inputs.week_load, "the week's load history (week_load.parquet)", self.name)
        season = self.season_windows or int(round(86400.0 / inputs.window_s))
        self._season = season
        self._series = {}
        for m in self.models:
            hist = history_series(inputs.week_load, m, self.name)
            if self.history_days is not None:
                hist = hist.iloc[-int(round(self.history_days * season)) :]
            if len(hist) < self.min_seasons * season:
                raise InputError(
                    f"forecaster '{self.name}': model '{m}' has {len(hist)} history windows, "
                    f"needs at least {self.min_seasons * season} ({self.min_seasons} seasons of {season})"
                )
            for s in SERIES:
                y = hist[s].to_numpy(float)
                if not np.isfinite(y).all():
                    raise InputError(f"forecaster '{self.name}': model '{m}' {s} history has non-finite values")
                if np.ptp(y) == 0.0:
                    self._series[(m, s)] = _Constant(float(y[0]))
                    continue
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        fitted = self._fit_series(y, season)
                        first = fitted.forecast()
                except InputError:
                    raise
                except Exception as exc:  # statsmodels raises many types
                    raise InputError(f"forecaster '{self.name}': fit failed for model '{m}' ({s}): {exc}") from None
                if not np.isfinite(first):
                    raise InputError(f"forecaster '{self.name}': fit failed for model '{m}' ({s}): non-finite forecast")
                self._series[(m, s)] = fitted

    @abstractmethod
    def _fit_series(self, y: np.ndarray, season: int) -> _SeriesModel: ...

    def _predict(self) -> dict[str, Prediction]:
        return {m: Prediction(self._series[(m, "mean")].forecast(), self._series[(m, "peak")].forecast())
                for m in self.models}

    def _observe(self, observed: dict[str, tuple[float, float]]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for m in self.models:
                for i, s in enumerate(SERIES):
                    self._series[(m, s)].append(float(observed[m][i]))


class _HoltWintersSeries(_SeriesModel):
    def __init__(self, y: np.ndarray, season: int) -> None:
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        self._cls = ExponentialSmoothing
        self._season = season
        self._y = list(y)
        res = ExponentialSmoothing(y, trend=None, seasonal="add", seasonal_periods=season,
                                   initialization_method="estimated").fit()
        self._params = res.params
        self._next = float(res.forecast(1)[0])

    def forecast(self) -> float:
        return self._next

    def append(self, value: float) -> None:
        # parameters and initial states fixed; re-filter the extended series (no refit)
        self._y.append(value)
        y = np.asarray(self._y)
        model = self._cls(
            y,
            trend=None,
            seasonal="add",
            seasonal_periods=self._season,
            initialization_method="known",
            initial_level=self._params["initial_level"],
            initial_seasonal=self._params["initial_seasons"],
        )
        self._next = float(model.predict(self._params, start=len(y), end=len(y))[0])


class HoltWintersForecaster(_StatsForecaster):
    name = "holt_winters"

    def _fit_series(self, y: np.ndarray, season: int) -> _SeriesModel:
        return _HoltWintersSeries(y, season)


def fourier_terms(t: np.ndarray, season: int, harmonics: int) -> np.ndarray:
    """``[sin(2 pi k t / season), cos(...)]`` for k = 1..harmonics, one row per t."""
    cols = []
    for k in range(1, harmonics + 1):
        a = 2.0 * np.pi * k * np.asarray(t, float) / season
        cols += [np.sin(a), np.cos(a)]
    return np.column_stack(cols)


class _SarimaxSeries(_SeriesModel):
    def __init__(self, y: np.ndarray, season: int, order: tuple[int, int, int], harmonics: int, maxiter: int) -> None:
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        self._season, self._harm = season, harmonics
        self._t = len(y)
        exog = fourier_terms(np.arange(len(y)), season, harmonics)
        self._res = SARIMAX(y, exog=exog, order=order, trend="c").fit(disp=False, maxiter=maxiter)

    def _exog(self, t: int) -> np.ndarray:
        return fourier_terms(np.array([t]), self._season, self._harm)

    def forecast(self) -> float:
        return float(self._res.forecast(1, exog=self._exog(self._t))[0])

    def append(self, value: float) -> None:
        self._res = self._res.extend([value], exog=self._exog(self._t))
        self._t += 1


class SarimaxForecaster(_StatsForecaster):
    name = "sarimax"

    def __init__(
        self,
        season_windows: int | None = None,
        order: tuple[int, int, int] | list[int] = (1, 0, 1),
        harmonics: int = 4,
        maxiter: int = 50,
        history_days: float | None = None,
    ) -> None:
        super().__init__(season_windows, history_days)
        self.order = cast(tuple[int, int, int], tuple(int(x) for x in order))  # (p, d, q)
        self.harmonics = harmonics
        self.maxiter = maxiter

    def _fit_series(self, y: np.ndarray, season: int) -> _SeriesModel:
        return _SarimaxSeries(y, season, self.order, self.harmonics, self.maxiter)
