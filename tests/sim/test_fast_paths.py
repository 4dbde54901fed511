"""The twin's speed devices give exactly the answers of the plain versions.

* the event loop: same-time order, ``until``, ``halt``, ``stop`` and progress;
* the state's idle index (``InstanceTable.first_idle``): routing through it
  equals the published least-loaded scan for any history of loads and phases;
* code-built categoricals equal ``pd.Categorical`` of the strings;
* chunked parquet writing reads back as the frame;
* a run with no request still has a utilisation log (it used to crash).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.control.load import LoadTracker
from warmserve.control.policy import PolicyContext, SystemPolicy
from warmserve.control.seam import (
    ClusterState,
    InstancePhase,
    InstanceState,
    InstanceTable,
    Request,
    StartKind,
)
from warmserve.metrics.schema import constant_categorical, labels_categorical
from warmserve.metrics.writers import write_parquet
from warmserve.sim.events import EventLoop

# ---- event loop -------------------------------------------------------------


def test_same_time_events_run_in_scheduling_order_and_until_stops() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []
    for name in "abc":
        loop.at(1.0, lambda n: seen.append((loop.t, n)), name)
    loop.at(0.5, lambda n: seen.append((loop.t, n)), "first")
    loop.at(7.0, lambda n: seen.append((loop.t, n)), "late")
    loop.run(5.0)
    assert seen == [(0.5, "first"), (1.0, "a"), (1.0, "b"), (1.0, "c")]
    assert loop.t == 5.0 and loop.events == 4


def test_halt_and_stop_end_the_run_after_the_event() -> None:
    loop = EventLoop()
    seen: list[int] = []

    def ev(i: int) -> None:
        seen.append(i)
        if i == 2:
            loop.halt()

    for i in range(5):
        loop.at(float(i), ev, i)
    loop.run(100.0)
    assert seen == [0, 1, 2] and loop.t == 2.0
    loop.run(100.0, stop=lambda: seen[-1] >= 3)  # a new run clears the halt
    assert seen == [0, 1, 2, 3]


def test_progress_is_reported_after_the_first_event_past_each_boundary() -> None:
    loop = EventLoop()
    for t in (10.0, 59.0, 60.0, 61.0, 130.0, 200.0):
        loop.at(t, lambda _: None)
    calls: list[float] = []
    loop.run(1000.0, progress=calls.append, progress_every=60.0)
    assert calls == [60.0, 130.0, 200.0]  # boundaries 60, then 60+60=120, then 130+60=190


# ---- idle index ---------------------------------------------------------------

SERVING = (InstancePhase.STARTING, InstancePhase.READY)


def _scan(table: dict[int, InstanceState], model: str, cap: int) -> int | None:
    """The published router written out: least (inflight, id) among serving instances under cap."""
    best = None
    for i in sorted(table):
        inst = table[i]
        if inst.model == model and inst.phase in SERVING and inst.inflight < cap \
                and (best is None or inst.inflight < best.inflight):
            best = inst
    return None if best is None else best.instance_id


ops = st.lists(st.tuples(st.sampled_from(["add", "inc", "dec", "phase", "del"]), st.integers(0, 30),
                         st.sampled_from(["a", "b"]), st.sampled_from(list(InstancePhase))), max_size=300)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ops, st.integers(1, 3))
def test_idle_index_routes_like_the_scan(history, cap: int) -> None:
    tracked = InstanceTable()
    tracked.track_idle()
    state = ClusterState(nodes=1, gpus_per_node=1, gpus=[], models={}, instances=tracked)
    ctx = PolicyContext(state=state, load=LoadTracker(["a", "b"]))
    policy = SystemPolicy()
    policy.instance_capacity = cap
    next_id = 0
    for op, k, model, phase in history:
        live = sorted(tracked)
        if op == "add":
            tracked[next_id] = InstanceState(next_id, model, (0,), InstancePhase.STARTING, StartKind.COLD, 0.0)
            next_id += 1
        elif live:
            inst = tracked[live[k % len(live)]]
            if op == "inc":
                inst.inflight += 1
            elif op == "dec" and inst.inflight > 0:
                inst.inflight -= 1
                if inst.inflight == 0:
                    tracked.note_idle(inst)  # the backend's promise
            elif op == "phase" and phase is not InstancePhase.STARTING:  # phases only move forward
                if not (inst.phase is InstancePhase.READY and phase is InstancePhase.STARTING):
                    inst.phase = phase if inst.phase in SERVING else inst.phase
            elif op == "del":
                del tracked[inst.instance_id]
        for m in ("a", "b"):
            want = _scan(tracked, m, cap)
            got = policy.pick_instance(Request(0, 0.0, m, 1, 1), ctx)
            assert got == want, (m, got, want)
            idle = tracked.first_idle(m)
            plain = [i for i in sorted(tracked) if tracked[i].model == m and tracked[i].inflight == 0
                     and tracked[i].phase in SERVING]
            assert (idle.instance_id if idle else None) == (plain[0] if plain else None)
        assert all(len(h) <= 2 * len(tracked.by_model.get(m, ())) + 17 for m, h in (tracked.idle or {}).items())


def test_untracked_table_has_no_idle_answer() -> None:
    t = InstanceTable()
    t[0] = InstanceState(0, "a", (0,), InstancePhase.READY, StartKind.WARM, 0.0)
    assert t.first_idle("a") is None


# ---- outputs ------------------------------------------------------------------


@settings(max_examples=100, deadline=None, derandomize=True)
@given(st.lists(st.sampled_from(["", "ok", "x,y", "b", "a", "ok"]), min_size=1, max_size=6),
       st.lists(st.integers(0, 5), max_size=50))
def test_code_built_categoricals_equal_string_built(labels: list[str], idx: list[int]) -> None:
    idx_arr = np.array([i % len(labels) for i in idx], dtype=np.intp)
    got = labels_categorical(labels, idx_arr)
    want = pd.Categorical(np.array(labels, dtype=object)[idx_arr])
    assert list(got.categories) == list(want.categories)
    assert list(got.astype(object)) == list(want.astype(object))
    assert list(constant_categorical("s", 3).astype(object)) == ["s"] * 3


def test_chunked_parquet_reads_back_as_the_frame(tmp_path: Path) -> None:
    n = 2500
    df = pd.DataFrame({"a": np.arange(n), "b": np.linspace(0, 1, n),
                       "c": pd.Categorical.from_codes(np.arange(n) % 3, ["x", "y", "z"])})
    write_parquet(tmp_path / "chunked.parquet", df, chunk_rows=1000)
    write_parquet(tmp_path / "whole.parquet", df)
    back = pd.read_parquet(tmp_path / "chunked.parquet")
    assert back.equals(pd.read_parquet(tmp_path / "whole.parquet"))
    assert back["a"].tolist() == df["a"].tolist() and back["c"].astype(str).tolist() == df["c"].astype(str).tolist()


def test_utilization_of_a_run_without_requests() -> None:
    from twin_scenario import _specs, hardware

    from warmserve.control.controller import Controller
    from warmserve.control.seam import StartInstance
    from warmserve.sim.backend import SimBackend

    class One(SystemPolicy):
        tick_interval_s = 0.5  # a test policy: the published control-loop period
        instance_capacity = 32  # a test policy: the published BATCH_SIZE
        def setup(self, ctx):
            return [StartInstance("m7a", (0,))]

    b = SimBackend(models=_specs(("a",)), cluster={"nodes": 1, "gpus_per_node": 2}, hardware=hardware(80, 16))
    wl = pd.DataFrame({"request_id": [], "arrival_s": [], "model": [], "input_tokens": [], "output_tokens": []})
    b.replay(wl, Controller(b, One(), ["m7a"]), 10.0)
    ut = b.utilization(1.0)
    assert len(ut) >= 2 and (ut["busy"] == 0).all() and (ut.loc[ut["gpu"] == 0, "weights_bytes"] > 0).all()
