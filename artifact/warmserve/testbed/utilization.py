"""Per-second utilisation of the real engines.

On the CPU: each engine's process tree (the API server and vLLM's engine-core
child) is sampled with psutil -- CPU time consumed in the interval divided by
the interval times the slot's cores gives the slot's ``busy`` fraction, and
the resident set size is recorded per process. On GPUs: NVML (``pynvml``, the
``gpu`` extra) gives each device's utilisation and each engine's device memory
(``NvmlSampler``; the stub testbed on fake GPUs answers the same calls from its
registry, ``warmserve.testbed.fake_gpu.FakeNvml``). Sampling runs as an asyncio
task on the run's loop; ``frame()`` turns the samples into the twin's
``utilization.parquet`` rows (plus a per-process side table).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import psutil

from warmserve.errors import InputError


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


class Sampler:
    """Samples taken every ``interval_s`` on the run's loop (``run``), as ``Sample`` rows (``frame``)."""

    interval_s: float
    samples: list[Sample]

    def sample_once(self) -> None:
        raise NotImplementedError

    async def run(self, stop: asyncio.Event) -> None:
        await sample_until(self.sample_once, self.interval_s, stop)

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(s) for s in self.samples],
                            columns=["t_s", "gpu", "busy", "rss_bytes", "pid", "instance_id"])


class ProcessSampler(Sampler):
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


def load_nvml() -> Any:
    """``pynvml`` (package ``nvidia-ml-py``, the ``gpu`` extra), initialised."""
    try:
        import pynvml  # noqa: PLC0415 - GPU machines only
    except ImportError:
        raise InputError("backend device cuda samples utilisation through NVML: pip install -e '.[gpu]' "
                         "(nvidia-ml-py)") from None
    pynvml.nvmlInit()
    return pynvml


class NvmlSampler(Sampler):
    """GPU utilisation and each engine's device memory through NVML, every ``interval_s``.

    ``devices`` maps each slot to ``(nvml, GPU id)``: the id is the slot's entry in
    ``backend.slots.cores`` (what ``CUDA_VISIBLE_DEVICES`` gets), not the slot's position,
    and the engines run with ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA numbers devices as NVML
    does. Rows have ``ProcessSampler``'s columns, so ``utilization()`` reads either: one per
    engine per GPU it uses, ``rss_bytes`` = the device memory of the engine's process tree
    (``nvmlDeviceGetComputeRunningProcesses``), ``busy`` = the device's utilisation on the
    first serving engine of the slot (0 on the others, so a shared GPU is not counted twice).
    """

    def __init__(self, engines: Callable[[], dict[int, tuple[tuple[int, ...], int | None]]],
                 devices: dict[int, tuple[Any, int]], now: Callable[[], float], interval_s: float = 1.0) -> None:
        self._engines = engines
        self._devices = devices
        self._now = now
        self.interval_s = interval_s
        self.samples: list[Sample] = []
        self._handles: dict[int, Any] = {}

    def _handle(self, slot: int) -> Any:
        if slot not in self._handles:
            nvml, gpu_id = self._devices[slot]
            self._handles[slot] = nvml.nvmlDeviceGetHandleByIndex(gpu_id)
        return self._handles[slot]

    def sample_once(self) -> None:
        t = self._now()
        by_slot: dict[int, list[tuple[int, int | None]]] = {}
        for pid, (slots, iid) in self._engines().items():
            for g in slots:
                by_slot.setdefault(g, []).append((pid, iid))
        for g, engines in sorted(by_slot.items()):
            if g not in self._devices:
                continue
            nvml, _ = self._devices[g]
            h = self._handle(g)
            util = nvml.nvmlDeviceGetUtilizationRates(h).gpu / 100.0
            used = {int(p.pid): int(p.usedGpuMemory or 0) for p in nvml.nvmlDeviceGetComputeRunningProcesses(h)}
            busy_given = False
            for pid, iid in engines:
                tree = {pid}
                with contextlib.suppress(psutil.Error):
                    tree |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
                busy = 0.0
                if iid is not None and not busy_given:
                    busy, busy_given = min(1.0, max(0.0, util)), True
                self.samples.append(Sample(t, g, busy, sum(used.get(p, 0) for p in tree), pid,
                                           -1 if iid is None else iid))
