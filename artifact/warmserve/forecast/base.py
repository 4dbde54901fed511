"""What every forecaster shares: the interface (``Forecaster``, ``Prediction``) and input checks.

The interface is defined in ``warmserve.control.forecaster`` (the control layer that uses it owns it,
so ``warmserve.control`` never imports this package) and re-exported here for the forecasters.
"""

from __future__ import annotations

from warmserve.control.forecaster import Forecaster, Prediction
from warmserve.errors import InputError

__all__ = ["Forecaster", "Prediction", "require"]


def require(frame: object, what: str, forecaster: str) -> None:
    """One clear line when a forecaster lacks the input it is built on."""
    if frame is None:
        raise InputError(f"forecaster '{forecaster}' needs {what}, but the workload provides none")
