"""Benchmark the cluster twin: paper scale, internet scale, and how cost grows.

    .venv/bin/python scripts/bench_sim.py                    # everything (internet scale: full 24 h)
    .venv/bin/python scripts/bench_sim.py --internet-hours 2 # reduced internet point, extrapolated to 24 h
    .venv/bin/python scripts/bench_sim.py --skip-internet

Prints: paper-scale wall time (16 GPUs, 4 models, 20 min at 10 req/s, static
system, replay only and replay + all outputs); simulated requests per
wall-second; internet-scale wall time and peak RSS (1,000 GPUs, 100 models,
24 h, ~10^7 requests); and tables of cost vs requests and vs GPUs.

Workloads here are SYNTHETIC (Poisson arrivals, power-law model shares,
uniform token lengths; ``warmserve.sim.synthetic``); the hardware is the
simulated ``a100-80gb`` profile. Wall times depend on the machine and on what
else runs on it: each section prints the load average, and CPU seconds
(``time.process_time``) next to wall seconds, the steadier figure on a shared
machine.

Where the time goes (measured, November 2026): a replayed request costs ~3.3
heap events and ~25-30 us of CPU on this 2-core machine, of which a bare
3-event ``heapq`` loop is ~5.5 us; the rest is the controller (load tracking,
routing through the policy), the engine's scheduler and the request columns.
Profiles: ``py-spy record -r 200 -f raw -- python scripts/bench_sim.py ...``.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from warmserve.config import load_yaml, model_specs
from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import PolicyInputs
from warmserve.control.static import StaticPolicy
from warmserve.hardware import load_profile
from warmserve.metrics.schema import constant_categorical
from warmserve.metrics.summary import summarize
from warmserve.metrics.writers import write_run
from warmserve.sim.backend import SimBackend
from warmserve.sim.synthetic import synthetic_workload


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux: KiB


def internet_models(n: int) -> list[dict]:
    """n served models: 70 % Llama-2-7B (TP1), 20 % 13B (TP2), 10 % 70B (TP4), interleaved."""
    bases = ["llama2-7b"] * 7 + ["llama2-13b"] * 2 + ["llama2-70b"]
    return [{"name": f"m{i:03d}-{bases[i % 10]}", "base": bases[i % 10]} for i in range(n)]


def static_counts(specs: dict, shares: np.ndarray, gpus: int) -> dict[str, int]:
    """Instances per model proportional to its request share, filling about 90 % of the GPUs."""
    tp = np.array([s.tp for s in specs.values()])
    raw = shares * 0.9 * gpus / (shares * tp).sum()
    counts = np.maximum(1, np.floor(raw)).astype(int)
    while (counts * tp).sum() > gpus:
        counts[np.argmax(counts)] -= 1
    return dict(zip(specs, counts.tolist(), strict=True))


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(t: tuple[float, float]) -> tuple[float, float]:
    """(wall s, CPU s) since ``t``: on a shared machine CPU time is the steadier figure."""
    return time.perf_counter() - t[0], time.process_time() - t[1]


def run_case(specs: dict, nodes: int, gpn: int, rate: float, duration: float, *, alpha: float = 1.0,
             out_tokens: tuple[int, int] = (3, 1023), counts: dict | None = None, outputs: bool = False,
             util_interval: float = 1.0, seed: int = 0) -> dict:
    hw = load_yaml("hardware", "a100-80gb")
    t0 = _clock()
    wl = synthetic_workload(list(specs), rate_rps=rate, duration_s=duration, alpha=alpha, output_tokens=out_tokens,
                            seed=seed)
    t_wl = _since(t0)[0]
    backend = SimBackend(models=specs, cluster={"nodes": nodes, "gpus_per_node": gpn}, hardware=hw,
                         features=BackendFeatures())
    static = load_yaml("system", "static")  # the configured static system (its policy keys and features)
    inputs = PolicyInputs(models=specs, nodes=nodes, gpus_per_node=gpn, hardware=load_profile(hw),
                          features=BackendFeatures.from_config(static.features), window_s=300.0, seed=seed)
    knobs = {k: v for k, v in static.policy.items() if k not in ("_target_", "instances")}
    policy = StaticPolicy(inputs, instances=counts, **knobs)
    ctl = Controller(backend, policy, list(specs))
    gc.collect()
    t1 = _clock()
    info = backend.replay(wl, ctl, duration + 1800.0)
    t_replay, c_replay = _since(t1)
    del wl  # the twin keeps its own copy of the columns (RequestTable); free ~50 B a request for the outputs
    res = {"requests": info.requests, "events": info.events, "workload_s": t_wl, "replay_s": t_replay,
           "replay_cpu_s": c_replay, "unfinished": info.unfinished, "sim_end_s": info.end_s,
           "instances": sum((counts or {}).values())}
    if outputs:
        t2 = _clock()
        req = backend.request_log()
        req["system"] = constant_categorical("static", len(req))
        tl = backend.timeline()
        ut = backend.utilization(util_interval)
        summ = summarize(req, tl, end_s=info.end_s, replay_s=duration, slo_ttft_s=5.0, slo_tpot_s=0.15)
        with tempfile.TemporaryDirectory() as d:
            write_run(Path(d), requests=req, timeline=tl, utilization=ut, run={"name": "bench"}, summary=summ,
                      gpus_per_node=gpn, end_s=info.end_s)
        res["outputs_s"], res["outputs_cpu_s"] = _since(t2)
        res["ok"] = summ["overall"]["ok"]
        res["ttft_p99"] = summ["overall"]["ttft_p99"]
    res["rss_gb"] = peak_rss_gb()
    return res


def _load() -> str:
    return "load average {:.1f} {:.1f} {:.1f} on {} cores".format(*os.getloadavg(), os.cpu_count())


def paper() -> None:
    specs = model_specs("paper4")
    counts = {"llama2-7b-0": 6, "llama2-7b-1": 3, "llama2-13b-0": 1, "llama2-70b-0": 1}  # 15 of 16 GPUs
    run_case(specs, 2, 8, 2.0, 60.0, counts=counts)  # warm-up (imports, caches)
    best = None
    for _ in range(3):
        r = run_case(specs, 2, 8, 10.0, 1200.0, counts=counts, outputs=True)
        if best is None or r["replay_s"] < best["replay_s"]:
            best = r
    assert best is not None
    print("## Paper scale (2 x 8 simulated a100-80gb GPUs, 4 models, 20 min at 10 req/s, synthetic, static)")
    print(f"{_load()}")
    print(f"requests {best['requests']:,}, heap events {best['events']:,}, unfinished {best['unfinished']}")
    print(f"replay wall {best['replay_s']:.2f} s (CPU {best['replay_cpu_s']:.2f} s; best of 3); "
          f"replay + outputs {best['replay_s'] + best['outputs_s']:.2f} s")
    print(f"simulated requests per wall-second: {best['requests'] / best['replay_s']:,.0f} "
          f"(per CPU-second: {best['requests'] / best['replay_cpu_s']:,.0f})")
    print()


def internet(hours: float, models: int = 100, gpus: int = 1000, rate: float = 116.0) -> None:
    specs = model_specs(internet_models(models))
    shares = np.array([(i + 1) ** -1.0 for i in range(models)])
    shares /= shares.sum()
    counts = static_counts(specs, shares, gpus)
    nodes = gpus // 8
    dur = hours * 3600.0
    load0 = _load()
    r = run_case(specs, nodes, 8, rate, dur, counts=counts, outputs=True, util_interval=60.0, out_tokens=(3, 512))
    total = r["workload_s"] + r["replay_s"] + r["outputs_s"]
    print(f"## Internet scale ({nodes} x 8 = {gpus} simulated GPUs, {models} models, {hours:g} h at {rate:g} req/s, "
          "synthetic, static; utilisation per 60 s)")
    print(f"before: {load0}; after: {_load()}")
    print(f"requests {r['requests']:,}, heap events {r['events']:,}, unfinished {r['unfinished']}, "
          f"instances {r['instances']}")
    print(f"workload gen {r['workload_s']:.1f} s, replay {r['replay_s']:.1f} s (CPU {r['replay_cpu_s']:.1f} s), "
          f"outputs {r['outputs_s']:.1f} s (CPU {r['outputs_cpu_s']:.1f} s), total {total:.1f} s; "
          f"peak RSS {r['rss_gb']:.2f} GB")
    print(f"simulated requests per wall-second (replay): {r['requests'] / r['replay_s']:,.0f} "
          f"(per CPU-second: {r['requests'] / r['replay_cpu_s']:,.0f})")
    if hours < 24:
        f = 24 / hours
        cpu = r["workload_s"] + r["replay_cpu_s"] + r["outputs_cpu_s"]
        print(f"EXTRAPOLATED to 24 h (x{f:g}, linear in requests; measured point above): total ~{total * f:.0f} s "
              f"wall, ~{cpu * f:.0f} s CPU; RSS grows with requests (per-request arrays), not measured at 24 h")
    print()


def scaling() -> None:
    specs = model_specs("paper4")
    print("## Cost vs requests (16 GPUs, 4 models, static; replay only)")
    print(f"{_load()}")
    print("| requests | replay wall s | replay CPU s | req per CPU-s | events/request |")
    print("|---:|---:|---:|---:|---:|")
    counts = {"llama2-7b-0": 6, "llama2-7b-1": 3, "llama2-13b-0": 1, "llama2-70b-0": 1}
    for rate in (2.5, 5, 10, 20):
        r = run_case(specs, 2, 8, rate, 1200.0, counts=counts)
        print(f"| {r['requests']:,} | {r['replay_s']:.2f} | {r['replay_cpu_s']:.2f} | "
              f"{r['requests'] / r['replay_cpu_s']:,.0f} | {r['events'] / max(r['requests'], 1):.1f} |")
    print()
    print("## Cost vs GPUs (100 models on 100-1000 GPUs, 0.116 req/s per GPU, 20 min; replay only)")
    print(f"{_load()}")
    print("| GPUs | instances | requests | replay wall s | replay CPU s | req per CPU-s |")
    print("|---:|---:|---:|---:|---:|---:|")
    mspecs = model_specs(internet_models(100))
    shares = np.array([(i + 1) ** -1.0 for i in range(100)])
    shares /= shares.sum()
    for gpus in (200, 400, 1000):
        counts = static_counts(mspecs, shares, gpus)
        r = run_case(mspecs, gpus // 8, 8, 0.116 * gpus, 1200.0, counts=counts, out_tokens=(3, 512))
        print(f"| {gpus} | {r['instances']} | {r['requests']:,} | {r['replay_s']:.2f} | {r['replay_cpu_s']:.2f} | "
              f"{r['requests'] / r['replay_cpu_s']:,.0f} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--internet-hours", type=float, default=24.0, help="replayed hours at internet scale")
    ap.add_argument("--skip-internet", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    a = ap.parse_args()
    print(f"# bench_sim on {sys.platform}, python {sys.version.split()[0]}; machine shared with other work: "
          "wall times are noisy upper bounds\n")
    paper()
    if not a.skip_scaling:
        scaling()
    if not a.skip_internet:
        internet(a.internet_hours)
    if math.isfinite(peak_rss_gb()):
        print(f"peak RSS of this process: {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
