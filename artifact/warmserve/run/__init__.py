"""Run one configuration end to end: ``python -m warmserve.run ...`` or ``execute(cfg)``.

See ``warmserve.run.execute`` for the steps and ``warmserve.run.protocol`` for
what a backend must implement to be runnable.
"""

from warmserve.run.execute import execute, run_replay

__all__ = ["execute", "run_replay"]
