"""MuxServe-style serving (Duan et al., ICML'24): static colocation of all models, no cold starts.

MuxServe places every LLM once, up front, on GPU *meshes* and multiplexes
colocated LLMs on the same GPUs (compute shares via MPS, one unified KV
pool). Its placement (Algorithm 1 of the paper) sorts LLMs by computational
demand and greedily puts each on the mesh where it adds the least load,
subject to memory. Our rendering over the seam:

1. **Meshes**: each node is cut into meshes of ``mesh_gpus`` GPUs (default:
   the largest TP degree of the mix); an instance of TP ``t`` occupies ``t``
   aligned GPUs of one mesh.
2. **Demand** of a model = its forecast mean concurrency over the replayed
   hour (the mean of the published priors, ``history.parquet``) x per-GPU
   weight bytes (a proxy for compute per request). Instances per model:
   ``max(1, ceil(max prior peak / capacity))``, as many as fit.
3. **Greedy placement**, highest demand per instance first: the aligned GPU
   block with the least summed demand already placed there whose memory
   still holds the weights of everything on it plus ``min_kv_fraction`` of
   the pool per instance. Every model gets at least one instance, or the
   config is an ``InputError`` ("cannot hold the models").
4. **Memory split**: on each GPU, each instance gets its weights plus a
   share of the remaining pool proportional to its demand; an instance's
   ``mem_fraction`` is the smallest share over its GPUs.

Routing is the shared least-loaded router with per-instance ``capacity``;
nothing ever scales, stops or prewarms. The compute contention of colocated
instances is the backend's (``colocation_slowdown`` in the hardware profile).
"""

from __future__ import annotations

import math
from collections import defaultdict

from warmserve.control.policy import PolicyContext, PolicyInputs, SystemPolicy
from warmserve.control.seam import Command, GpuSet, StartInstance, min_kv_blocks
from warmserve.errors import InputError


