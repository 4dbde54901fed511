"""A stub-engine testbed and a minimal launching policy, for tests and ``scripts/bench_router.py``.

``stub_backend`` builds a ``RunnableTestbed`` from ``configs/backend/testbed.yaml`` merged with
``testbed-stub.yaml`` (stub engine processes, no vLLM), so the whole real control path runs in seconds;
``gpu_stub_backend`` does the same for the GPU testbed on fake GPUs (``testbed-stub-gpu.yaml``).
"""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pandas as pd
from omegaconf import DictConfig, OmegaConf

from warmserve.config import configs_dir, load_mapping, model_specs, plain_dict
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import PolicyContext, SystemPolicy
from warmserve.control.seam import InstancePhase, ModelSpec, StartInstance, StopInstance
from warmserve.testbed.runnable import RunnableTestbed


class LaunchOnIdle(SystemPolicy):
    """Start an instance of a waiting model on an idle slot, preferring one that holds its replica
    (a prewarmed start); other replicas there are evicted by the backend. No scale-in."""

    name = "launch-on-idle"
    tick_interval_s = 0.5  # a stub policy: the published control-loop period
    instance_capacity = 32  # a stub policy: the published BATCH_SIZE

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        idle = [g for g in ctx.state.gpus if g.idle]
        for g in sorted(idle, key=lambda g: model not in g.replicas):
            return StartInstance(model, (g.gpu,))
        return None


class ScriptedPolicy(SystemPolicy):
    """Commands given in advance, for tests and the GPU smoke test: ``setup`` at t = 0, ``later`` as
    (when, command) at the first tick at or after ``when`` (seconds, or a predicate of the context),
    ``launch`` = model -> the start a waiting request triggers; ``stop_idle`` stops idle instances
    (keeping weights if ``stop_keep``)."""

    name = "scripted"
    instance_capacity = 32  # a stub policy: the published BATCH_SIZE
    tick_interval_s = 0.1

    def __init__(self, setup: list, launch: dict | None = None, stop_idle: bool = False,
                 stop_keep: bool = False, later: list | None = None) -> None:
        self._setup = setup
        self._later = list(later or [])
        self._launch = launch or {}
        self.stop_idle = stop_idle
        self.stop_keep = stop_keep

    def setup(self, ctx: PolicyContext) -> list:
        return list(self._setup)

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        return self._launch.get(model)

    def on_tick(self, ctx: PolicyContext) -> list:
        due = [c for t, c in self._later if (t(ctx) if callable(t) else t <= ctx.now)]
        self._later = [(t, c) for t, c in self._later if c not in due]
        if not self.stop_idle:
            return due
        return due + [StopInstance(i.instance_id, self.stop_keep) for i in ctx.state.instances.values()
                if i.phase is InstancePhase.READY and i.inflight == 0 and not ctx.pending[i.model]]


def stub_backend(tmp_path: Path, *, engine_args: list[str] | None = None, features: dict | None = None,
                 slots: int = 2, max_retries: int = 1, request_timeout_s: float = 30.0,
                 prespawned_pool: int = 1, models: str | list = "tiny3", setup_ready: bool = False) -> RunnableTestbed:
    base = load_mapping(configs_dir() / "backend" / "testbed.yaml")
    stub = load_mapping(configs_dir() / "backend" / "testbed-stub.yaml")
    stub.pop("defaults")
    cfg = plain_dict(cast(DictConfig, OmegaConf.merge(base, stub)))
    cfg.pop("_target_")
    if engine_args is not None:
        cfg["engine"]["args"] = engine_args
    cfg["slots"] = {"cores": ["0"] * slots, "max_engines": 4}
    cfg["prewarm"]["prespawned_pool"] = prespawned_pool
    cfg["log_dir"] = str(tmp_path / "logs")
    cfg["max_retries"] = max_retries
    cfg["request_timeout_s"] = request_timeout_s
    hw = OmegaConf.load(configs_dir() / "hardware" / "cpu-testbed.yaml")
    return RunnableTestbed(
        models=model_specs(models), cluster={"name": "t", "nodes": 1, "gpus_per_node": slots}, hardware=hw,
        features=BackendFeatures(**(features or {})), seed=1, setup_ready=setup_ready, **cfg)


def gpu_stub_backend(tmp_path: Path, *, models: str | list | dict[str, ModelSpec] = "tiny3", gpus: int = 2,
                     nodes: int = 1, hardware: str = "a100-80gb", features: dict | None = None,
                     prespawned_pool: int = 0, sleep_level: int = 1, setup_ready: bool = False, max_engines: int = 8,
                     engine_args: list[str] | None = None, stub: bool = True, gpu_ids: list[str] | None = None,
                     gpu_mem_bytes: int | None = None) -> RunnableTestbed:
    """``backend=testbed-stub-gpu``: the GPU testbed's path with stub engines on fake GPUs of ``hardware``
    (``stub=False``: ``backend=testbed-gpu``, real vLLM on the GPUs ``gpu_ids``, for scripts/gpu_smoke.sh;
    ``gpu_mem_bytes`` then says the devices' real size if it differs from the profile's)."""
    cfg = load_mapping(configs_dir() / "backend" / "testbed.yaml")
    for name in ("testbed-gpu", "testbed-stub-gpu")[: 2 if stub else 1]:
        layer = load_mapping(configs_dir() / "backend" / f"{name}.yaml")
        layer.pop("defaults")
        cfg = cast(DictConfig, OmegaConf.merge(cfg, layer))  # a mapping merged into a mapping
    out = plain_dict(cfg)
    out.pop("_target_")
    if engine_args is not None:
        out["engine"]["args"] = engine_args
    out["slots"] = {"cores": (gpu_ids or [str(g) for g in range(gpus)]) * nodes, "max_engines": max_engines}
    out["prewarm"] = {"prespawned_pool": prespawned_pool, "sleep_level": sleep_level}
    out["log_dir"] = str(tmp_path / "logs")
    out["request_timeout_s"] = 30.0
    hw = OmegaConf.load(configs_dir() / "hardware" / f"{hardware}.yaml")
    if gpu_mem_bytes is not None:
        hw.gpu_mem_bytes = int(gpu_mem_bytes)
    specs = models if isinstance(models, dict) else model_specs(models)
    return RunnableTestbed(
        models=specs, cluster={"name": "t", "nodes": nodes, "gpus_per_node": gpus}, hardware=hw,
        features=BackendFeatures(**(features or {})), seed=1, setup_ready=setup_ready, **out)


def workload(rows: list[tuple[float, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"request_id": i, "arrival_s": t, "model": m, "input_tokens": n_in, "output_tokens": n_out}
         for i, (t, m, n_in, n_out) in enumerate(rows)])
