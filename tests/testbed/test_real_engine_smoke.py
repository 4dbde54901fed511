"""Real vLLM engines end to end (CPU, tiny random-weight models): the CI smoke (<= 5 min).

Skipped with a reason when vLLM (the testbed extra) is not installed; CI installs it (WITH_TESTBED=1).
"""

from __future__ import annotations

import importlib.util

import pytest
from omegaconf import OmegaConf

from warmserve.config import REPO_ROOT, configs_dir, model_specs
from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.testbed.engines import REGISTRY
from warmserve.testbed.runnable import RunnableTestbed

from .helpers import LaunchOnIdle, workload

pytestmark = [
    pytest.mark.testbed,
    pytest.mark.skipif(importlib.util.find_spec("vllm") is None,
                       reason="vllm not installed: WITH_TESTBED=1 bash scripts/setup_env.sh installs the testbed"),
]


@pytest.fixture(scope="module")
def checkpoints():
    from warmserve.testbed.tiny_models import make_checkpoint

    out = REPO_ROOT / ".cache" / "models"
    make_checkpoint("tiny-s", out)
    return out


def test_two_real_engines_serve_a_short_replay(tmp_path, checkpoints):
    cfg = OmegaConf.to_container(OmegaConf.load(configs_dir() / "backend" / "testbed.yaml"), resolve=True)
    cfg.pop("_target_")
    cfg["log_dir"] = str(tmp_path / "logs")
    cfg["checkpoint_dir"] = str(checkpoints)
    hw = OmegaConf.load(configs_dir() / "hardware" / "cpu-testbed.yaml")
    mix = [{"name": "tiny-s-0", "base": "tiny-s"}, {"name": "tiny-s-1", "base": "tiny-s"}]
    backend = RunnableTestbed(models=model_specs(mix), cluster={"name": "cpu_1x2", "nodes": 1, "gpus_per_node": 2},
                              hardware=hw, features=BackendFeatures(worker_pool=True), seed=0, **cfg)
    # t=0: one model gets the pre-spawned process (worker start), the other a fresh process (cold start)
    wl = workload([(0.0, "tiny-s-0", 64, 8), (0.5, "tiny-s-1", 32, 8), (1.0, "tiny-s-0", 16, 4),
                   (1.5, "tiny-s-1", 16, 4)])
    ctrl = Controller(backend, LaunchOnIdle(), list(backend.state.models))
    info = backend.replay(wl, ctrl, until_s=240.0)
    log = backend.request_log()
    details = backend.request_details()
    assert (log.status == "ok").all(), details.error.tolist()
    assert (details.tokens_received == log.output_tokens).all()  # ignore_eos: exactly the asked length
    assert {"worker", "cold"} <= set(log.start_kind)
    assert {"prespawned_process", "process_start"} <= set(details.mechanism)
    assert (log.ttft_s > 0).all() and (log.tpot_s > 0).all()
    ready = [e for e in backend.timeline_rows if e["kind"] == "instance_ready"]
    assert len(ready) == 2
    assert info.unfinished == 0 and REGISTRY.live() == []