class MuxServePolicy(SystemPolicy):
    name = "muxserve"

    def __init__(
        self,
        inputs: PolicyInputs,
        capacity: int = 32,
        mesh_gpus: int | None = None,
        min_kv_fraction: float = 0.05,
        max_instances_per_model: int | None = None,
    ) -> None:
        if not 0 <= min_kv_fraction < 1:
            raise InputError("system.policy.min_kv_fraction must be in [0, 1)")
        self.inputs = inputs
        self.specs = inputs.models
        self.models = list(inputs.models)
        self.instance_capacity = capacity
        self.min_kv_fraction = min_kv_fraction
        self.max_instances = max_instances_per_model
        hw = inputs.hardware
        if hw is None or "gpu_mem_bytes" not in hw:
            raise InputError("muxserve needs the hardware profile's gpu_mem_bytes")
        self.pool = int(float(hw["gpu_mem_bytes"]) * float(hw.get("gpu_mem_utilization", 1.0)))
        engine = hw.get("engine", {})
        bt = int(engine.get("kv_block_tokens", 1))
        # the least KV the backends start an engine with: one max_model_len sequence plus one block
        # (sim/backend.py start_instance); placement reserves the larger of it and min_kv_fraction of the pool
        self.kv_min = {m: min_kv_blocks(int(engine.get("max_model_len", 0)), bt) * -(-s.kv_bytes_per_token // s.tp) * bt
                       for m, s in self.specs.items()}
        self.kv_floor = {m: max(min_kv_fraction * self.pool, k) for m, k in self.kv_min.items()}
        self.mesh = mesh_gpus or max(s.tp for s in self.specs.values())
        if self.mesh > inputs.gpus_per_node or inputs.gpus_per_node % self.mesh:
            raise InputError(f"system.policy.mesh_gpus={self.mesh} must divide gpus_per_node={inputs.gpus_per_node}")
        self._plan = self.placement()

    # ---- placement ---------------------------------------------------------
    def _rates(self) -> dict[str, tuple[float, float]]:
        """(mean, peak) concurrency each model should be provisioned for."""
        pri = self.inputs.priors
        if pri is None:
            raise InputError("muxserve: its static placement needs forecast rates (priors, history.parquet)")
        out = {}
        for m in self.models:
            rows = pri[pri["model"] == m]
            if rows.empty:
                raise InputError(f"muxserve: no priors for model '{m}'")
            out[m] = (max(0.0, float(rows["prior_mean"].mean())), max(0.0, float(rows["prior_peak"].max())))
        return out

    def placement(self) -> list[tuple[str, GpuSet, float]]:
        """``(model, gpus, mem_fraction)`` per instance; ``InputError`` if the models do not fit."""
        rates = self._rates()
        self._rates_used = rates
        demand = {m: max(rates[m][0], 1e-9) * self.specs[m].bytes_per_gpu for m in self.models}
        want = {m: max(1, math.ceil(rates[m][1] / self.instance_capacity)) for m in self.models}
        if self.max_instances:
            want = {m: min(w, self.max_instances) for m, w in want.items()}
        n_gpus = self.inputs.nodes * self.inputs.gpus_per_node
        weights = [0] * n_gpus  # bytes of weights per GPU
        load = [0.0] * n_gpus  # demand placed per GPU
        floors = [0.0] * n_gpus  # KV floors (bytes) of the instances per GPU
        placed: list[tuple[str, GpuSet]] = []
        have: dict[str, int] = defaultdict(int)
        # one instance of every model first (biggest demand first), then extra ones by demand per instance
        order = sorted(self.models, key=lambda m: (-demand[m], self.models.index(m)))
        queue = [(m, True) for m in order]
        while queue:
            m, mandatory = queue.pop(0)
            spec = self.specs[m]
            taken = {g for pm, pg in placed if pm == m for g in pg}  # never two instances of a model on a GPU
            block = self._best_block(spec.tp, spec.bytes_per_gpu + self.kv_floor[m], weights, load, floors,
                                     demand[m] / want[m], taken)
            if block is None:
                if mandatory:
                    raise InputError(
                        f"muxserve: placement cannot hold the models: no mesh has room for '{m}' "
                        f"({spec.bytes_per_gpu} B/GPU, TP {spec.tp}) on {self.inputs.nodes}x{self.inputs.gpus_per_node} GPUs"
                    )
                continue
            for g in block:
                weights[g] += spec.bytes_per_gpu
                load[g] += demand[m] / want[m]
                floors[g] += self.kv_floor[m]
            placed.append((m, block))
            have[m] += 1
            if mandatory and m == order[-1]:
                extra = sorted(self.models, key=lambda x: (-demand[x] / want[x], self.models.index(x)))
                queue += [(x, False) for x in extra for _ in range(want[x] - 1)]
        return self._fractions(placed, demand, want)

    def _best_block(
        self, tp: int, size: float, weights: list[int], load: list[float], floors: list[float], add: float,
        taken: set[int],
    ) -> GpuSet | None:
        """Least-loaded aligned block with room for ``size`` (weights + KV floor) next to what is placed."""
        best: tuple[float, GpuSet] | None = None
        gpn = self.inputs.gpus_per_node
        for node in range(self.inputs.nodes):
            for mesh0 in range(node * gpn, (node + 1) * gpn, self.mesh):
                for b0 in range(mesh0, mesh0 + self.mesh - tp + 1, tp):
                    block = tuple(range(b0, b0 + tp))
                    fits = all(g not in taken and weights[g] + floors[g] + size <= self.pool for g in block)
                    if not fits:
                        continue
                    key = (round(sum(load[g] for g in block) + add * tp, 9), block)
                    if best is None or key < best:
                        best = key
        return None if best is None else best[1]

    def _fractions(
        self, placed: list[tuple[str, GpuSet]], demand: dict[str, float], want: dict[str, int]
    ) -> list[tuple[str, GpuSet, float]]:
        on_gpu: dict[int, list[int]] = defaultdict(list)
        for idx, (_, gpus) in enumerate(placed):
            for g in gpus:
                on_gpu[g].append(idx)
        out = []
        for idx, (m, gpus) in enumerate(placed):
            share = 1.0
            for g in gpus:
                others = on_gpu[g]
                if len(others) == 1:
                    continue  # alone on this GPU: the whole pool
                free = self.pool - sum(self.specs[placed[i][0]].bytes_per_gpu for i in others)
                w = {i: demand[placed[i][0]] / want[placed[i][0]] for i in others}
                frac = (self.specs[m].bytes_per_gpu + free * w[idx] / sum(w.values())) / self.pool
                if any(free * w[i] / sum(w.values()) < self.kv_min[placed[i][0]] for i in others):
                    # a share proportional to demand would leave someone here too little KV to start: every
                    # instance gets that minimum first and the rest by demand (placement left room for it);
                    # one ulp up so the backend's int(fraction x pool) never rounds below it
                    spare = free - sum(self.kv_min[placed[i][0]] for i in others)
                    frac = math.nextafter((self.specs[m].bytes_per_gpu + self.kv_min[m]
                                           + spare * w[idx] / sum(w.values())) / self.pool, math.inf)
                share = min(share, frac)
            out.append((m, gpus, share))
        return out

    # ---- SystemPolicy -----------------------------------------------------
    def setup(self, ctx: PolicyContext) -> list[Command]:
        return [StartInstance(m, gpus, frac) for m, gpus, frac in self._plan]

    def forecast_snapshot(self) -> dict[str, tuple[float, float]]:
        return dict(self._rates_used)
