"""Events a backend raises while the controller applies a tick's commands are routed after the last command.

The twin (and the fake backend here) report a stop of an idle instance synchronously, from inside
``stop_instance``. Routing at that moment could launch an instance on the GPUs the rest of the same
command list was planned around; the controller defers it until ``apply`` returns.
"""

from __future__ import annotations

import pandas as pd
import pytest
from control_fakes import FakeBackend
from hydra import compose, initialize_config_dir

from warmserve.config import configs_dir, model_specs
from warmserve.control.controller import Controller
from warmserve.control.policy import PolicyContext, SystemPolicy
from warmserve.control.seam import Command, Prewarm, StartInstance, StopInstance
from warmserve.run.execute import build, load_workload


class StopThenPrewarm(SystemPolicy):
    """Setup: an instance of ``a`` on GPU 0. First tick: stop it and prewarm ``c`` on GPU 0 (the plan
    counts on GPU 0 being free after the stop). Waiting requests of ``b`` may launch on any free GPU."""
    instance_capacity = 32  # a test policy: the published BATCH_SIZE

    tick_interval_s = 1.0

    def __init__(self) -> None:
        self.ticks = 0

    def setup(self, ctx: PolicyContext) -> list[Command]:
        return [StartInstance("a", (0,))]

    def launch_for(self, model: str, ctx: PolicyContext) -> StartInstance | None:
        free = [g.gpu for g in ctx.state.gpus if not g.instances]
        return StartInstance(model, (free[0],)) if free else None

    def on_tick(self, ctx: PolicyContext) -> list[Command]:
        self.ticks += 1
        if self.ticks == 1:
            (iid,) = ctx.state.gpus[0].instances
            return [StopInstance(iid), Prewarm("c", (0,))]
        return []


def test_routing_waits_until_the_whole_plan_is_applied() -> None:
    specs = model_specs([{"name": n, "base": "llama2-7b"} for n in "abc"])
    # one GPU: the instance of ``a`` fills it, so ``b``'s request waits until the tick frees GPU 0
    b = FakeBackend(specs, nodes=1, gpus_per_node=1, start_s=0.1, service_s=0.1)
    c = Controller(b, StopThenPrewarm(), list(specs))
    wl = pd.DataFrame({"request_id": [0], "arrival_s": [0.5], "model": ["b"], "input_tokens": [8],
                       "output_tokens": [8]})
    b.replay(wl, c, 5.0)
    # the stop, then the planned prewarm, then (routing after apply) the launch for b, which evicts c
    assert b.commands[:4] == ["start", "stop", "prewarm", "start"]
    assert b.finished == {0: "ok"}


def test_a_plan_raising_mid_apply_leaves_the_controller_usable() -> None:
    specs = model_specs([{"name": n, "base": "llama2-7b"} for n in "ab"])
    b = FakeBackend(specs, nodes=1, gpus_per_node=2)
    c = Controller(b, SystemPolicy(), list(specs))
    with pytest.raises(Exception):  # noqa: B017 - any refusal; the point is the state afterwards
        c.apply([StartInstance("a", (0,)), StartInstance("b", (0,))])
    assert not c._applying  # a later event routes at once again


def _memory_tight_point():
    """The crash report's point (warmserve_no_kv, conv at 2 rps, six models, 1x8 GPUs of 40 GiB), on a
    1 % scale synthetic conv week so the workload builds in about a second from an empty cache."""
    with initialize_config_dir(config_dir=str(configs_dir()), version_base="1.3"):
        cfg = compose(config_name="run", overrides=[
            "system=warmserve_no_kv", "workload=conv", "workload.rps=2", "workload.models=m6", "cluster=small_1x8",
            "hardware.gpu_mem_bytes=42949672960", "workload.source.scale=0.01", "progress=false"])
    return cfg


def test_memory_tight_warmserve_point_runs(tmp_path, monkeypatch) -> None:
    # Before the fix this raised CapacityError("prewarm llama2-7b-0: GPU 7 has 53172224 B free ..."):
    # a stop inside apply launched an instance on a GPU the tick's prewarm was planned on.
    monkeypatch.setenv("WARMSERVE_CACHE", str(tmp_path / "cache"))
    cfg = _memory_tight_point()
    w = load_workload(cfg)
    backend, _, controller, _ = build(cfg, w)
    info = backend.replay(w.requests, controller, float(cfg.workload.replay_s) + float(cfg.drain_s))
    log = backend.request_log()
    assert len(log) == len(w.requests) == info.requests > 1000
    assert (log["request_id"].to_numpy() == w.requests["request_id"].to_numpy()).all()
    assert (log["status"].astype(str) == "ok").all()
    tl = backend.timeline()
    assert (tl["kind"].astype(str) == "instance_stop").sum() > 10  # it scaled in (the path that crashed)
