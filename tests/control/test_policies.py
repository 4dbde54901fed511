"""System policies on the stand-in backend: forecasting windows, re-planning rule, ServerlessLLM
placement rules (MuxServe's are in test_muxserve.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from control_fakes import FakeBackend, policy_inputs, policy_kwargs

from warmserve.config import load_yaml, model_specs
from warmserve.control.controller import Controller
from warmserve.control.placement import PLACEMENTS, PlacementOptions, PlacementView, Replica
from warmserve.control.seam import Prewarm
from warmserve.control.serverlessllm import ServerlessLLMPolicy
from warmserve.control.warmserve import WarmServePolicy
from warmserve.errors import InputError
from warmserve.forecast import PaperForecaster
from warmserve.validation.targets import check_target

SPECS = model_specs("small2")
M7, M13 = list(SPECS)
HW = load_yaml("hardware", "a100-80gb")
WS = policy_kwargs("warmserve")
SLLM = policy_kwargs("serverlessllm")


def priors(mean=40.0, peak=90.0, n=12):
    return pd.DataFrame([{"model": m, "window": w, "prior_mean": mean, "prior_peak": peak}
                         for m in SPECS for w in range(n)])


def workload(n=200, horizon=700.0, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"request_id": np.arange(n), "arrival_s": np.sort(rng.uniform(0, horizon, n)),
                         "model": rng.choice([M7, M13], n), "input_tokens": 100, "output_tokens": 50})


def test_warmserve_prewarms_forecast_demand_and_observes_windows():
    inputs = policy_inputs(SPECS, 1, 8, priors=priors(), window_s=300.0)
    policy = WarmServePolicy(inputs, forecaster=PaperForecaster(), **WS)
    b = FakeBackend(SPECS, 1, 8)
    ctl = Controller(b, policy, list(SPECS))
    wl = workload()
    b.replay(wl, ctl, 900.0)
    # setup planned the window-0 prior: ceil(90/32) = 3 replicas per model, placed at t=0
    first = [e for e in b.log if e[0] == "prewarm" and e[1] == 0.0]
    assert sorted(e[2] for e in first) == [M13] * 3 + [M7] * 3
    assert len(b.finished) == len(wl)
    # windows closed at t=300, 600, 900: the forecaster moved on and corrected towards observations
    assert policy.forecaster.window == 3
    snap = policy.forecast_snapshot()
    assert snap[M7][0] < 40.0  # observed load is far below the prior of 40
    # no start ever needed a cold load: every start adopted a resident replica
    assert all(e[4] for e in b.log if e[0] == "start")


def test_replanning_rule_skips_unchanged_ticks():
    inputs = policy_inputs(SPECS, 1, 8, priors=priors())
    policy = WarmServePolicy(inputs, forecaster=PaperForecaster(), **WS)
    b = FakeBackend(SPECS, 1, 8)
    ctl = Controller(b, policy, list(SPECS))
    b.sink = ctl
    b._where, b._keep = {}, {}
    ctl.start()  # setup plans once and the commands are applied
    assert policy.plans == 1
    ctl.ctx.now = 0.5
    cmds = policy.on_tick(ctl.ctx)  # memory changed (replicas placed): plans again, nothing new to place
    assert policy.plans == 2 and not [c for c in cmds if isinstance(c, Prewarm)]
    for t in (1.0, 1.5, 2.0):
        ctl.ctx.now = t
        assert policy.on_tick(ctl.ctx) == []
    assert policy.plans == 2  # nothing changed: no re-plan


def test_warmserve_bad_config_is_an_input_error():
    inputs = policy_inputs(SPECS, 1, 8, priors=priors())
    with pytest.raises(InputError, match=r"system.policy.placement: unknown 'random'; choose one of \['evict_aware'"):
        WarmServePolicy(inputs, forecaster=PaperForecaster(), **{**WS, "placement": "random"})
    with pytest.raises(InputError, match=r"system.policy.launch_rule: unknown 'best'; choose one of .*'first_fit'"):
        WarmServePolicy(inputs, forecaster=PaperForecaster(), **{**WS, "launch_rule": "best"})
    with pytest.raises(InputError, match="needs a forecaster"):
        WarmServePolicy(inputs, forecaster=None, **WS)
    with pytest.raises(InputError, match="no priors for model"):
        WarmServePolicy(policy_inputs(SPECS, 1, 8, priors=priors().query(f"model == '{M7}'")),
                        forecaster=PaperForecaster(), **WS)


def test_serverlessllm_prefers_nodes_whose_dram_holds_the_checkpoint():
    inputs = policy_inputs(SPECS, 2, 4, system="serverlessllm")
    p = ServerlessLLMPolicy(inputs, **SLLM)
    b = FakeBackend(SPECS, 2, 4)
    ctl = Controller(b, p, list(SPECS))
    ctx = ctl.ctx
    # nothing cached: disk time on both nodes, tie to node 0
    assert p.launch_for(M7, ctx).gpus == (0,)
    # fill node 0's GPUs; the checkpoint is now cached on node 0 only
    b.start_instance(M13, (0, 1))
    b.start_instance(M7, (2,))
    b.start_instance(M7, (3,))
    assert p.launch_for(M7, ctx).gpus == (4,)  # node 0 full: node 1 from disk
    b2 = FakeBackend(SPECS, 2, 4)
    p2 = ServerlessLLMPolicy(policy_inputs(SPECS, 2, 4, system="serverlessllm"), **SLLM)
    p2._remember(1, "llama2-7b", SPECS[M7].weight_bytes)
    assert p2.launch_for(M7, Controller(b2, p2, list(SPECS)).ctx).gpus == (4,)  # DRAM hit beats node order
    est_dram = p2.load_estimate(Controller(b2, p2, list(SPECS)).ctx, 1, M7)
    assert est_dram == pytest.approx(SPECS[M7].weight_bytes / (float(HW.pcie_h2d_GBps) * 1e9))


def test_a_registered_placement_runs_through_warmserve_without_touching_it():
    """Adding a placement = registering it: WarmServePolicy and the config checks pick it up by name."""
    returned: list[tuple[str, tuple[int, ...]]] = []

    def highest_gpus(view: PlacementView, demand, options: PlacementOptions):
        out = []
        for d in demand:
            have = sum(1 for r in view.replicas if r.model == d.model)
            for _ in range(d.demand.total - have):
                ok = [g for g in reversed(range(len(view.free)))
                      if view.free[g] >= d.bytes_per_gpu and g not in view.present.get(d.model, set())]
                if len(ok) < d.tp:
                    break
                gpus = tuple(sorted(ok[:d.tp]))
                view.place(Replica(d.model, gpus, 0.0), d.bytes_per_gpu)
                out.append((d.model, gpus))
        returned.extend(out)
        return out

    PLACEMENTS.register("toy_highest_gpus")(highest_gpus)
    try:
        check_target({"_target_": "warmserve.control.warmserve.WarmServePolicy", **WS, "forecaster": None,
                      "placement": "toy_highest_gpus"}, "system.policy")  # validation accepts the new name
        policy = WarmServePolicy(policy_inputs(SPECS, 1, 8, priors=priors()), forecaster=PaperForecaster(),
                                 **{**WS, "placement": "toy_highest_gpus"})
        b = FakeBackend(SPECS, 1, 8)
        ctl = Controller(b, policy, list(SPECS))
        b.sink = ctl
        b._where, b._keep = {}, {}
        ctl.start()
        prewarmed = [(e[2], e[3]) for e in b.log if e[0] == "prewarm"]
        assert returned and prewarmed == returned  # exactly the toy's choices were issued
        # ... on the highest GPUs (evict_aware would start from GPU 0): ceil(90 / 32) = 3 replicas of the 7B
        assert {gpus for m, gpus in prewarmed if m == M7} == {(7,), (6,), (5,)}
    finally:
        PLACEMENTS.unregister("toy_highest_gpus")
    with pytest.raises(InputError, match=r"system.policy.placement: unknown 'toy_highest_gpus'; choose one of "
                                         r"\['evict_aware', 'round_robin'\]"):
        check_target({"_target_": "warmserve.control.warmserve.WarmServePolicy", **WS, "forecaster": None,
                      "placement": "toy_highest_gpus"}, "system.policy")
