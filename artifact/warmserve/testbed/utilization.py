"""Per-second utilisation of the real engines.

On the CPU: each engine's process tree (the API server and vLLM's engine-core
child) is sampled with psutil -- CPU time consumed in the interval divided by
the interval times the slot's cores gives the slot's ``busy`` fraction, and
the resident set size is recorded per process. On GPUs: NVML (``pynvml``)
gives the device's utilisation and used memory. Sampling runs as an asyncio
task on the run's loop; ``frame()`` turns the samples into the twin's
``utilization.parquet`` rows (plus a per-process side table).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass

import pandas as pd
import psutil


async def sample_until(sample_once: Callable[[], None], interval_s: float, stop: asyncio.Event) -> None:
    """Call ``sample_once`` (off the event loop) every ``interval_s`` until ``stop`` is set."""
    while not stop.is_set():
        await asyncio.to_thread(sample_once)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


@dataclass(slots=True)
class Sample:
    t_s: float
    gpu: int
    busy: float
    rss_bytes: int
    pid: int
    instance_id: int  # -1 for a standby (prewarmed) engine


def tree_cpu_rss(proc: psutil.Process) -> tuple[float, int]:
    """CPU seconds and resident bytes of a process and all its children (an engine is several
    processes: API server, engine core, worker); children that exit meanwhile are skipped."""
    cpu, rss = 0.0, 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss
    return cpu, rss


class ProcessSampler:
    """Samples the process trees of the engines the backend reports, every ``interval_s``."""

    def __init__(self, pids: Callable[[], dict[int, tuple[int, int | None]]], cores_per_slot: dict[int, int],
                 now: Callable[[], float], interval_s: float = 1.0) -> None:
        self._pids = pids
        self._cores = cores_per_slot
        self._now = now
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._last_cpu: dict[int, float] = {}
        self._procs: dict[int, psutil.Process] = {}

    def _tree_cpu_rss(self, pid: int) -> tuple[float, int]:
        proc = self._procs.get(pid)
        if proc is None:
            proc = self._procs[pid] = psutil.Process(pid)
        return tree_cpu_rss(proc)

    def sample_once(self) -> None:
        t = self._now()
        for pid, (gpu, iid) in self._pids().items():
            try:
                cpu, rss = self._tree_cpu_rss(pid)
            except psutil.Error:
                continue
            prev = self._last_cpu.get(pid)
            self._last_cpu[pid] = cpu
            busy = 0.0 if prev is None else (cpu - prev) / (self.interval_s * max(1, self._cores.get(gpu, 1)))
            self.samples.append(Sample(t, gpu, min(1.0, max(0.0, busy)), rss, pid, -1 if iid is None else iid))

    async def run(self, stop: asyncio.Event) -> None:
        await sample_until(self.sample_once, self.interval_s, stop)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.samples],
                            columns=["t_s", "gpu", "busy", "rss_bytes", "pid", "instance_id"])


class NvmlSampler:
    """GPU utilisation and memory through NVML (GPU machines only; not exercised here)."""

    def __init__(self, gpus: list[int], now: Callable[[], float], interval_s: float = 1.0) -> None:
        import pynvml  # noqa: PLC0415 - only on GPU machines

        self._nvml = pynvml
        pynvml.nvmlInit()
        self._handles = {g: pynvml.nvmlDeviceGetHandleByIndex(g) for g in gpus}
        self._now = now
        self.interval_s = interval_s
        self.samples: list[dict] = []

    def sample_once(self) -> None:
        t = self._now()
        for g, h in self._handles.items():
            util = self._nvml.nvmlDeviceGetUtilizationRates(h)
            mem = self._nvml.nvmlDeviceGetMemoryInfo(h)
            self.samples.append({"t_s": t, "gpu": g, "busy": util.gpu / 100.0, "used_bytes": int(mem.used)})

    async def run(self, stop: asyncio.Event) -> None:
        await sample_until(self.sample_once, self.interval_s, stop)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.samples, columns=["t_s", "gpu", "busy", "used_bytes"])
