"""Export a workload as a timed-trace JSONL (Mooncake FAST'25 format, readable by ``vllm bench serve``).

One JSON object per request, in arrival order: ``timestamp`` (integer
milliseconds from the start of the workload, as in the Mooncake traces),
``input_length``, ``output_length`` and ``model`` (the served instance name).
Rounding to whole milliseconds keeps the order (it is monotone). The same
file reads back with ``source=file`` (it understands these column names).
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from warmserve.workload.schema import as_requests


def to_timed_trace(requests: pd.DataFrame) -> pd.DataFrame:
    req = as_requests(requests)
    return pd.DataFrame(
        {
            "timestamp": np.rint(req["arrival_s"].to_numpy() * 1000.0).astype(np.int64),
            "input_length": req["input_tokens"].to_numpy(),
            "output_length": req["output_tokens"].to_numpy(),
            "model": req["model"].astype(str).to_numpy(),
        }
    )


def write_jsonl(requests: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``requests`` (workload columns) as Mooncake-style JSONL at ``path``."""
    to_timed_trace(requests).to_json(path, orient="records", lines=True)
