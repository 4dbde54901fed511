"""A seeded *synthetic* workload in the workload schema of docs/design.md §4, for the twin's tests and benchmark.

Not a trace: Poisson arrivals at ``rate_rps``, models drawn by the published
power law ``(i+1)^-alpha`` over config order, token lengths uniform in the
given ranges. Anything made from it must say it is synthetic. Real and
trace-shaped workloads come from ``warmserve.workload``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def synthetic_workload(models: list[str], *, rate_rps: float, duration_s: float, alpha: float = 1.0,
                       input_tokens: tuple[int, int] = (16, 1024), output_tokens: tuple[int, int] = (3, 1023),
                       seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = int(rng.poisson(rate_rps * duration_s)) if rate_rps > 0 and duration_s > 0 else 0
    arrival = np.sort(rng.uniform(0.0, duration_s, n))
    share = np.array([(i + 1) ** -alpha for i in range(len(models))])
    share /= share.sum()
    model = np.asarray(models, dtype=object)[rng.choice(len(models), size=n, p=share)] if n else np.array([], object)
    return pd.DataFrame({
        "request_id": np.arange(n, dtype=np.int64),
        "arrival_s": arrival,
        "model": model,
        "input_tokens": rng.integers(input_tokens[0], input_tokens[1] + 1, n),
        "output_tokens": rng.integers(output_tokens[0], output_tokens[1] + 1, n),
    }, copy=False)  # the generated columns are fresh: no second copy (10^7 rows at internet scale)
