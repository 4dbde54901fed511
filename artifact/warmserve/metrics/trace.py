"""Export a run's timeline as Chrome trace-event JSON (opens in ui.perfetto.dev).

Layout: one process per node (``pid`` = node), threads per GPU and lane
(``tid`` = local GPU x 100 + lane). Lanes keep complete (``ph: X``) slices
from overlapping on one thread, which trace viewers cannot draw: lane 0..9
instances (several only under colocation), 10..19 weight loads, 20..49
prewarmed replicas (several models coexist on a GPU). Evictions, KV
reservations and preemptions are instant events (``ph: i``); thread and
process names are metadata events (``ph: M``). Times are microseconds.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

LANES = {"instance": (0, 10), "load": (10, 10), "replica": (20, 30)}


def _gpus(s: str) -> list[int]:
    return [int(g) for g in str(s).split(",") if g]


class _Lanes:
    def __init__(self) -> None:
        self.ends: dict[tuple[int, str], list[float]] = {}

    def pick(self, gpu: int, cat: str, t0: float, t1: float) -> int:
        base, n = LANES[cat]
        ends = self.ends.setdefault((gpu, cat), [])
        for i, e in enumerate(ends):
            if e <= t0:
                ends[i] = t1
                return base + i
        if len(ends) < n:
            ends.append(t1)
            return base + len(ends) - 1
        return base + n - 1  # out of lanes: overlap on the last one (rare)


def chrome_trace(timeline: pd.DataFrame, gpus_per_node: int, end_s: float, title: str = "") -> dict[str, Any]:
    us = 1e6
    spans: list[tuple[float, float, str, str, list[int], dict]] = []  # (t0, t1, cat, name, gpus, args)
    instant: list[tuple[float, str, list[int], dict]] = []
    open_inst: dict[int, tuple[float, str, str, str]] = {}
    ready: dict[int, float] = {}
    open_load: dict[tuple[str, str], list[tuple[float, str, int]]] = {}
    open_rep: dict[tuple[str, str], tuple[float, bool]] = {}
    for r in timeline.itertuples(index=False):
        t, kind, model, gpus = float(r.t_s), str(r.kind), str(r.model), str(r.gpus)
        if kind == "instance_start":
            open_inst[int(r.instance_id)] = (t, model, gpus, str(r.start_kind))
        elif kind == "instance_ready":
            ready[int(r.instance_id)] = t
        elif kind == "instance_stop":
            iid = int(r.instance_id)
            if iid in open_inst:
                t0, m, g, k = open_inst.pop(iid)
                tr = ready.pop(iid, None)
                if tr is not None and tr > t0:
                    spans.append((t0, tr, "instance", f"start {m} ({k})", _gpus(g), {"instance": iid}))
                spans.append((tr if tr is not None else t0, t, "instance", f"serve {m}", _gpus(g),
                              {"instance": iid, "start_kind": k}))
        elif kind == "load_start":
            open_load.setdefault((model, gpus), []).append((t, str(r.detail), int(r.bytes)))
        elif kind in ("load_done", "load_cancel"):
            lst = open_load.get((model, gpus))
            if lst:
                t0, src, nbytes = lst.pop(0)
                spans.append((t0, t, "load",
                              f"load {model} from {src}" + (" (cancelled)" if kind == "load_cancel" else ""),
                              _gpus(gpus), {"bytes": nbytes}))
        elif kind == "prewarm_start":
            open_rep[(model, gpus)] = (t, False)
        elif kind == "prewarm_done":
            open_rep[(model, gpus)] = (
                t if str(r.detail) == "kept_on_stop" else open_rep.get((model, gpus), (t, False))[0], True)
        elif kind in ("evict", "claim"):
            if (model, gpus) in open_rep:
                t0, _ = open_rep.pop((model, gpus))
                spans.append((t0, t, "replica", f"replica {model}", _gpus(gpus), {"end": kind}))
            if kind == "evict":
                instant.append((t, f"evict {model}", _gpus(gpus), {"why": str(r.detail)}))
        elif kind in ("kv_reserve", "preempt"):
            instant.append((t, f"{kind} {model}", _gpus(gpus), {"blocks": int(r.blocks)}))
    for iid, (t0, m, g, k) in open_inst.items():
        tr = ready.get(iid)
        if tr is not None and tr > t0:
            spans.append((t0, tr, "instance", f"start {m} ({k})", _gpus(g), {"instance": iid}))
        spans.append((tr if tr is not None else t0, end_s, "instance",
                      f"serve {m}" if tr is not None else f"start {m} ({k})", _gpus(g), {"instance": iid}))
    for (m, g), (t0, _) in open_rep.items():
        spans.append((t0, end_s, "replica", f"replica {m}", _gpus(g), {}))
    events: list[dict[str, Any]] = []
    lanes = _Lanes()
    threads: set[tuple[int, int]] = set()
    for t0, t1, cat, name, gpu_ids, args in sorted(spans, key=lambda s: (s[0], s[1], s[3])):
        for gpu in gpu_ids:
            node, local = divmod(gpu, gpus_per_node)
            tid = local * 100 + lanes.pick(gpu, cat, t0, t1)
            threads.add((node, tid))
            events.append({"name": name, "cat": cat, "ph": "X", "ts": t0 * us, "dur": max(0.0, t1 - t0) * us,
                           "pid": node, "tid": tid, "args": args})
    for t, name, gpu_ids, args in instant:
        for gpu in gpu_ids:
            node, local = divmod(gpu, gpus_per_node)
            threads.add((node, local * 100))
            events.append({"name": name, "cat": "event", "ph": "i", "s": "t", "ts": t * us, "pid": node,
                           "tid": local * 100, "args": args})
    meta: list[dict[str, Any]] = []
    for node in sorted({n for n, _ in threads}):
        meta.append({"name": "process_name", "ph": "M", "pid": node, "tid": 0, "args": {"name": f"node {node}"}})
    for node, tid in sorted(threads):
        local, lane = divmod(tid, 100)
        cat = next(c for c, (b, n) in LANES.items() if b <= lane < b + n)
        label = f"GPU {node * gpus_per_node + local} {cat}s" + (
            f" #{lane - LANES[cat][0]}" if lane != LANES[cat][0] else "")
        meta.append({"name": "thread_name", "ph": "M", "pid": node, "tid": tid, "args": {"name": label}})
        meta.append({"name": "thread_sort_index", "ph": "M", "pid": node, "tid": tid, "args": {"sort_index": tid}})
    return {"traceEvents": meta + events, "displayTimeUnit": "ms", "otherData": {"title": title}}


def write_chrome_trace(path: Path, trace: dict[str, Any]) -> None:
    path.write_text(json.dumps(trace, separators=(",", ":")))
