"""Random memory-tight scenarios that run the REAL serving systems (``configs/system``) on the twin.

Where ``twin_scenario`` drives the twin with a random policy, this drives it with the policies the
experiments use, built the way a run builds them (``warmserve.run.execute.build`` from a Hydra-composed
config), on small clusters whose GPUs are barely larger than the largest weight shard, with many
models and bursty arrivals. It reuses ``twin_scenario``'s hardware profile and its time-checking
controller, extended to check that a plan is applied as planned (``PlanOrderController``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from twin_scenario import RecordingController, hardware

from warmserve.config import configs_dir, model_specs
from warmserve.control.seam import (
    Dispatch,
    Evict,
    LendKv,
    ModelSpec,
    Prewarm,
    StartInstance,
    StopInstance,
    min_kv_blocks,
)
from warmserve.run.execute import Workload, build
from warmserve.run.protocol import ReplayInfo
from warmserve.sim.backend import SimBackend
from warmserve.sim.synthetic import synthetic_workload
from warmserve.workload.recipe import reshape_cv

# Every serving system of configs/system (the probe_* systems are cold-start instruments that serve
# one request per start by design, not systems under load).
SYSTEMS = ("warmserve", "warmserve_no_kv", "warmserve_no_prediction", "warmserve_round_robin",
           "ablation_forecast_rr", "worker_prewarm", "reactive", "serverlessllm", "muxserve", "static", "oracle")
HOT_SHARE = 0.8  # share of arrivals the hot model takes while popularity rotates (our choice: a clear swing)
MIXES = ("m2", "m3", "m5", "m6", "paper4", "small2")  # the bundled Llama-2 mixes (tiny3 is CPU-testbed only)
BASES = ("llama2-7b", "llama2-13b", "llama2-70b")
TOP_BYTES = 80 * 2**30  # the largest GPU drawn: A100/H100 80 GB (configs/hardware gpu_mem_bytes)


@dataclass
class PressureScenario:
    system: str
    nodes: int
    gpn: int
    mix: str | tuple[int, int, int]  # a configs/models mix, or (n 7B, n 13B, n 70B) served names
    mem_u: float          # GPU memory = lo + (TOP - lo) * mem_u**2, lo = the least that holds every model
    too_small: bool       # instead: room for the largest weight shard but not its KV (refused up front)
    setup_ready: bool     # backend.setup_ready
    worker_pool: int | None  # lifecycle.worker_pool_per_node (None = unbounded)
    rate: float           # mean requests per second
    duration: float       # seconds of arrivals
    cv: float | None      # inter-arrival CV after gamma reshaping (None = Poisson)
    alpha: float          # model popularity power law
    hot_s: float | None   # popularity rotates: every hot_s seconds one random model takes 80 % of arrivals
    max_in: int
    max_out: int
    window_s: float       # forecast window
    prior_scale: float    # priors = this x a rough truth (wrong forecasts on purpose)
    drain: float
    seed: int


def models_of(sc: PressureScenario) -> dict[str, ModelSpec]:
    return dict(_models(sc.mix))


@functools.cache
def _models(mix: str | tuple[int, int, int]) -> dict[str, ModelSpec]:  # specs are frozen; callers get a copy
    if isinstance(mix, str):
        return model_specs(mix)
    return model_specs([{"name": f"{base}-{i}", "base": base} for base, n in zip(BASES, mix, strict=True)
                        for i in range(n)])


def gpu_mem_bytes(sc: PressureScenario, models: dict[str, ModelSpec], hw: Mapping) -> int:
    """From the least GPU that holds every model's weights plus the KV of one start (seam.min_kv_blocks)
    up to TOP_BYTES, skewed low; or (``too_small``) one that holds the largest weight shard only."""
    util, eng = float(hw["gpu_mem_utilization"]), hw["engine"]
    blocks = min_kv_blocks(int(eng["max_model_len"]), int(eng["kv_block_tokens"]))
    need = max(s.bytes_per_gpu + blocks * -(-s.kv_bytes_per_token // s.tp) * int(eng["kv_block_tokens"])
               for s in models.values())
    if sc.too_small:
        return math.ceil(max(s.bytes_per_gpu for s in models.values()) / util) + 1
    lo = math.ceil(need / util) + 1  # + 1 byte: the twin's pool is int(bytes x utilisation)
    return lo + int((TOP_BYTES - lo) * sc.mem_u**2)


@functools.cache
def _system_cfg(system: str, worker_pool: int | None) -> DictConfig:
    """The composed run config of a system, with the test hardware; ``config`` sets what varies in place
    (every such field, every time) -- a deep copy per scenario cost more than the replay."""
    with initialize_config_dir(config_dir=str(configs_dir()), version_base="1.3"):
        cfg = compose(config_name="run", overrides=[f"system={system}", "hardware=a100-80gb", "~workload",
                                                    "out=unused", "progress=false"])
    OmegaConf.set_struct(cfg, False)
    cfg.hardware = hardware(TOP_BYTES // 2**30, int(cfg.hardware.engine.kv_block_tokens), worker_pool=worker_pool)
    return cfg


def workload(sc: PressureScenario, models: dict[str, ModelSpec]) -> Workload:
    names = list(models)
    reqs = synthetic_workload(names, rate_rps=sc.rate, duration_s=sc.duration, alpha=sc.alpha,
                              input_tokens=(16, sc.max_in), output_tokens=(1, sc.max_out), seed=sc.seed)
    if sc.cv is not None:
        reqs = reshape_cv(reqs, sc.cv, sc.seed)
    if sc.hot_s is not None and len(reqs):
        # one model's instances go idle and scale in while another's requests queue: the pattern that
        # makes a tick stop, prewarm and launch on the same GPUs
        rot = np.random.default_rng(sc.seed + 2)
        seg = (reqs["arrival_s"].to_numpy() // sc.hot_s).astype(int)
        hot = rot.integers(0, len(names), seg.max() + 1)[seg]
        keep = rot.random(len(reqs)) >= HOT_SHARE
        reqs["model"] = np.where(keep, reqs["model"].to_numpy(), np.asarray(names, dtype=object)[hot])
    # priors: arrivals per window x a rough service time, scaled (wrong on purpose), for every window
    rng = np.random.default_rng(sc.seed + 1)
    n_win = math.ceil((sc.duration + sc.drain) / sc.window_s) + 1
    win = (reqs["arrival_s"].to_numpy() // sc.window_s).astype(int)
    rows = []
    for m in names:
        counts = np.bincount(win[reqs["model"].to_numpy() == m], minlength=n_win)[:n_win]
        mean = counts / sc.window_s * 5.0 * sc.prior_scale  # ~5 s per request (rough; any value is legal)
        peak = mean * rng.uniform(1.0, 3.0, n_win)
        rows += [(m, w, float(mean[w]), float(peak[w])) for w in range(n_win)]
    priors = pd.DataFrame(rows, columns=["model", "window", "prior_mean", "prior_peak"])
    return Workload(requests=reqs, models=models, priors=priors)


def config(sc: PressureScenario, models: dict[str, ModelSpec]) -> DictConfig:
    cfg = _system_cfg(sc.system, sc.worker_pool)
    cfg.cluster.nodes = sc.nodes
    cfg.cluster.gpus_per_node = sc.gpn
    cfg.hardware.gpu_mem_bytes = gpu_mem_bytes(sc, models, cfg.hardware)
    cfg.backend.setup_ready = sc.setup_ready
    cfg.seed = sc.seed
    cfg.window_s = sc.window_s
    return cfg


_VERB = {StartInstance: "start_instance", StopInstance: "stop_instance", Prewarm: "prewarm", Evict: "evict",
         Dispatch: "dispatch", LendKv: "lend_kv"}


class PlanOrderController(RecordingController):
    """Also checks that a plan is applied as planned: while ``apply(commands)`` runs, the backend sees
    exactly those commands' verbs, in order, before anything else. Routing that an event raised meanwhile
    (a start for a waiting request, a dispatch) may only follow the last command -- otherwise it acts on
    GPUs the rest of the plan was made for (the crash this guards against: a stop inside ``apply``
    launched an instance on a GPU the same tick's prewarm was planned on). This catches such
    interleaving whether or not it happens to end in a ``CapacityError``."""

    def __init__(self, backend: SimBackend, *a, **k) -> None:
        super().__init__(backend, *a, **k)
        self.verbs: list[str] = []
        for name in _VERB.values():  # log every verb call, then do it
            setattr(backend, name, self._logged(name, getattr(backend, name)))

    def _logged(self, name: str, fn):
        def logged(*args, **kw):
            self.verbs.append(name)
            return fn(*args, **kw)
        return logged

    def apply(self, commands: list) -> None:
        start = len(self.verbs)
        super().apply(commands)
        applied = self.verbs[start:start + len(commands)]
        assert applied == [_VERB[type(c)] for c in commands], \
            f"verbs {self.verbs[start:]} interleave the plan {commands}"


def prepare(sc: PressureScenario) -> tuple[SimBackend, Workload, object]:
    """Workload, backend and policy, built as the runner builds them; an ``InputError`` here means the
    config was refused up front."""
    models = models_of(sc)
    w = workload(sc, models)
    backend, policy, _, _ = build(config(sc, models), w)
    return backend, w, policy


def replay(sc: PressureScenario, backend: SimBackend, w: Workload, policy: object) -> ReplayInfo:
    """The replay, with ``twin_scenario``'s controller that checks time never goes backwards."""
    controller = PlanOrderController(backend, policy, list(w.models))
    return backend.replay(w.requests, controller, sc.duration + sc.drain)
