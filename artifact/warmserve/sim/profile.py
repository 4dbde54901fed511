"""The twin's view of the hardware profile: the typed profile of ``warmserve.hardware``.

The profile moved to ``warmserve.hardware`` so the policies can read the same typed
object as the twin (the control layer may not import ``warmserve.sim``); the twin's
modules keep importing these names from here.
"""

from __future__ import annotations

from warmserve.hardware import (
    ENGINE_FIELDS,
    LATENCY_FIELDS,
    LIFECYCLE_FIELDS,
    LINK_FIELDS,
    PREWARM_MECHANISMS,
    SCHEDULERS,
    EngineLimits,
    HardwareProfile,
    Latency,
    Lifecycle,
    check_models_fit,
    cluster_shape,
    load_profile,
)

__all__ = [
    "ENGINE_FIELDS", "LATENCY_FIELDS", "LIFECYCLE_FIELDS", "LINK_FIELDS", "PREWARM_MECHANISMS", "SCHEDULERS",
    "EngineLimits", "HardwareProfile", "Latency", "Lifecycle", "check_models_fit", "cluster_shape", "load_profile",
]
