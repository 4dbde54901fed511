"""Benchmark: one WarmServe planning tick (forecast + replica demand + placement) at scale.

Prints the wall time of a *full* planning tick for ``--models`` models on
``--nodes`` x ``--gpus-per-node`` GPUs (default 100 models on 125 x 8 =
1,000 GPUs; target <= 50 ms), and the time of a tick where nothing changed
(the re-planning rule skips placement). Also prints the measured fit cost of
each forecaster on a synthetic week (``--fit``).

The cluster state is synthetic (labelled as such): a seeded mix of TP1/2/4
models with Llama-2 7B/13B/70B sizes, a fraction of GPUs running instances
(with KV lent), and idle GPUs already holding prewarmed replicas, so the
planner works against overlaps and nesting rules, not an empty cluster.

    .venv/bin/python scripts/bench_planner.py [--models 100] [--nodes 125] [--repeat 5] [--fit]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import deque

import numpy as np
import pandas as pd

from warmserve.config import load_yaml
from warmserve.control.features import BackendFeatures
from warmserve.control.load import LoadTracker
from warmserve.control.policy import PolicyContext, PolicyInputs
from warmserve.control.seam import (
    ClusterState,
    GpuState,
    InstancePhase,
    InstanceState,
    ModelSpec,
    ReplicaState,
    StartKind,
)
from warmserve.control.warmserve import WarmServePolicy
from warmserve.forecast import HoltWintersForecaster, PaperForecaster, SarimaxForecaster
from warmserve.hardware import load_profile

WS = load_yaml("system", "warmserve")  # the configured WarmServe system (policy keys, features)
BASES = {  # weight bytes and KV bytes per token from configs/model (Llama-2 fp16)
    "llama2-7b": 1,
    "llama2-13b": 2,
    "llama2-70b": 4,
}


def specs(n: int, rng: np.random.Generator) -> dict[str, ModelSpec]:
    out = {}
    for i in range(n):
        base = rng.choice(list(BASES), p=[0.6, 0.3, 0.1])
        ck = load_yaml("model", str(base))
        out[f"m{i:03d}"] = ModelSpec(f"m{i:03d}", str(base), int(ck.tp), int(ck.weight_bytes),
                                     int(ck.kv_bytes_per_token))
    return out


def synthetic_state(models: dict[str, ModelSpec], nodes: int, gpn: int, hw, rng: np.random.Generator) -> ClusterState:
    pool = int(float(hw.gpu_mem_bytes) * float(hw.gpu_mem_utilization))
    gpus = [GpuState(g, g // gpn, pool) for g in range(nodes * gpn)]
    st = ClusterState(nodes, gpn, gpus, dict(models))
    names = list(models)
    iid = 0
    # ~40 % of nodes run instances on their first half, with half of the KV lent
    for node in range(nodes):
        if rng.random() < 0.4:
            m = models[names[rng.integers(len(names))]]
            base = node * gpn
            gs = tuple(range(base, base + m.tp))
            kv = pool - m.bytes_per_gpu
            for g in gs:
                gpus[g].used_bytes = pool - kv // 2
                gpus[g].instances.append(iid)
            st.instances[iid] = InstanceState(iid, m.name, gs, InstancePhase.READY, StartKind.PREWARMED, 0.0,
                                              ready_s=1.0, inflight=int(rng.integers(0, 32)))
            iid += 1
    # idle GPUs hold some prewarmed replicas already (aligned TP groups)
    for node in range(nodes):
        for _ in range(2):
            m = models[names[rng.integers(len(names))]]
            start = node * gpn + int(rng.integers(0, gpn // m.tp)) * m.tp
            gs = tuple(range(start, start + m.tp))
            if any(gpus[g].instances or m.name in gpus[g].replicas or gpus[g].free_bytes < m.bytes_per_gpu for g in gs):
                continue
            for g in gs:
                gpus[g].replicas[m.name] = ReplicaState(m.name, gs, m.bytes_per_gpu, True)
                gpus[g].used_bytes += m.bytes_per_gpu
    return st


def priors(models: dict[str, ModelSpec], rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    for m in models:
        scale = float(rng.lognormal(3.0, 1.0))
        for w in range(12):
            mean = scale * (1 + 0.3 * np.sin(w / 2))
            rows.append({"model": m, "window": w, "prior_mean": mean,
                         "prior_peak": mean * float(rng.uniform(1.2, 2.5))})
    return pd.DataFrame(rows)


def bench_tick(n_models: int, nodes: int, gpn: int, repeat: int, seed: int) -> None:
    hw = load_yaml("hardware", "a100-80gb")
    times, idle_times, prewarms = [], [], []
    for r in range(repeat):
        rng = np.random.default_rng(seed + r)
        models = specs(n_models, rng)
        st = synthetic_state(models, nodes, gpn, hw, rng)
        inputs = PolicyInputs(models=models, nodes=nodes, gpus_per_node=gpn, hardware=load_profile(hw),
                              features=BackendFeatures.from_config(WS.features), window_s=300.0, seed=seed,
                              priors=priors(models, rng))
        knobs = {k: v for k, v in WS.policy.items() if k not in ("_target_", "forecaster")}
        policy = WarmServePolicy(inputs, forecaster=PaperForecaster(), **knobs)
        ctx = PolicyContext(state=st, load=LoadTracker(list(models)), pending={m: deque() for m in models}, now=1.0)
        t0 = time.perf_counter()
        cmds = policy.on_tick(ctx)  # forecast already fitted; autoscale + KV + full placement
        times.append(time.perf_counter() - t0)
        prewarms.append(sum(1 for c in cmds if type(c).__name__ == "Prewarm"))
        t0 = time.perf_counter()
        policy.on_tick(ctx)  # nothing changed (commands not applied): the re-planning rule skips placement
        idle_times.append(time.perf_counter() - t0)
    print(f"planning tick, {n_models} models on {nodes}x{gpn}={nodes * gpn} GPUs (synthetic state, a100-80gb sizes):")
    print(f"  full tick   median {statistics.median(times) * 1e3:.1f} ms  max {max(times) * 1e3:.1f} ms  "
          f"({statistics.median(prewarms):.0f} replicas placed; target <= 50 ms)")
    print(f"  unchanged   median {statistics.median(idle_times) * 1e3:.2f} ms")


def bench_fit(seed: int) -> None:
    """Fit cost of each forecaster on a synthetic 4-model week (3 history days of 288 windows)."""
    rng = np.random.default_rng(seed)
    models = {k: v for k, v in list(specs(4, rng).items())}
    rows = []
    for i, m in enumerate(models):
        replay_day = 3 + i
        for w in range(7 * 288):
            v = 20 + 10 * np.sin(2 * np.pi * w / 288) + rng.normal(0, 2)
            rows.append({"model": m, "window": w, "day": w // 288, "window_of_day": w % 288, "mean": v,
                         "peak": 1.6 * v, "replayed": replay_day * 288 <= w < replay_day * 288 + 12})
    inputs = PolicyInputs(models=models, nodes=1, gpus_per_node=8, hardware=None, features=BackendFeatures(),
                          window_s=300.0, seed=seed, priors=priors(models, rng),
                          week_load=pd.DataFrame(rows))
    print("forecaster fit cost (4 models x mean/peak, 3-6 days of 300 s windows, synthetic week):")
    for f in (PaperForecaster(), HoltWintersForecaster(), SarimaxForecaster()):
        f.fit(inputs)
        t0 = time.perf_counter()
        f.observe({m: (20.0, 30.0) for m in models})
        f.predict()
        step = time.perf_counter() - t0
        print(f"  {f.name:13s} fit {f.fit_seconds:7.3f} s   one observe+predict {step * 1e3:7.1f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=100)
    ap.add_argument("--nodes", type=int, default=125)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fit", action="store_true", help="also measure forecaster fit costs (~10-30 s)")
    a = ap.parse_args()
    bench_tick(a.models, a.nodes, a.gpus_per_node, a.repeat, a.seed)
    if a.fit:
        bench_fit(a.seed)


if __name__ == "__main__":
    main()
