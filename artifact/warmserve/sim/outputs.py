"""Turning the twin's flat records into the output tables of docs/design.md §4 (vectorised, after the run).

Built from a ``TwinRecord`` -- plain columns and rows the backend fills while it runs -- never from the
backend object itself.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from warmserve.cluster.ledger import CATEGORIES
from warmserve.metrics.schema import (
    REQUEST_COLUMNS,
    TIMELINE_COLUMNS,
    UTILIZATION_COLUMNS,
    TimelineRow,
    conform,
    constant_categorical,
    gpus_str,
    labels_categorical,
)
from warmserve.sim.requests import STATUS_NAMES, RequestTable

if TYPE_CHECKING:
    from warmserve.sim.starting import Start


@dataclass(slots=True, eq=False)
class TwinRecord:
    """What the twin's outputs are made of, filled by the backend during the run.

    ``starts``         instance id -> its ``Start`` (GPUs, start kind, phase times), every instance ever;
    ``timeline_rows``  one tuple per timeline event, in ``TIMELINE_COLUMNS`` order;
    ``seg_*``          busy intervals of the engines (instance id, start, end; contiguous ones merged);
    ``mem_*``          the ledger's change log (time, GPU, category, delta bytes);
    ``requests``       the replay's request table (None before a replay); ``end_s`` when the replay ended.
    """

    gpus: int
    gpus_per_node: int
    mem_t: array
    mem_gpu: array
    mem_cat: array
    mem_delta: array
    starts: dict[int, Start] = field(default_factory=dict)
    timeline_rows: list[TimelineRow] = field(default_factory=list)
    seg_inst: array = field(default_factory=lambda: array("q"))
    seg_t0: array = field(default_factory=lambda: array("d"))
    seg_t1: array = field(default_factory=lambda: array("d"))
    requests: RequestTable | None = None
    end_s: float = 0.0


_KINDS = ["warm", "prewarmed", "worker", "cold"]


def _overlap(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Length of [a, b] intersected with [lo, hi] (0 where empty or NaN)."""
    v = np.minimum(b, hi) - np.maximum(a, lo)
    return np.where(np.isfinite(v) & (v > 0), v, 0.0)


def build_request_log(rec: TwinRecord) -> pd.DataFrame:
    """The request log; ``system`` is left empty for the runner to fill."""
    req = rec.requests
    assert req is not None, "replay() first"
    starts = rec.starts
    iid = np.frombuffer(req.instance, dtype=np.int32).astype(np.int64)
    first = np.frombuffer(req.first, dtype=np.float64)
    finish = np.frombuffer(req.finish, dtype=np.float64)
    prefill = np.frombuffer(req.prefill, dtype=np.float64)
    status = np.frombuffer(req.status, dtype=np.int8)
    arrival = req.arrival_np
    # per-instance lifecycle, indexed by instance id + 1 (row 0 = no instance)
    m = max(starts, default=-1) + 2
    created, l0, l1, ready = (np.full(m, np.nan) for _ in range(4))
    kind = np.zeros(m, dtype=np.int64)
    gpu_labels = [""] * m
    for i, life in starts.items():
        created[i + 1], l0[i + 1], l1[i + 1], ready[i + 1] = life.t_created, life.t_load0, life.t_load1, life.t_ready
        kind[i + 1] = _KINDS.index(str(life.kind))
        gpu_labels[i + 1] = gpus_str(life.gpus)
    k = iid + 1
    has_first = np.isfinite(first)
    p = first - prefill  # prefill start of the iteration that made the first token
    waited = arrival < ready[k]  # arrived before its instance was ready
    lo = np.where(waited, arrival, np.nan)
    load = np.where(has_first, _overlap(lo, p, l0[k], l1[k]), np.nan)
    init = np.where(has_first, _overlap(lo, p, created[k], l0[k]) + _overlap(lo, p, l1[k], ready[k]), np.nan)
    queue = (p - arrival) - load - init
    ttft = queue + load + init + prefill
    out = req.out_np
    with np.errstate(invalid="ignore", divide="ignore"):
        tpot = np.where((out > 1) & np.isfinite(finish) & has_first, (finish - first) / (out - 1), np.nan)
    start_kind = np.where(iid < 0, len(_KINDS), np.where(waited, kind[k], 0))  # len(_KINDS) -> ""
    n = req.n
    df = pd.DataFrame({
        "request_id": req.request_id,
        "arrival_s": arrival,
        "model": pd.Categorical.from_codes(req.model_np, categories=req.model_names),
        "input_tokens": req.inp_np,
        "output_tokens": out,
        "system": constant_categorical("", n),
        "instance_id": iid,
        "gpus": labels_categorical(gpu_labels, k),
        "first_token_s": first,
        "finish_s": finish,
        "ttft_s": ttft,
        "tpot_s": tpot,
        "status": labels_categorical(STATUS_NAMES, status.astype(np.intp)),
        "start_kind": labels_categorical(_KINDS + [""], start_kind),
        "queue_s": queue,
        "load_s": load,
        "init_s": init,
        "prefill_s": np.where(has_first, prefill, np.nan),
    }, copy=False)  # no second copy of a 10^7-row log (pandas copies dict input by default)
    return conform(df, REQUEST_COLUMNS, "request log")


