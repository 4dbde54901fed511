"""ServerlessLLM-style serving (Fu et al., OSDI'24): reactive autoscaling with fast, locality-aware loading.

Behaviour follows ServerlessLLM's public code (``sllm/serve``), rewritten:

* **Autoscaler** (``routers/roundrobin_router.py``, a 1 s loop per model):
  desired instances ``= ceil(in-flight / target)`` clamped to
  ``[min_instances, max_instances]``; if more are desired than exist, start
  *one* instance per loop; if fewer, stop one once the model has been idle
  (no request seen) for ``keep_alive_s``. ``min_instances = 0`` gives
  scale-to-zero. Stopped instances keep nothing on the GPU.
* **Startup-time-aware placement** (``schedulers/storage_aware_scheduler.py``):
  among nodes with enough free GPUs, pick the least estimated load time:
  ``size / pcie`` when the node's pinned DRAM pool holds the checkpoint, else
  ``node queue + size / disk``, ties to the lower node id. The node queue is
  the disk-load time of instances still starting there.
* **Multi-tier loading** (NVMe -> pinned DRAM -> GPU) is the backend's
  ``host_cache`` feature; which checkpoints a node's DRAM holds is this
  policy's *estimate*, kept as ServerlessLLM's store manager keeps it (an LRU
  of checkpoints loaded on the node, capacity ``host_cache_bytes``).

Deviations, for a like-for-like comparison: the target concurrency is the
same 32 requests per instance every system uses (ServerlessLLM's router
defaults to 2 for its own backends), and requests go to the least-loaded
instance under that capacity (the shared router) instead of round-robin.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from warmserve.control.policy import PolicyContext, PolicyInputs, SystemPolicy
from warmserve.control.seam import (
    Command,
    GpuSet,
    InstancePhase,
    Request,
    StartInstance,
    StopInstance,
)
from warmserve.errors import InputError
from warmserve.hardware import HardwareProfile


class ServerlessLLMPolicy(SystemPolicy):
    name = "serverlessllm"

    def __init__(
        self,
        inputs: PolicyInputs,
        target: int,
        min_instances: int,
        max_instances: int,
        keep_alive_s: float,
        tick_interval_s: float,
        pcie_GBps: float | None,
        disk_GBps: float | None,
        host_cache_bytes: int | None,
    ) -> None:
        if target < 1 or min_instances < 0 or max_instances < max(1, min_instances) or keep_alive_s < 0:
            raise InputError("system.policy: serverlessllm needs target >= 1, "
                             "0 <= min_instances <= max_instances, keep_alive_s >= 0")
        hw = inputs.hardware

        def profile(key: str) -> HardwareProfile:
            if hw is None:
                raise InputError(f"system.policy.{key}: null needs the hardware profile (or an explicit value)")
            return hw

        self.inputs = inputs
        self.specs = inputs.models
        self.models = list(inputs.models)
        self.target = target
        self.instance_capacity = target
        self.min_instances, self.max_instances = min_instances, max_instances
        self.keep_alive_s = keep_alive_s
        self.tick_interval_s = tick_interval_s
        # null = the typed profile's link rates (bytes/s there: the YAML's GB/s x 1e9)
        self.pcie = float(pcie_GBps) * 1e9 if pcie_GBps is not None else profile("pcie_GBps").pcie_h2d_Bps
        self.disk = float(disk_GBps) * 1e9 if disk_GBps is not None else profile("disk_GBps").nvme_Bps
        self.cache_bytes = (int(host_cache_bytes) if host_cache_bytes is not None
                            else profile("host_cache_bytes").host_cache_bytes)
        self._cache: list[OrderedDict[str, int]] = [OrderedDict() for _ in range(inputs.nodes)]
        self._last_seen: dict[str, float] = {m: 0.0 for m in self.models}
        self._idle_from: dict[str, float | None] = {m: None for m in self.models}
        self._from_disk: dict[tuple[str, GpuSet], float] = {}

    # ---- placement --------------------------------------------------------
    def _cached(self, node: int, base: str) -> bool:
        return base in self._cache[node]

    def _remember(self, node: int, base: str, size: int) -> None:
        cache = self._cache[node]
        cache[base] = size
        cache.move_to_end(base)
        while sum(cache.values()) > self.cache_bytes and len(cache) > 1:
            cache.popitem(last=False)

    def load_estimate(self, ctx: PolicyContext, node: int, model: str) -> float:
        spec = self.specs[model]
        if self._cached(node, spec.base):
            return spec.weight_bytes / self.pcie
        gpn = ctx.state.gpus_per_node
        queue = sum(
            self.specs[i.model].weight_bytes / self.disk
            for i in ctx.state.instances.values()
            if i.phase == InstancePhase.STARTING and i.gpus[0] // gpn == node and (i.model, i.gpus) in self._from_disk
        )
        return queue + spec.weight_bytes / self.disk

    def _place(self, model: str, ctx: PolicyContext, claimed: set[int]) -> GpuSet | None:
        st, tp = ctx.state, self.specs[model].tp
        best: tuple[float, int, GpuSet] | None = None
        for node in range(st.nodes):
            idle = [g for g in range(node * st.gpus_per_node, (node + 1) * st.gpus_per_node)
                    if st.gpus[g].idle and g not in claimed]
            if len(idle) < tp:
                continue
            key = (self.load_estimate(ctx, node, model), node, tuple(idle[:tp]))
            if best is None or key < best:
                best = key
        if best is None:
            return None
        node, gpus = best[1], best[2]
        base = self.specs[model].base
        if not self._cached(node, base):
            self._from_disk[(model, gpus)] = ctx.now
        self._remember(node, base, self.specs[model].weight_bytes)
        return gpus

    # ---- SystemPolicy -----------------------------------------------------
    def pick_instance(self, request: Request, ctx: PolicyContext) -> int | None:
        self._last_seen[request.model] = ctx.now  # "idle time" restarts on every request (as its router does)
        return super().pick_instance(request, ctx)

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        gpus = self._place(model, ctx, set())
        return None if gpus is None else StartInstance(model, gpus)

    def on_tick(self, ctx: PolicyContext) -> list[Command]:
        out: list[Command] = []
        claimed: set[int] = set()
        for m in self.models:
            serving = ctx.serving(m)
            n = len(serving)
            desired = min(self.max_instances, max(self.min_instances, math.ceil(ctx.load.inflight(m) / self.target)))
            if desired > n:
                self._idle_from[m] = None
                gpus = self._place(m, ctx, claimed)
                if gpus is not None:
                    claimed.update(gpus)
                    out.append(StartInstance(m, gpus))
            elif desired < n:
                idle_from = self._idle_from[m]
                since = max(self._last_seen[m], idle_from if idle_from is not None else ctx.now)
                if self._idle_from[m] is None:
                    self._idle_from[m] = ctx.now
                if ctx.now - since >= self.keep_alive_s:
                    ready = [i for i in serving if i.phase == InstancePhase.READY]
                    if ready:
                        victim = min(ready, key=lambda i: (i.inflight, -i.instance_id))
                        out.append(StopInstance(victim.instance_id, keep_weights=False))
                        self._idle_from[m] = None
                        self._last_seen[m] = ctx.now
            else:
                self._idle_from[m] = None
        return out
