"""A stub-engine testbed and a minimal launching policy, for tests and ``scripts/bench_router.py``.

``stub_backend`` builds a ``RunnableTestbed`` from ``configs/backend/testbed.yaml`` merged with
``testbed-stub.yaml`` (stub engine processes, no vLLM), so the whole real control path runs in seconds.
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


def workload(rows: list[tuple[float, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"request_id": i, "arrival_s": t, "model": m, "input_tokens": n_in, "output_tokens": n_out}
         for i, (t, m, n_in, n_out) in enumerate(rows)])
