"""Small synthetic run directories in the real layout (run.json, summary.json, requests/timeline parquet).

The summary is made by the real ``warmserve.metrics.summary.summarize`` so the
analysis code is tested against what runs actually write.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from warmserve.metrics.schema import (
    REQUEST_COLUMNS,
    TIMELINE_COLUMNS,
    UTILIZATION_COLUMNS,
    conform,
    empty,
)
from warmserve.metrics.summary import summarize

SLO_TTFT, SLO_TPOT = 5.0, 0.15


def requests_frame(ttft: list[float], *, model: str = "m-0", status: list[str] | None = None,
                   tpot: list[float] | None = None, system: str = "warmserve", start_kind: str = "warm",
                   arrival: list[float] | None = None, parts: dict[str, list[float]] | None = None) -> pd.DataFrame:
    """A request log with the given TTFTs (NaN = no first token), in the schema's columns."""
    n = len(ttft)
    status = status or ["ok" if np.isfinite(t) else "timeout" for t in ttft]
    tpot = tpot if tpot is not None else [0.02 if s == "ok" else np.nan for s in status]
    arrival = arrival if arrival is not None else [float(i) for i in range(n)]
    ttft_a = np.asarray(ttft, float)
    parts = parts or {}
    df = pd.DataFrame({
        "request_id": np.arange(n), "arrival_s": arrival, "model": model, "input_tokens": 100,
        "output_tokens": 10, "system": system, "instance_id": 0, "gpus": "0",
        "first_token_s": np.asarray(arrival) + ttft_a,
        "finish_s": np.where(np.asarray(status) == "ok", np.asarray(arrival) + ttft_a + 9 * np.asarray(tpot, float),
                             np.nan),
        "ttft_s": ttft_a, "tpot_s": tpot, "status": status, "start_kind": start_kind,
        "queue_s": parts.get("queue_s", [0.0] * n), "load_s": parts.get("load_s", [0.0] * n),
        "init_s": parts.get("init_s", [0.0] * n), "prefill_s": parts.get("prefill_s", list(ttft_a)),
    })
    return conform(df, REQUEST_COLUMNS, "test requests")


def timeline_frame(rows: list[dict]) -> pd.DataFrame:
    """A timeline from partial rows (missing columns get neutral defaults)."""
    if not rows:
        return empty(TIMELINE_COLUMNS)
    defaults = {"model": "", "instance_id": -1, "gpus": "", "bytes": 0, "blocks": 0, "start_kind": "",
                "detail": "", "mean": np.nan, "peak": np.nan}
    return conform(pd.DataFrame([defaults | r for r in rows]), TIMELINE_COLUMNS, "test timeline")


def make_run(root: Path, name: str, *, system: str, rps: float, requests: pd.DataFrame,
             timeline: pd.DataFrame | None = None, trace: str = "conv", source: str = "synthetic",
             replay_s: float = 300.0, hardware: str = "a100-80gb", cluster: tuple[str, int, int] = ("paper_2x8", 2, 8),
             tags: dict | None = None, extra_cfg: dict | None = None) -> Path:
    """Write one finished run directory under ``root`` and return it."""
    d = root / name
    d.mkdir(parents=True)
    tl = timeline if timeline is not None else empty(TIMELINE_COLUMNS)
    requests.to_parquet(d / "requests.parquet", index=False)
    tl.to_parquet(d / "timeline.parquet", index=False)
    empty(UTILIZATION_COLUMNS).to_parquet(d / "utilization.parquet", index=False)  # a finished run has all files
    cfg = {
        "system": {"name": system, "policy": {"_target_": "x.Policy", "target": 32}},
        "workload": {"rps": rps, "alpha": 2, "cv": None, "models": "paper4",
                     "source": {"name": source, "trace": trace}},
        "cluster": {"name": cluster[0], "nodes": cluster[1], "gpus_per_node": cluster[2]},
        "hardware": {"name": hardware, "compute_sharing": {"prefill_exponent": {"tp1": 0.7},
                                                           "decode_exponent": {"tp1": 0.3}}},
        "backend": {"_target_": "warmserve.sim.backend.SimBackend"},
        "window_s": 300.0, "seed": 42, "models": None, "tags": tags or {},
        "slo": {"ttft_s": SLO_TTFT, "tpot_s": SLO_TPOT},
    }
    for k, v in (extra_cfg or {}).items():
        cur = cfg
        *head, last = k.split(".")
        for h in head:
            cur = cur.setdefault(h, {})
        cur[last] = v
    (d / "run.json").write_text(json.dumps({"config": cfg}))
    summary = summarize(requests, tl, end_s=replay_s, replay_s=replay_s, slo_ttft_s=SLO_TTFT, slo_tpot_s=SLO_TPOT,
                        extra={"simulated": True, "hardware_profile": hardware})
    (d / "summary.json").write_text(json.dumps(summary))
    return d


def attained_requests(n: int, n_met: int) -> pd.DataFrame:
    """``n`` requests of which exactly ``n_met`` meet the default SLO (the rest have TTFT 20 s)."""
    return requests_frame([0.1] * n_met + [20.0] * (n - n_met))
