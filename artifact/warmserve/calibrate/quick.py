"""The short CPU calibration (``python -m warmserve.calibrate --quick``): minutes, on the machine that compares.

The machine's speed drifts ~2x between days (docs/environment.md §4), so a twin calibrated on
another day is compared with a different machine. ``scripts/sim_vs_real.sh`` therefore
calibrates right before its runs, on the same machine; this mode keeps that under ~5 minutes on
the 2-core machine (engine starts are 30-45 s there) by measuring each start once instead of
``--start-repeats`` times, each latency point ``QUICK_REPEATS`` times, and the start next to a
busy engine for the first model only, with the neighbour being the engine the latency was just
measured on (the full mode starts a separate neighbour, ~40 s more per model). The raw JSON
records the machine (no hostname), the revision, when it was measured and the load average
before and after, so a comparison can check it came from the same machine and revision as its
runs (``warmserve.analysis.sim_vs_real``).
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import aiohttp

from warmserve.calibrate import cpu
from warmserve.calibrate.machine import describe, git_revision, now_iso
from warmserve.config import model_checkpoint
from warmserve.testbed.engines import EngineProcess
from warmserve.testbed.hostpin import warm_page_cache
from warmserve.testbed.mechanisms import EngineConfig, EngineFactory
from warmserve.testbed.ports import PortAllocator

QUICK_REPEATS = 2  # repeats of each prefill / decode point in quick mode (the full calibration used 7; ours)


async def _loaded_start(factory: EngineFactory, ports: PortAllocator, session, busy: EngineProcess, base: str,
                        load_cores: str, vocab: int, timeout_s: float) -> dict:
    """A cold start on ``load_cores`` while ``busy`` (already serving, on the other slot) runs closed-loop
    streams: the start slowdown next to a busy neighbour without starting a neighbour just for it."""
    stop = asyncio.Event()
    sent: list[int] = []
    streams = [asyncio.create_task(cpu._keep_busy(session, busy.spec.url, base, vocab, stop, sent))
               for _ in range(cpu.LOAD_STREAMS)]
    try:
        await asyncio.sleep(cpu.LOAD_SETTLE_S)
        run = await cpu._cold_start(factory, ports, session, base, load_cores, timeout_s, "-loaded")
    finally:
        stop.set()
        await asyncio.gather(*streams, return_exceptions=True)
    return {"cold_loaded_s": run["cold_s"], "load_requests": len(sent), "loaded_start_cores": load_cores}


async def quick_model(factory: EngineFactory, ports: PortAllocator, base: str, cores: str, vocab: int,
                      repeats: int, timeout_s: float, log, load_cores: str | None = None) -> dict:
    """One model base: one cold start, one worker start, latency on that engine, optionally one loaded
    start. Same raw fields as ``warmserve.calibrate.cpu.calibrate_model`` (runs of one)."""
    files = sum(f.stat().st_size for f in (factory.checkpoint_dir / base).glob("*.safetensors"))
    out: dict = {"base": base, "weight_bytes": int(model_checkpoint(base).weight_bytes), "file_bytes": files,
                 "start_repeats": 1}
    async with aiohttp.ClientSession() as session:
        cold = await cpu._cold_start(factory, ports, session, base, cores, timeout_s, "q")
        out.update(cpu._median_of([cold]))
        log(f"{base}: cold start {out['cold_s']:.1f} s")
        worker, pre = await cpu._worker_start(factory, ports, session, base, cores, timeout_s, "q")
        try:
            out.update(cpu._median_of([worker]))
            log(f"{base}: worker start {out['worker_s']:.1f} s (import before it {out['import_s']:.1f} s)")
            out.update(await cpu._latency(session, pre.spec.url, base, vocab, repeats))
            log(f"{base}: prefill {out['prefill']}, decode {out['decode']}")
            if load_cores:
                out.update(await _loaded_start(factory, ports, session, pre, base, load_cores, vocab, timeout_s))
                log(f"{base}: cold start next to a busy engine {out['cold_loaded_s']:.1f} s")
        finally:
            pre.stop(10)
            ports.release(pre.spec.port)
    return out


def run_quick(engine_cfg: dict, bases: list[str], checkpoint_dir: Path, cores: str, vocab: int, log_dir: Path,
              timeout_s: float, log=print, load_cores: str | None = None, repeats: int = QUICK_REPEATS,
              loaded_models: int = 1, port_first: int = 18900) -> dict:
    """Measure ``bases`` (the loaded start for the first ``loaded_models`` only); raw dict for
    ``warmserve.calibrate.profile.cpu_profile`` plus provenance under ``_``-keys."""
    t0 = time.monotonic()
    raw: dict = {"_machine": describe(), "_git_revision": git_revision(), "_measured_at": now_iso(),
                 "_quick": True, "_loadavg": list(os.getloadavg())}
    raw["_page_cache_warmed_bytes"] = warm_page_cache(checkpoint_dir / b for b in bases)
    factory = EngineFactory(EngineConfig.from_cfg(engine_cfg), checkpoint_dir, "127.0.0.1", log_dir)
    ports = PortAllocator(port_first, 100)
    for i, base in enumerate(bases):
        raw[base] = asyncio.run(quick_model(factory, ports, base, cores, vocab, repeats, timeout_s, log,
                                            load_cores if i < loaded_models else None))
    raw["_memcpy_GBps"] = cpu.memcpy_GBps()
    raw["_loadavg_end"] = list(os.getloadavg())
    raw["_wall_s"] = round(time.monotonic() - t0, 1)
    return raw
