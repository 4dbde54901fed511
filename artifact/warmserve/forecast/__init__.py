"""Load forecasters: one interface (``Forecaster``: fit / predict / observe), several models.

``paper`` (published seasonal prior + error correction), ``oracle``,
``naive``, ``holt_winters``, ``sarimax`` and the ``NoisyForecaster``
error-injection wrapper. Configs live in ``configs/forecaster/``.
"""

from warmserve.forecast.base import Forecaster, Prediction
from warmserve.forecast.noisy import NoisyForecaster
from warmserve.forecast.paper import PaperForecaster
from warmserve.forecast.simple import NaiveForecaster, OracleForecaster
from warmserve.forecast.stats import HoltWintersForecaster, SarimaxForecaster

__all__ = [
    "Forecaster",
    "HoltWintersForecaster",
    "NaiveForecaster",
    "NoisyForecaster",
    "OracleForecaster",
    "PaperForecaster",
    "Prediction",
    "SarimaxForecaster",
]
