"""MuxServe-style serving (Duan et al., ICML'24): static colocation of all models, no cold starts.

MuxServe places every LLM once, up front, on GPU *meshes* that cover every
GPU of the cluster, and multiplexes colocated LLMs on the same GPUs (SM shares
via MPS, one KV pool per mesh). The placement itself -- mesh candidates,
greedy by rate x size, decode/prefill SM shares, the best layout -- is
``warmserve.control.mux_placement``; this module turns the system config and
the forecast into its inputs and its layout into ``StartInstance`` commands:

* **Demand** of a model = its forecast concurrency over the replayed hour from
  the published priors (``history.parquet``): the mean of ``prior_mean``
  (``rate: mean``, MuxServe plans for the average rate) or the largest
  ``prior_peak`` (``rate: peak``).
* **Size class** (MuxServe's 7/13/30/65B classes: rate scale 1/2/4/8, prefill
  SM share 80/90/100/100 %) from the model's parameter count, ``weight_bytes /
  bytes_per_param``, against ``size_classes`` in ``configs/system/muxserve.yaml``.
* **Memory**: each instance keeps its weights plus a KV reserve per GPU: the
  larger of ``min_kv_fraction`` of the pool and what the engine needs to admit
  one ``max_model_len`` sequence.
* Every instance carries its SM share (``StartInstance.compute_share``); the
  twin stretches its iterations by ``warmserve.control.mps``. The testbed does
  not enforce it (no MPS on its engines), which the run's notes record.

Routing is the shared least-loaded router with per-instance ``capacity``;
nothing ever scales, stops or prewarms.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from warmserve.control.mux_placement import Instance, Layout, Llm, Params, instances, place
from warmserve.control.policy import PolicyContext, PolicyInputs, SystemPolicy
from warmserve.control.seam import Command, ModelSpec, StartInstance, min_kv_blocks
from warmserve.errors import InputError

RATES = ("mean", "peak")


def size_class(spec: ModelSpec, classes: Sequence[Mapping[str, Any]], bytes_per_param: float) -> tuple[int, float]:
    """``(rate scale, prefill share)`` of the first class whose ``max_params_b`` holds the model (null = any)."""
    params_b = spec.weight_bytes / bytes_per_param / 1e9
    for c in classes:
        cap = c.get("max_params_b")
        if cap is None or params_b <= float(cap):
            return int(c["scale"]), float(c["prefill_share"])
    raise InputError(f"muxserve: model '{spec.name}' ({params_b:.1f} B parameters) is in no size class "
                     "(end system.policy.size_classes with max_params_b: null)")


class MuxServePolicy(SystemPolicy):
    name = "muxserve"

    def __init__(
        self,
        inputs: PolicyInputs,
        *,
        capacity: int,
        tick_interval_s: float,
        min_kv_fraction: float,
        mesh_sizes: Sequence[int],
        decode_share_grid: Sequence[float],
        overload_share: float,
        rate: str,
        bytes_per_param: float,
        size_classes: Sequence[Mapping[str, Any]],
    ) -> None:
        if not 0 <= min_kv_fraction < 1:
            raise InputError("system.policy.min_kv_fraction must be in [0, 1)")
        if rate not in RATES:
            raise InputError(f"system.policy.rate must be one of {RATES}, got {rate!r}")
        grid = tuple(sorted(float(s) for s in decode_share_grid))
        if not grid or not all(0 < s <= 1 for s in grid):
            raise InputError("system.policy.decode_share_grid must be shares in (0, 1]")
        sizes = tuple(int(s) for s in mesh_sizes)
        if not sizes or any(s < 1 for s in sizes):
            raise InputError("system.policy.mesh_sizes must be positive GPU counts")
        if overload_share < 0:
            raise InputError("system.policy.overload_share must be >= 0")
        self.inputs = inputs
        self.specs = inputs.models
        self.instance_capacity = capacity
        self.tick_interval_s = tick_interval_s
        self.rate = rate
        hw = inputs.hardware
        if hw is None:
            raise InputError("muxserve needs the hardware profile (gpu memory, engine limits, compute_sharing)")
        self.pool = hw.pool_bytes
        self._block_tokens = hw.engine.kv_block_tokens
        self._max_len = hw.engine.max_model_len
        self.min_kv_fraction = min_kv_fraction
        shares = hw.compute_sharing
        self.params = Params(pool_bytes=self.pool, capacity=capacity, mesh_sizes=sizes, decode_grid=grid,
                             overload=float(overload_share), shares=shares)
        self._classes = {m: size_class(s, size_classes, float(bytes_per_param)) for m, s in self.specs.items()}
        self._rates_used = self._rates()
        self.llms = [self._llm(m) for m in self.specs]
        self.layout: Layout = place(inputs.nodes, inputs.gpus_per_node, self.llms, self.params)
        self._plan: list[Instance] = instances(self.layout, self.llms, self.pool)
        self.notes = [
            "muxserve: SM shares (StartInstance.compute_share) are enforced by the twin's compute-sharing model "
            "(hardware compute_sharing); the testbed backend does not enforce them (no MPS on its engines)",
            "muxserve meshes: " + "; ".join(
                f"node {m.node} GPUs {m.first}-{m.first + m.size - 1}: {', '.join(names)}"
                for m, names in zip(self.layout.meshes, self.layout.on_mesh, strict=True)),
        ]

    # ---- inputs of the placement -------------------------------------------
    def _rates(self) -> dict[str, tuple[float, float]]:
        """(mean, peak) concurrency each model should be provisioned for."""
        pri = self.inputs.priors
        if pri is None:
            raise InputError("muxserve: its static placement needs forecast rates (priors, history.parquet)")
        out = {}
        for m in self.specs:
            rows = pri[pri["model"] == m]
            if rows.empty:
                raise InputError(f"muxserve: no priors for model '{m}'")
            out[m] = (max(0.0, float(rows["prior_mean"].mean())), max(0.0, float(rows["prior_peak"].max())))
        return out

    def _llm(self, m: str) -> Llm:
        spec = self.specs[m]
        kv_tok = -(-spec.kv_bytes_per_token // spec.tp)
        block = kv_tok * self._block_tokens
        # the least KV any start needs (seam.min_kv_blocks, the one rule the backends apply);
        # one more block absorbs the rounding of mem_fraction
        min_blocks = min_kv_blocks(self._max_len, self._block_tokens) + 1
        reserve = max(int(self.min_kv_fraction * self.pool), min_blocks * block)
        scale, prefill = self._classes[m]
        mean, peak = self._rates_used[m]
        return Llm(name=m, tp=spec.tp, bytes_per_gpu=spec.bytes_per_gpu, reserve_bytes=reserve,
                   kv_bytes_per_token_gpu=kv_tok, demand=mean if self.rate == "mean" else peak,
                   scale=scale, prefill_share=prefill)

    # ---- SystemPolicy -----------------------------------------------------
    def setup(self, ctx: PolicyContext) -> list[Command]:
        return [StartInstance(i.model, i.gpus, i.mem_fraction, i.compute_share) for i in self._plan]

    def forecast_snapshot(self) -> dict[str, tuple[float, float]]:
        return dict(self._rates_used)
