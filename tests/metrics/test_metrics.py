"""Summary statistics, trace export and writers on small hand-made tables."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from warmserve.metrics.schema import REQUEST_COLUMNS, TIMELINE_COLUMNS, conform
from warmserve.metrics.summary import summarize
from warmserve.metrics.trace import chrome_trace


def _requests() -> pd.DataFrame:
    nan = np.nan
    rows = [
        # id, arr, model, in, out, sys, iid, gpus, first, fin, ttft, tpot, status, kind, q, l, i, p
        (0, 0.0, "a", 10, 3, "s", 0, "0", 1.0, 1.2, 1.0, 0.1, "ok", "cold", 0.1, 0.5, 0.3, 0.1),
        (1, 1.0, "a", 10, 1, "s", 0, "0", 1.5, 1.5, 0.5, nan, "ok", "warm", 0.4, 0.0, 0.0, 0.1),
        (2, 2.0, "b", 10, 5, "s", 1, "1", 9.0, 9.8, 7.0, 0.2, "ok", "prewarmed", 6.0, 0.0, 0.9, 0.1),
        (3, 3.0, "b", 10, 5, "s", -1, "", nan, nan, nan, nan, "timeout", "", nan, nan, nan, nan),
    ]
    return conform(pd.DataFrame(rows, columns=list(REQUEST_COLUMNS)), REQUEST_COLUMNS, "t")


def _timeline() -> pd.DataFrame:
    nan = np.nan
    rows = [
        (0.0, "instance_start", "a", 0, "0", 100, 10, "cold", "", nan, nan),
        (0.0, "load_start", "a", -1, "0", 100, 0, "", "nvme", nan, nan),
        (0.4, "load_done", "a", -1, "0", 100, 0, "", "nvme", nan, nan),
        (0.9, "instance_ready", "a", 0, "0", 0, 0, "", "", nan, nan),
        (1.0, "prewarm_start", "b", -1, "1", 50, 0, "", "", nan, nan),
        (1.0, "load_start", "b", -1, "1", 50, 0, "", "nvme", nan, nan),
        (2.0, "load_done", "b", -1, "1", 50, 0, "", "nvme", nan, nan),
        (2.0, "prewarm_done", "b", -1, "1", 50, 0, "", "", nan, nan),
        (2.5, "prewarm_start", "a", -1, "1", 40, 0, "", "", nan, nan),
        (3.0, "claim", "b", -1, "1", 50, 0, "", "", nan, nan),
        (3.0, "evict", "a", -1, "1", 40, 0, "", "claimed by b", nan, nan),
        (3.0, "instance_start", "b", 1, "1", 50, 10, "prewarmed", "", nan, nan),
        (4.0, "instance_ready", "b", 1, "1", 0, 0, "", "", nan, nan),
        (5.0, "kv_reserve", "a", 0, "0", 10, 2, "", "", nan, nan),
        (6.0, "instance_stop", "a", 0, "0", 0, 0, "", "", nan, nan),
        (6.0, "forecast", "a", -1, "", 0, 0, "", "", 3.0, 5.0),
    ]
    return conform(pd.DataFrame(rows, columns=list(TIMELINE_COLUMNS)), TIMELINE_COLUMNS, "t")


def test_summary_numbers() -> None:
    s = summarize(_requests(), _timeline(), end_s=10.0, replay_s=4.0, slo_ttft_s=2.0, slo_tpot_s=0.15)
    o = s["overall"]
    assert (o["requests"], o["ok"], o["timeout"]) == (4, 3, 1)
    assert o["ttft_mean"] == pytest.approx((1.0 + 0.5 + 7.0) / 3)
    assert o["ttft_p50"] == pytest.approx(1.0)
    assert o["ttft_mean_published"] == pytest.approx((1.0 + 0.5 + 7.0 + 999.0) / 4)
    assert o["tpot_mean"] == pytest.approx(0.15)
    assert o["slo_attainment"] == pytest.approx(2 / 4)  # request 0 (tpot 0.1) and 1 (one token)
    assert o["goodput_rps"] == pytest.approx(2 / 4.0)
    assert o["gpu_seconds"] == pytest.approx(6.0 + 7.0)  # GPU 0: 0-6, GPU 1: 3-10
    assert o["starts_by_kind"] == {"warm": 0, "prewarmed": 1, "worker": 0, "cold": 1}
    assert o["prewarm_hit_rate"] == pytest.approx(0.5)
    assert o["bytes_loaded"] == 150
    assert s["per_model"]["b"]["timeout"] == 1 and s["per_model"]["a"]["gpu_seconds"] == pytest.approx(6.0)


def test_trace_is_valid_trace_event_json() -> None:
    tr = chrome_trace(_timeline(), gpus_per_node=8, end_s=10.0)
    json.loads(json.dumps(tr))
    evs = tr["traceEvents"]
    assert {e["ph"] for e in evs} <= {"X", "i", "M"}
    for e in evs:
        assert isinstance(e["pid"], int) and isinstance(e["tid"], int)
        if e["ph"] == "X":
            assert e["dur"] >= 0 and e["ts"] >= 0
    names = {e["name"] for e in evs if e["ph"] != "M"}
    assert {"start a (cold)", "serve a", "replica b", "replica a", "evict a", "kv_reserve a"} <= names
    # complete slices on one thread never overlap (viewers cannot draw that)
    by_tid: dict = {}
    for e in evs:
        if e["ph"] == "X":
            by_tid.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))
    for spans in by_tid.values():
        spans.sort()
        for (_, a1), (b0, _) in zip(spans, spans[1:], strict=False):
            assert b0 >= a1 - 1e-6


def test_conform_rejects_missing_columns() -> None:
    with pytest.raises(ValueError, match="missing columns"):
        conform(pd.DataFrame({"t_s": [1.0]}), TIMELINE_COLUMNS, "timeline")
