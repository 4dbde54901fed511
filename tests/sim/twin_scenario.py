"""Small random twin scenarios shared by the invariant tests."""

from __future__ import annotations

import copy
import functools
import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
from omegaconf import OmegaConf
from twin_chaos import ChaosPolicy

from warmserve.config import load_yaml, model_specs
from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import SystemPolicy
from warmserve.control.seam import StartInstance
from warmserve.sim.backend import SimBackend


@dataclass
class Scenario:
    nodes: int
    gpn: int
    mix: list[str]
    features: BackendFeatures
    setup_ready: bool
    gpu_gib: int
    block_tokens: int
    n: int
    duration: float
    drain: float
    max_in: int
    max_out: int
    seed: int
    scheduler: str = "prefill_first"  # engine.scheduler
    worker_pool: int | None = None    # lifecycle.worker_pool_per_node
    prewarm_is_engine: bool = False   # lifecycle.prewarm_is_engine
    busy_start_slowdown: float = 1.0  # lifecycle.busy_start_slowdown
    kv_cache_bytes: int | None = None  # engine.kv_cache_bytes
    prewarm_mechanism: str = "vmm"     # lifecycle.prewarm_mechanism
    host_gib: int | None = None        # host_dram_bytes in GiB (None = the profile's 2 TiB)


class RecordingController(Controller):
    """Checks that time handed to the controller never goes backwards."""

    def __init__(self, *a, **k) -> None:
        super().__init__(*a, **k)
        self.times: list[float] = []

    def _t(self) -> None:
        t = self.backend.clock.now()
        assert not self.times or t >= self.times[-1], f"time went backwards {t} < {self.times[-1]}"
        self.times.append(t)

    def on_arrival(self, request) -> None:
        self._t()
        super().on_arrival(request)

    def on_finish(self, *a) -> None:
        self._t()
        super().on_finish(*a)

    def on_instance_ready(self, iid) -> None:
        self._t()
        super().on_instance_ready(iid)

    def on_instance_stopped(self, iid) -> None:
        self._t()
        super().on_instance_stopped(iid)


ALL = {"a": {"name": "m7a", "base": "llama2-7b"}, "b": {"name": "m7b", "base": "llama2-7b"},
       "c": {"name": "m13", "base": "llama2-13b"}}


@functools.cache
def _base_hw() -> dict:
    return OmegaConf.to_container(load_yaml("hardware", "a100-80gb"), resolve=True)


@functools.cache
def _specs(mix: tuple[str, ...]) -> dict:
    return model_specs([ALL[k] for k in mix])


def hardware(gpu_gib: int, block_tokens: int, scheduler: str = "prefill_first", worker_pool: int | None = None,
             prewarm_is_engine: bool = False, busy_start_slowdown: float = 1.0,
             kv_cache_bytes: int | None = None, prewarm_mechanism: str = "vmm", host_gib: int | None = None) -> dict:
    hw = copy.deepcopy(_base_hw())
    hw["gpu_mem_bytes"] = gpu_gib * 2**30
    hw["engine"]["kv_block_tokens"] = block_tokens
    hw["engine"]["scheduler"] = scheduler
    hw["lifecycle"]["worker_pool_per_node"] = worker_pool
    hw["lifecycle"]["prewarm_is_engine"] = prewarm_is_engine and prewarm_mechanism != "sleep"  # they exclude each other
    hw["lifecycle"]["prewarm_mechanism"] = prewarm_mechanism
    if host_gib is not None:
        hw["host_dram_bytes"] = host_gib * 2**30
        hw["host_cache_bytes"] = min(hw["host_cache_bytes"], host_gib * 2**30 // 2)
    hw["lifecycle"]["busy_start_slowdown"] = busy_start_slowdown
    hw["engine"]["kv_cache_bytes"] = kv_cache_bytes
    return hw


def workload(sc: Scenario, names: list[str]) -> pd.DataFrame:
    rng = np.random.default_rng(sc.seed)
    return pd.DataFrame({
        "request_id": np.arange(sc.n) * 3 + 7,  # not row numbers: exercises the id map
        "arrival_s": np.sort(rng.uniform(0, sc.duration, sc.n)),
        "model": rng.choice(names, size=sc.n) if sc.n else np.array([], dtype=object),
        "input_tokens": rng.integers(1, sc.max_in + 1, sc.n),
        "output_tokens": rng.integers(1, sc.max_out + 1, sc.n),
    })


def run(sc: Scenario):
    models = _specs(tuple(sc.mix))
    b = SimBackend(models=models, cluster={"nodes": sc.nodes, "gpus_per_node": sc.gpn},
                   hardware=hardware(sc.gpu_gib, sc.block_tokens, sc.scheduler, sc.worker_pool, sc.prewarm_is_engine,
                                     sc.busy_start_slowdown, sc.kv_cache_bytes, sc.prewarm_mechanism, sc.host_gib),
                   features=sc.features, seed=sc.seed,
                   setup_ready=sc.setup_ready)
    pol = ChaosPolicy(b, seed=sc.seed)
    c = RecordingController(b, pol, list(models))
    wl = workload(sc, list(models))
    info = b.replay(wl, c, sc.duration + sc.drain)
    b.book.check()
    return b, wl, info, pol


def assert_memory_never_oversubscribed(b) -> None:
    """The books balance now and match the state, and no GPU ever held more than its capacity along the way
    (ledger log replay). Any backend with a cluster book (``b.book``): the twin or the testbed."""
    b.book.check()
    ledger = b.book.ledger
    lt = np.frombuffer(ledger.log_t)
    assert (np.diff(lt) >= 0).all()
    gpu_of = np.frombuffer(ledger.log_gpu, dtype=np.int32)
    delta = np.frombuffer(ledger.log_delta, dtype=np.int64)
    for g in range(len(b.state.gpus)):
        assert (np.cumsum(delta[gpu_of == g]) <= b.state.gpus[g].capacity_bytes).all()


def parquet_bytes(df: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    return buf.getvalue()


class Fixed(SystemPolicy):
    """Start the given instances at setup; launch a model on ``launch`` GPUs on demand if given
    (unit tests of the twin's start paths, shared by test_twin_units and test_lifecycle)."""
    tick_interval_s = 0.5  # a test policy: the published control-loop period
    instance_capacity = 32  # a test policy: the published BATCH_SIZE

    def __init__(self, starts, launch=None) -> None:
        self.starts = starts
        self.launch = launch

    def setup(self, ctx):
        return [StartInstance(m, g) for m, g in self.starts]

    def launch_for(self, model, ctx):
        return None if self.launch is None else StartInstance(model, self.launch)


def wl(rows) -> pd.DataFrame:
    """A hand-written workload frame from ``(request_id, arrival_s, model, input_tokens, output_tokens)`` rows."""
    return pd.DataFrame(rows, columns=["request_id", "arrival_s", "model", "input_tokens", "output_tokens"])
