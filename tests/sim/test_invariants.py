"""Twin invariants over many random small scenarios (Hypothesis, chaos policy).

Memory never oversubscribed, GPU and (sleep mode) pinned host memory (the ledger raises; refused verbs leave it
untouched; books cross-checked), every request ends with a status, TTFT =
queue + load + init + prefill exactly, time never goes backwards, and the same
seed gives byte-identical requests.parquet. The last test drives a few short scenarios through both the
twin and the stub-engine testbed: the cluster book's rules and invariants hold on either.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twin_scenario import Scenario, assert_memory_never_oversubscribed, parquet_bytes, run

from warmserve.control.features import BackendFeatures

scenarios = st.builds(
    Scenario,
    nodes=st.integers(1, 2),
    gpn=st.sampled_from([2, 4]),
    mix=st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True),
    features=st.builds(BackendFeatures, st.booleans(), st.booleans(), st.booleans(), st.booleans()),
    setup_ready=st.booleans(),
    gpu_gib=st.sampled_from([20, 32, 80]),
    block_tokens=st.sampled_from([16, 256]),
    n=st.integers(0, 40),
    duration=st.floats(1.0, 60.0),
    drain=st.sampled_from([2.0, 30.0, 600.0]),
    max_in=st.sampled_from([64, 1024, 2100]),
    max_out=st.sampled_from([1, 50, 400]),
    seed=st.integers(0, 2**16),
    scheduler=st.sampled_from(["prefill_first", "mixed"]),
    worker_pool=st.sampled_from([None, 0, 1, 3]),
    prewarm_is_engine=st.booleans(),
    busy_start_slowdown=st.sampled_from([1.0, 1.3]),
    kv_cache_bytes=st.sampled_from([None, 2**31]),
    prewarm_mechanism=st.sampled_from(["vmm", "sleep"]),
    host_gib=st.sampled_from([None, 16, 40]),  # 16 GiB: one 7B replica asleep per node at most
)


@settings(max_examples=1000, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenarios)
def test_twin_invariants(sc: Scenario) -> None:
    b, wl, info, pol = run(sc)
    log = b.request_log()
    # every request ends with a status, none missing
    assert len(log) == len(wl)
    assert (log["request_id"].to_numpy() == wl["request_id"].to_numpy()).all()
    assert set(log["status"].astype(str)) <= {"ok", "failed", "timeout"}
    # TTFT split adds up exactly; parts are non-negative
    has = np.isfinite(log["ttft_s"].to_numpy())
    r = log[has]
    assert (r["queue_s"] + r["load_s"] + r["init_s"] + r["prefill_s"] == r["ttft_s"]).all()
    for c in ("load_s", "init_s", "prefill_s"):
        assert (r[c] >= 0).all()
    assert (r["queue_s"] >= -1e-9).all()
    assert (log.loc[log["status"] == "ok", "first_token_s"] >= log.loc[log["status"] == "ok", "arrival_s"]).all()
    ok = log[log["status"] == "ok"]
    assert np.isfinite(ok["ttft_s"]).all() and (ok["finish_s"] >= ok["first_token_s"]).all()
    assert set(log.loc[log["status"] == "ok", "start_kind"].astype(str)) <= {"warm", "prewarmed", "worker", "cold"}
    # memory: the books balance and never exceeded capacity along the way (ledger log replay)
    assert_memory_never_oversubscribed(b)
    # sleeping replicas: pinned host memory never past its capacity, and the books match the replicas left
    assert all(p <= b.host.capacity for p in b.host.peak)
    for node in range(b.state.nodes):
        assert b.host.held[node] == sum(v for (m, gs), v in b.sleepers.asleep.items()
                                        if gs[0] // b.state.gpus_per_node == node)
    if sc.prewarm_mechanism == "sleep":
        assert b.ledger.held and all(h[2] == 0 for h in b.ledger.held)  # asleep = no GPU memory
    # same seed -> byte-identical request log
    b2, *_ = run(sc)
    assert parquet_bytes(b2.request_log()) == parquet_bytes(log)


# ---- the same chaos on both backends: the cluster book's rules hold on the testbed too ------------------
# A few short scenarios (the testbed runs on the wall clock with stub engine processes): the same models,
# slots, features, workload and seeded chaos policy drive the twin and ``backend=testbed-stub``. On both,
# every verb the chaos policy tries either applies or is refused with the books unchanged, the books match
# the state after each (``ClusterBook.check``), memory is never oversubscribed along the way, and every
# request ends with a status.
BOTH_SCENARIOS = [  # (seed, features)
    (3, {"worker_pool": True}),
    (11, {"memory_switching": True, "keep_weights_on_stop": True}),
]


def _both_backend(kind: str, features: dict, tmp_path):
    from omegaconf import OmegaConf

    from warmserve.config import configs_dir, model_specs
    from warmserve.sim.backend import SimBackend
    from warmserve.testbed.stubs import gpu_stub_backend, stub_backend

    if kind == "testbed-stub":  # tiny3 on 2 slots of configs/hardware/cpu-testbed.yaml
        return stub_backend(tmp_path, features=features, slots=2, prespawned_pool=1, request_timeout_s=10.0)
    if kind == "testbed-stub-gpu":  # tiny3 on 2 fake A100s: standbys start awake (a reservation in the book)
        return gpu_stub_backend(tmp_path, features=features, gpus=2, prespawned_pool=1)
    # the twin on the very models, slots and hardware profile the stub testbed plans against
    return SimBackend(models=model_specs("tiny3"), cluster={"nodes": 1, "gpus_per_node": 2},
                      hardware=OmegaConf.load(configs_dir() / "hardware" / "cpu-testbed.yaml"),
                      features=BackendFeatures(**features), seed=1)


@pytest.mark.parametrize("kind", ["sim", "testbed-stub", "testbed-stub-gpu"])
@pytest.mark.parametrize(("seed", "features"), BOTH_SCENARIOS)
def test_both_backends_keep_the_books(kind: str, seed: int, features: dict, tmp_path) -> None:
    from twin_chaos import ChaosPolicy

    from warmserve.control.controller import Controller
    from warmserve.testbed.stubs import workload

    b = _both_backend(kind, features, tmp_path)
    models = sorted(b.state.models)
    rng = np.random.default_rng(seed)
    wl = workload([(float(t), str(rng.choice(models)), int(rng.integers(1, 16)), int(rng.integers(1, 6)))
                   for t in np.sort(rng.uniform(0.0, 5.0, 12))])
    pol = ChaosPolicy(b, seed=seed, tick_interval_s=0.3)
    b.replay(wl, Controller(b, pol, models), 12.0)
    assert pol.applied > 0, "the chaos policy never got a verb through"
    assert_memory_never_oversubscribed(b)
    log = b.request_log()
    assert sorted(log["request_id"]) == sorted(wl["request_id"])
    assert set(log["status"].astype(str)) <= {"ok", "failed", "timeout"}
