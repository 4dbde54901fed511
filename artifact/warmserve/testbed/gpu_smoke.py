"""The GPU testbed's smoke test: four checks, one line each (``scripts/gpu_smoke.sh`` runs it).

1. ``two_models_one_gpu``: two tiny models prewarmed on GPU 0 (each a sleeping engine with its
   weights awake), a request starts one (its KV cache woken: mechanism ``sleep_wake``) and the
   other replica is evicted (its process stopped, and exited before the wake);
2. ``tp2``: a tensor-parallel start over GPUs 0 and 1 (skipped with one GPU);
3. ``nvml``: utilisation samples of the serving engines' device memory through NVML;
4. ``replay60``: a 60-second open-loop replay over three tiny models on the GPUs (more models than GPUs:
   idle instances are stopped keeping their weights, so starts are cold, worker and prewarmed).

``--fake`` runs the same checks against stub engines on fake GPUs (``backend=testbed-stub-gpu``), which
is how CI checks this script without a GPU. Exit status 1 if any check failed.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from warmserve.config import model_specs
from warmserve.control.controller import Controller
from warmserve.control.seam import Prewarm, StartInstance
from warmserve.testbed.stubs import LaunchOnIdle, ScriptedPolicy, gpu_stub_backend, workload

SMALL = ["tiny-s", "tiny-m"]  # the two small models (configs/model; checkpoints from warmserve.testbed.tiny_models)
REPLAY_S = 60.0
REPLAY_RPS = 2.0  # requests per second of the replay check, spread over the three models
REPLAY_TOKENS = (64, 32)  # input, output tokens of each replayed request
WAKE_AFTER_FAKE_S = 3.0  # stub engines start in ~0.5 s; room for a loaded 2-core CI machine
WAKE_AFTER_REAL_S = 60.0  # estimate: a tiny-model vLLM engine starts in well under a minute on a GPU (import,
                          # CUDA context, load, eager warm-up); the second prewarm must be done before the wake


class LaunchAndRetire(LaunchOnIdle):
    """``LaunchOnIdle`` plus scale-in: while a model waits with no instance, idle instances stop keeping
    their weights (each becomes a sleeping replica; a later start of its model adopts it)."""

    tick_interval_s = 0.5

    def on_tick(self, ctx) -> list:
        from warmserve.control.seam import InstancePhase, StopInstance

        starved = any(ctx.pending[m] and not ctx.state.instances_of(m) for m in ctx.state.models)
        if not starved:
            return []
        return [StopInstance(i.instance_id, True) for i in ctx.state.instances.values()
                if i.phase is InstancePhase.READY and i.inflight == 0 and not ctx.pending[i.model]]


def _backend(a: argparse.Namespace, tmp: Path, models, gpus: int, **kw):
    return gpu_stub_backend(tmp, models=models, gpus=gpus, stub=a.fake, gpu_ids=[str(g) for g in range(gpus)],
                            gpu_mem_bytes=a.gpu_mem_bytes, hardware=a.hardware, **kw)


def _run(backend, policy, rows, until_s: float):
    ctrl = Controller(backend, policy, list(backend.state.models))
    backend.replay(workload(rows), ctrl, until_s)
    return backend.request_log()


def two_models_one_gpu(a: argparse.Namespace, tmp: Path) -> str:
    mix = [{"name": f"{b}-0", "base": b} for b in SMALL]
    s, m = mix[0]["name"], mix[1]["name"]
    b = _backend(a, tmp, mix, 1, setup_ready=True, features={"memory_switching": True})
    # the second prewarm follows once the first standby sleeps (a standby starts awake: its KV is reserved)
    first_ready = lambda ctx: bool((r := ctx.state.gpus[0].replicas.get(s)) and r.ready)  # noqa: E731
    policy = ScriptedPolicy([Prewarm(s, (0,))], launch={s: StartInstance(s, (0,))},
                            later=[(first_ready, Prewarm(m, (0,)))])
    wake = a.wake_after_s if a.wake_after_s is not None else (WAKE_AFTER_FAKE_S if a.fake else WAKE_AFTER_REAL_S)
    log = _run(b, policy, [(wake, s, 16, 8)], wake + 60)
    kinds = [(e["kind"], e["model"]) for e in b.timeline_rows]
    ok = (("prewarm_done", s) in kinds and ("prewarm_done", m) in kinds and ("evict", m) in kinds
          and list(log.status) == ["ok"] and list(log.start_kind) == ["prewarmed"]
          and b.request_details().mechanism.iloc[0] == "sleep_wake")
    detail = f"status={list(log.status)} start={list(log.start_kind)} ttft={log.ttft_s.iloc[0]:.3f}s"
    return ("PASS " if ok else "FAIL ") + detail + ("" if ok else f" timeline={kinds}")


def tp2(a: argparse.Namespace, tmp: Path) -> str:
    if a.gpus < 2:
        return "SKIP one GPU"
    spec = replace(model_specs([{"name": "tiny-m-tp2", "base": "tiny-m"}])["tiny-m-tp2"], tp=2)
    b = _backend(a, tmp, {spec.name: spec}, 2, setup_ready=True)
    log = _run(b, ScriptedPolicy([StartInstance(spec.name, (0, 1))]), [(0.1, spec.name, 16, 8)], 60)
    ok = list(log.status) == ["ok"]
    return ("PASS " if ok else "FAIL ") + f"status={list(log.status)} ttft={log.ttft_s.iloc[0]:.3f}s"


def nvml(a: argparse.Namespace, tmp: Path) -> str:
    name = f"{SMALL[0]}-0"
    b = _backend(a, tmp, [{"name": name, "base": SMALL[0]}], 1, setup_ready=True)
    _run(b, ScriptedPolicy([StartInstance(name, (0,))]), [(0.1, name, 16, 200)], 30)
    raw = b.process_samples()
    serving = raw[raw.instance_id >= 0] if len(raw) else raw
    ok = len(serving) > 0 and bool((serving.rss_bytes > 0).all())
    mem = f"{serving.rss_bytes.max() / 2**30:.2f} GiB" if len(serving) else "-"
    return ("PASS " if ok else "FAIL ") + f"samples={len(raw)} engine device memory={mem}"


def replay60(a: argparse.Namespace, tmp: Path) -> str:
    mix = "tiny3"
    b = _backend(a, tmp, mix, a.gpus, features={"memory_switching": True, "worker_pool": True})
    rng = random.Random(1)
    names = list(b.state.models)
    rows, t = [], 0.0
    while True:
        t += rng.expovariate(REPLAY_RPS)
        if t >= REPLAY_S:
            break
        rows.append((t, rng.choice(names), *REPLAY_TOKENS))
    log = _run(b, LaunchAndRetire(), rows, REPLAY_S + 60)
    ok = bool((log.status == "ok").all())
    return (("PASS " if ok else "FAIL ") + f"{len(log)} requests, ok={int((log.status == 'ok').sum())}, "
            f"p50 TTFT {log.ttft_s.median():.3f}s, p99 {log.ttft_s.quantile(0.99):.3f}s")


CHECKS: dict[str, Callable[[argparse.Namespace, Path], str]] = {
    "two_models_one_gpu": two_models_one_gpu, "tp2": tp2, "nvml": nvml, "replay60": replay60}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fake", action="store_true", help="stub engines on fake GPUs (no GPU needed)")
    p.add_argument("--gpus", type=int, default=1, help="GPUs to use (0 .. gpus-1)")
    p.add_argument("--gpu-mem-bytes", type=int, default=None, help="the devices' real size (nvidia-smi)")
    p.add_argument("--hardware", default="a100-80gb", help="configs/hardware profile for the engine: block")
    p.add_argument("--wake-after-s", type=float, default=None,
                   help="when the request that wakes a replica comes "
                        f"(default {WAKE_AFTER_FAKE_S:.0f} s with --fake, {WAKE_AFTER_REAL_S:.0f} s "
                        "on GPUs: the second replica must be prewarmed by then)")
    p.add_argument("--only", nargs="*", default=list(CHECKS), choices=list(CHECKS))
    p.add_argument("--out", type=Path, default=Path("outputs/gpu-smoke"), help="engine logs, one folder per check")
    a = p.parse_args(argv)
    failed = 0
    for name in a.only:
        t = time.monotonic()
        out = a.out / name
        try:
            line = CHECKS[name](a, out)
        except Exception as exc:  # noqa: BLE001 - one line per check, whatever happened
            line = f"FAIL {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        if line.startswith("FAIL"):
            failed += 1
            line += f" [engine logs: {out / 'logs'}]"
        print(f"{name:<20} {line} ({time.monotonic() - t:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
