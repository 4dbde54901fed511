"""A stub-engine testbed and a minimal launching policy, for tests and ``scripts/bench_router.py``.

``stub_backend`` builds a ``RunnableTestbed`` from ``configs/backend/testbed.yaml`` merged with
``testbed-stub.yaml`` (stub engine processes, no vLLM), so the whole real control path runs in seconds;
``gpu_stub_backend`` does the same for the GPU testbed on fake GPUs (``testbed-stub-gpu.yaml``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from warmserve.config import configs_dir, model_specs
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import PolicyContext, SystemPolicy
from warmserve.control.seam import StartInstance
from warmserve.testbed.runnable import RunnableTestbed


class LaunchOnIdle(SystemPolicy):
    """Start an instance of a waiting model on an idle slot, preferring one that holds its replica
    (a prewarmed start); other replicas there are evicted by the backend. No scale-in."""

    name = "launch-on-idle"

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        idle = [g for g in ctx.state.gpus if g.idle]
        for g in sorted(idle, key=lambda g: model not in g.replicas):
            return StartInstance(model, (g.gpu,))
        return None


def stub_backend(tmp_path: Path, *, engine_args: list[str] | None = None, features: dict | None = None,
                 slots: int = 2, max_retries: int = 1, request_timeout_s: float = 30.0,
                 prespawned_pool: int = 1, models: str | list = "tiny3", setup_ready: bool = False) -> RunnableTestbed:
    base = OmegaConf.load(configs_dir() / "backend" / "testbed.yaml")
    stub = OmegaConf.load(configs_dir() / "backend" / "testbed-stub.yaml")
    stub.pop("defaults")
    cfg = OmegaConf.to_container(OmegaConf.merge(base, stub), resolve=True)
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


def gpu_stub_backend(tmp_path: Path, *, models: str | list = "tiny3", gpus: int = 2, nodes: int = 1,
                     hardware: str = "a100-80gb", features: dict | None = None, prespawned_pool: int = 0,
                     sleep_level: int = 1, setup_ready: bool = False, max_engines: int = 8,
                     engine_args: list[str] | None = None) -> RunnableTestbed:
    """``backend=testbed-stub-gpu``: the GPU testbed's path with stub engines on fake GPUs of ``hardware``."""
    cfg = OmegaConf.load(configs_dir() / "backend" / "testbed.yaml")
    for name in ("testbed-gpu", "testbed-stub-gpu"):
        layer = OmegaConf.load(configs_dir() / "backend" / f"{name}.yaml")
        layer.pop("defaults")
        cfg = OmegaConf.merge(cfg, layer)
    out = OmegaConf.to_container(cfg, resolve=True)
    out.pop("_target_")
    if engine_args is not None:
        out["engine"]["args"] = engine_args
    out["slots"] = {"cores": [str(g) for g in range(gpus)] * nodes, "max_engines": max_engines}
    out["prewarm"] = {"prespawned_pool": prespawned_pool, "sleep_level": sleep_level}
    out["log_dir"] = str(tmp_path / "logs")
    out["request_timeout_s"] = 30.0
    hw = OmegaConf.load(configs_dir() / "hardware" / f"{hardware}.yaml")
    return RunnableTestbed(
        models=model_specs(models), cluster={"name": "t", "nodes": nodes, "gpus_per_node": gpus}, hardware=hw,
        features=BackendFeatures(**(features or {})), seed=1, setup_ready=setup_ready, **out)


def workload(rows: list[tuple[float, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"request_id": i, "arrival_s": t, "model": m, "input_tokens": n_in, "output_tokens": n_out}
         for i, (t, m, n_in, n_out) in enumerate(rows)])
