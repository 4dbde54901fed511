"""Weight loads of the twin: one flow per TP shard, and the node's DRAM checkpoint cache.

A ``LoadJob`` is one model's weights going onto a GPU set; it completes when
its last shard does and then runs its waiters (a prewarm completing, or an
instance leaving its load phase). With ``host_cache`` a checkpoint already in
the node's DRAM cache skips the NVMe link; a load from NVMe then puts it in
the cache (LRU, ``host_cache_bytes`` per node). Without ``host_cache`` the
load goes through vLLM's own loader (``vllm_loader_GBps``). With
``prewarm_mechanism=sleep`` a prewarm lands in pinned host memory
(``to_host``) and a wake copies it from there to the GPUs (``wake``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from warmserve.control.features import BackendFeatures
from warmserve.control.seam import ClusterState, GpuSet
from warmserve.hardware import HardwareProfile
from warmserve.sim.links import Flow, LinkNetwork


class LoadJob:
    """One model's weights loading onto a GPU set (one flow per TP shard)."""

    __slots__ = ("model", "gpus", "flows", "pending", "waiters", "from_nvme", "nbytes", "done", "started", "detail")

    def __init__(self, model: str, gpus: GpuSet, from_nvme: bool, nbytes: int, detail: str = "") -> None:
        self.model = model
        self.gpus = gpus
        self.flows: list[Flow] = []
        self.pending = 0
        self.waiters: list[Callable[[], None]] = []
        self.from_nvme = from_nvme
        self.nbytes = nbytes
        self.done = False
        self.started = False  # flows running (a delayed job waits for its engine start first)
        self.detail = detail or ("nvme" if from_nvme else "host_cache")  # the timeline's detail column


class Loader:
    """Starts and cancels load jobs; owns the per-node DRAM checkpoint caches."""

    def __init__(self, net: LinkNetwork, state: ClusterState, hw: HardwareProfile, features: BackendFeatures,
                 tl: Callable[..., Any]) -> None:
        self.net = net
        self.state = state
        self.hw = hw
        self.features = features
        self.tl = tl
        self.host_cache: list[OrderedDict[tuple[str, int], int]] = [OrderedDict() for _ in range(state.nodes)]

    # ---- loads ---------------------------------------------------------------
    def start(self, model: str, gs: GpuSet, delay_s: float = 0.0, *, to_host: bool = False,
              wake: bool = False) -> LoadJob:
        """Load ``model``'s weights onto ``gs``; with ``delay_s`` the flows begin that much later
        (a prewarmed engine -- CPU standby or sleeping -- is started before its weights load).
        ``to_host``: into pinned host memory (a sleeping replica); ``wake``: from there onto ``gs``."""
        spec = self.state.models[model]
        node = gs[0] // self.state.gpus_per_node
        key = (spec.base, spec.tp)
        from_nvme = not wake
        if self.features.host_cache and not wake:
            cache = self.host_cache[node]
            if key in cache:
                cache.move_to_end(key)
                from_nvme = False
        job = LoadJob(model, gs, from_nvme, spec.bytes_per_gpu * len(gs), "wake" if wake else "")
        gpn = self.state.gpus_per_node
        for g in gs:
            links = self.net.path(g, node, g % gpn, from_nvme, to_gpu=not to_host,
                                  vllm_loader=not self.features.host_cache)
            f = Flow(node, links, spec.bytes_per_gpu, lambda _f: self._flow_done(job))
            job.flows.append(f)
        job.pending = len(job.flows)
        if delay_s > 0:
            self.net.loop.call_later(delay_s, lambda: self._begin(job))
        else:
            self._begin(job)
        return job

    def _begin(self, job: LoadJob) -> None:
        if job.done:  # cancelled while its engine was starting
            return
        job.started = True
        self.tl("load_start", job.model, gpus=job.gpus, nbytes=job.nbytes, detail=job.detail)
        for f in job.flows:
            self.net.start(f)

    def _flow_done(self, job: LoadJob) -> None:
        job.pending -= 1
        if job.pending:
            return
        job.done = True
        self.tl("load_done", job.model, gpus=job.gpus, nbytes=job.nbytes, detail=job.detail)
        if job.from_nvme and self.features.host_cache:
            spec = self.state.models[job.model]
            node = job.gpus[0] // self.state.gpus_per_node
            cache = self.host_cache[node]
            size = spec.weight_bytes
            if size <= self.hw.host_cache_bytes:
                cache[(spec.base, spec.tp)] = size
                while sum(cache.values()) > self.hw.host_cache_bytes:
                    cache.popitem(last=False)
        for w in job.waiters:
            w()
        job.waiters = []

    def cancel(self, job: LoadJob) -> None:
        if job.done:
            return
        moved = sum(self.net.cancel(f) for f in job.flows) if job.started else 0.0
        job.done = True
        job.waiters = []
        self.tl("load_cancel", job.model, gpus=job.gpus, nbytes=int(moved))
