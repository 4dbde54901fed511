"""The whole testbed path (processes, ports, front door, controller, streaming client) on stub engines."""

from __future__ import annotations

import psutil

from warmserve.control.controller import Controller
from warmserve.metrics.schema import REQUEST_COLUMNS
from warmserve.testbed.engines import REGISTRY

from .helpers import LaunchOnIdle, stub_backend, workload


def _run(backend, wl, until_s=30.0):
    ctrl = Controller(backend, LaunchOnIdle(), list(backend.state.models))
    info = backend.replay(wl, ctrl, until_s)
    return info, backend.request_log()


def test_replay_routes_by_model_and_logs_every_request(tmp_path):
    backend = stub_backend(tmp_path, features={"worker_pool": True})
    wl = workload([(0.0, "tiny-s-0", 8, 4), (0.05, "tiny-m-0", 16, 3), (0.1, "tiny-s-0", 8, 5),
                   (1.5, "tiny-s-0", 4, 2), (1.6, "tiny-m-0", 4, 2)])
    info, log = _run(backend, wl)
    assert list(log.columns) == [c for c in REQUEST_COLUMNS if c != "system"]
    assert len(log) == len(wl) and set(log.request_id) == set(wl.request_id)
    assert (log.status == "ok").all(), log[["status"]]
    # each request went to an instance of its own model
    models_of = {e["instance_id"]: e["model"] for e in backend.timeline_rows if e["kind"] == "instance_start"}
    assert all(models_of[i] == m for i, m in zip(log.instance_id, log.model, strict=True))
    # the first request of each model waited for a start; the later ones found a warm instance
    first = log.sort_values("arrival_s").groupby("model").head(1)
    assert set(first.start_kind) <= {"cold", "worker"}
    assert set(log[log.arrival_s > 1.0].start_kind) == {"warm"}
    # the TTFT split adds up exactly; TPOT is finite for outputs > 1 token
    parts = log.queue_s + log.load_s + log.init_s + log.prefill_s
    assert (abs(parts - log.ttft_s) < 1e-9).all()
    assert (log.tpot_s > 0).all()
    # one worker start from the pre-spawned pool, and its mechanism recorded
    details = backend.request_details()
    assert "prespawned_process" in set(details.mechanism)
    assert info.unfinished == 0 and not info.extra["partial"]
    assert REGISTRY.live() == []


def test_timeline_and_utilization_follow_the_shared_schemas(tmp_path):
    backend = stub_backend(tmp_path, prespawned_pool=0)
    wl = workload([(0.0, "tiny-s-0", 8, 30), (0.1, "tiny-s-0", 8, 30)])
    info, log = _run(backend, wl)
    tl = backend.timeline()
    kinds = list(tl.kind)
    assert kinds.index("instance_start") < kinds.index("instance_ready")
    assert "process_start" in tl.detail.iloc[kinds.index("instance_start")]
    util = backend.utilization(1.0)
    assert set(util.columns) >= {"t_s", "gpu", "node", "busy", "weights_bytes", "kv_bytes", "prewarm_bytes"}
    assert ((util.busy >= 0) & (util.busy <= 1)).all()
    assert backend.describe()["simulated"] is False


def test_no_child_process_survives_the_run(tmp_path):
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    backend = stub_backend(tmp_path, features={"worker_pool": True})
    _run(backend, workload([(0.0, "tiny-s-0", 4, 2), (0.0, "tiny-m-0", 4, 2)]))
    after = {p.pid for p in me.children(recursive=True) if p.is_running() and p.status() != "zombie"}
    assert after <= before


class StopWhenIdle(LaunchOnIdle):
    """Scale to zero: stop every ready instance with nothing in flight (keep_weights as given)."""

    tick_interval_s = 0.1

    def __init__(self, keep: bool = False) -> None:
        self.keep = keep

    def on_tick(self, ctx):
        from warmserve.control.seam import InstancePhase, StopInstance

        return [StopInstance(i.instance_id, self.keep) for i in ctx.state.instances.values()
                if i.phase is InstancePhase.READY and i.inflight == 0 and not ctx.pending[i.model]]


def test_scale_in_is_a_clean_stop_not_a_failure_and_kept_weights_are_adopted(tmp_path):
    backend = stub_backend(tmp_path, prespawned_pool=0, features={"memory_switching": True})
    wl = workload([(0.0, "tiny-s-0", 4, 3), (3.0, "tiny-s-0", 4, 3)])
    ctrl = Controller(backend, StopWhenIdle(keep=True), list(backend.state.models))
    backend.replay(wl, ctrl, until_s=20.0)
    log = backend.request_log()
    kinds = [e["kind"] for e in backend.timeline_rows]
    assert "instance_failed" not in kinds
    assert kinds.count("instance_stop") >= 1
    # the stopped instance kept its engine as a standby: the second request's start adopted it
    assert list(log.status) == ["ok", "ok"]
    assert log.start_kind.iloc[1] == "prewarmed"
    assert backend.request_details().mechanism.iloc[1] == "standby_engine"
    assert REGISTRY.live() == []


class _PrewarmAtSetup(LaunchOnIdle):
    """Prewarm tiny-s-0 on slot 0 at setup; launch on demand (prefers the slot holding the replica)."""

    def setup(self, ctx):
        from warmserve.control.seam import Prewarm

        return [Prewarm("tiny-s-0", (0,))]


def test_setup_prewarms_are_up_before_t0_and_ticks_start_after(tmp_path):
    # the engine takes 1.5 s to start: with setup_ready the replay waits for the standby, so the
    # first request is a prewarmed start with no start wait, as on the twin
    backend = stub_backend(tmp_path, engine_args=["--startup-s", "1.5", "--prefill-ms-base", "5",
                                                  "--prefill-ms-per-token", "0.01", "--decode-ms", "2"],
                           features={"worker_pool": True, "memory_switching": True}, prespawned_pool=0,
                           setup_ready=True)
    ticks: list[float] = []
    policy = _PrewarmAtSetup()
    policy.on_tick = lambda ctx: ticks.append(ctx.now) or []
    ctrl = Controller(backend, policy, list(backend.state.models))
    backend.replay(workload([(1.2, "tiny-s-0", 8, 3)]), ctrl, 20.0)  # ticks at 0.5 and 1.0 s before it
    log = backend.request_log()
    assert log.iloc[0].status == "ok" and log.iloc[0].start_kind == "prewarmed"
    assert log.iloc[0].ttft_s < 1.0  # no 1.5 s engine start in it
    tl = backend.timeline()
    assert tl.loc[tl.kind == "prewarm_done", "t_s"].iloc[0] == 0.0  # deployed before the replay
    # no tick ran during the 1.5 s setup (0.5 s ticks): they start after the clock restarts at 0, so
    # the tick times never go backwards
    assert ticks and ticks == sorted(ticks) and ticks[0] >= policy.tick_interval_s - 0.05
    assert REGISTRY.live() == []