def build_timeline(rec: TwinRecord) -> pd.DataFrame:
    df = pd.DataFrame(rec.timeline_rows, columns=list(TIMELINE_COLUMNS))
    return conform(df, TIMELINE_COLUMNS, "timeline")


def build_utilization(rec: TwinRecord, interval_s: float) -> pd.DataFrame:
    """Per GPU and interval: busy fraction and memory by category (sampled at interval start)."""
    if interval_s <= 0:
        raise ValueError("utilization interval must be > 0")
    ngpu = rec.gpus
    nbins = max(1, math.ceil(rec.end_s / interval_s))
    edges = np.arange(nbins + 1, dtype=np.float64) * interval_s
    starts = edges[:-1]
    # memory: replay the ledger's change log per GPU
    lt = np.frombuffer(rec.mem_t, dtype=np.float64)
    lg = np.frombuffer(rec.mem_gpu, dtype=np.int32)
    lc = np.frombuffer(rec.mem_cat, dtype=np.int8)
    ld = np.frombuffer(rec.mem_delta, dtype=np.int64)
    mem = np.zeros((len(CATEGORIES), ngpu, nbins), dtype=np.int64)
    order = np.argsort(lg, kind="stable")  # time order is kept within a GPU
    bounds = np.searchsorted(lg[order], np.arange(ngpu + 1))
    for g in range(ngpu):
        idx = order[bounds[g]:bounds[g + 1]]
        if not len(idx):
            continue
        pos = np.searchsorted(lt[idx], starts, side="right") - 1
        for c in range(len(CATEGORIES)):
            cum = np.cumsum(np.where(lc[idx] == c, ld[idx], 0))
            mem[c, g] = np.where(pos >= 0, cum[np.maximum(pos, 0)], 0)
    # busy: per instance, cumulative busy time at the interval edges, added to its GPUs
    busy = np.zeros((ngpu, nbins))
    si = np.frombuffer(rec.seg_inst, dtype=np.int64)
    s0 = np.frombuffer(rec.seg_t0, dtype=np.float64)
    s1 = np.frombuffer(rec.seg_t1, dtype=np.float64)
    order = np.argsort(si, kind="stable")
    ids, first = np.unique(si[order], return_index=True)
    last = np.append(first[1:], len(order)) if len(ids) else first  # no busy segment at all: nothing to add
    for iid, a, z in zip(ids, first, last, strict=True):
        idx = order[a:z]
        t0, t1 = s0[idx], s1[idx]
        before = np.concatenate(([0.0], np.cumsum(t1 - t0)))
        j = np.searchsorted(t0, edges, side="right") - 1
        jj = np.maximum(j, 0)
        cum = np.where(j >= 0, before[jj] + np.minimum(edges, t1[jj]) - t0[jj], 0.0)
        frac = np.diff(cum) / interval_s
        for g in rec.starts[int(iid)].gpus:
            busy[g] += frac
    busy = np.clip(busy, 0.0, 1.0)
    gpu_ids = np.repeat(np.arange(ngpu), nbins)
    df = pd.DataFrame({
        "t_s": np.tile(starts, ngpu),
        "gpu": gpu_ids,
        "node": gpu_ids // rec.gpus_per_node,
        "busy": busy.reshape(-1),
        "weights_bytes": mem[0].reshape(-1),
        "kv_bytes": mem[1].reshape(-1),
        "prewarm_bytes": mem[2].reshape(-1),
    })
    return conform(df, UTILIZATION_COLUMNS, "utilization")
