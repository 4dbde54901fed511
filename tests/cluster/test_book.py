"""The cluster book and its rules (``warmserve.cluster``), on their own: random sequences of every change
keep the books matching the state and never oversubscribed, and a refused change leaves them as they were."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.cluster.book import ClusterBook
from warmserve.cluster.ledger import CATEGORIES, RESERVED
from warmserve.cluster.rules import (
    check_gpus,
    check_prewarm,
    check_start,
    kv_block_bytes,
    kv_blocks_for_share,
    start_kind,
)
from warmserve.control.seam import (
    CapacityError,
    ClusterState,
    GpuState,
    InstancePhase,
    InstanceState,
    ModelSpec,
    StartKind,
)

CAP = 100
SPECS = {"a": ModelSpec("a", "a", 1, 30, 2), "b": ModelSpec("b", "b", 2, 40, 6), "c": ModelSpec("c", "c", 1, 50, 2)}


def _state(nodes: int = 2, gpn: int = 2) -> ClusterState:
    return ClusterState(nodes=nodes, gpus_per_node=gpn, models=dict(SPECS),
                        gpus=[GpuState(gpu=g, node=g // gpn, capacity_bytes=CAP) for g in range(nodes * gpn)])


def _snapshot(book: ClusterBook) -> tuple:
    s = book.state
    return ([list(h) for h in book.ledger.held], [g.used_bytes for g in s.gpus],
            [sorted((m, r.gpus) for m, r in g.replicas.items()) for g in s.gpus],
            [list(g.instances) for g in s.gpus], dict(book.kv_of), dict(book.reserved), len(book.ledger.log_t))


# ---- rules ---------------------------------------------------------------------------------------------
def test_gpu_sets_must_be_tp_distinct_gpus_on_one_node() -> None:
    s = _state()
    assert check_gpus(s, "b", (1, 0)) == (SPECS["b"], (0, 1))
    for bad in [(0,), (0, 0), (1, 2), (3, 4), (-1, 0)]:  # wrong size, twice, spans nodes, out of range
        with pytest.raises(CapacityError):
            check_gpus(s, "b", bad)
    with pytest.raises(CapacityError):
        check_gpus(s, "zz", (0,))


def test_colocation_sums_shares_and_refuses_the_same_model_twice() -> None:
    s = _state()
    book = ClusterBook(s)
    for iid, (m, frac) in enumerate([("a", 0.5), ("c", 0.3)]):
        check_start(s, m, (0,), frac, None)
        book.claim(iid, SPECS[m], (0,), None, 0, 0.0, lambda r: None)
        book.add_instance(InstanceState(iid, m, (0,), InstancePhase.READY, StartKind.COLD, 0.0, mem_fraction=frac))
    check_start(s, "b", (0,), 0.2, None)  # 0.5 + 0.3 + 0.2 = 1 (within the float slack)
    with pytest.raises(CapacityError):
        check_start(s, "b", (0,), 0.21, None)
    with pytest.raises(CapacityError):
        check_start(s, "a", (0,), 0.1, None)  # a already runs there
    with pytest.raises(CapacityError):
        check_prewarm(s, "a", (0,))  # nor may a replica of it sit beside its instance
    for frac, share in [(0.0, None), (1.5, None), (0.5, 0.0), (0.5, 1.2)]:
        with pytest.raises(CapacityError):
            check_start(s, "b", (2,), frac, share)


def test_kv_blocks_round_a_shard_up_and_respect_a_fixed_cache() -> None:
    spec = ModelSpec("x", "x", 2, 10, 7)  # 7 B per token over 2 GPUs: 4 B per GPU (rounded up)
    assert kv_block_bytes(spec, 16) == 64
    assert kv_blocks_for_share(spec, 1000, 0.5, 16, None) == (500 - 5) // 64
    assert kv_blocks_for_share(spec, 1000, 0.5, 16, 128) == 2
    assert kv_blocks_for_share(spec, 1000, 0.001, 16, None) < 0  # too small a share: the caller refuses


def test_start_kind_asks_for_a_worker_only_when_it_needs_one() -> None:
    asked: list[int] = []

    def take() -> bool:
        asked.append(1)
        return True

    assert start_kind(warm=True, adopts=True, take_worker=take) is StartKind.WARM
    assert start_kind(warm=False, adopts=True, take_worker=take) is StartKind.PREWARMED
    assert not asked
    assert start_kind(warm=False, adopts=False, take_worker=take) is StartKind.WORKER and asked == [1]
    assert start_kind(warm=False, adopts=False, take_worker=lambda: False) is StartKind.COLD


# ---- the book under random changes ------------------------------------------------------------------------
ops = st.lists(st.tuples(st.sampled_from(["prewarm", "evict", "start", "stop", "lend", "unreserve"]),
                         st.sampled_from(sorted(SPECS)), st.integers(0, 3), st.integers(0, 60),
                         st.booleans()), max_size=60)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(ops)
def test_random_changes_keep_the_books(history: list) -> None:
    s = _state()
    book = ClusterBook(s)
    iids = iter(range(10**6))
    t = 0.0
    for op, m, g0, n, flag in history:
        t += 1.0
        spec = SPECS[m]
        before = _snapshot(book)
        try:
            if op == "prewarm":
                _, gs = check_gpus(s, m, tuple(range(g0, g0 + spec.tp)))
                check_prewarm(s, m, gs)
                book.add_replica(spec, gs, t, reserve=n // 4 if flag else 0)
            elif op == "evict":
                reps = [r for g in s.gpus for r in g.replicas.values()]
                if reps:
                    book.remove_replica(reps[n % len(reps)], t)
            elif op == "unreserve" and book.reserved:
                book.unreserve(*sorted(book.reserved)[n % len(book.reserved)], t)
            elif op == "start":
                _, gs = check_gpus(s, m, tuple(range(g0, g0 + spec.tp)))
                frac = 1.0 if flag else 0.5
                check_start(s, m, gs, frac, None)
                reuse = book.replica(m, gs)
                iid = next(iids)
                book.claim(iid, spec, gs, reuse, n, t, lambda r, t=t: book.remove_replica(r, t))
                book.add_instance(InstanceState(iid, m, gs, InstancePhase.READY, StartKind.COLD, t,
                                                kv_blocks_total=n, mem_fraction=frac))
            elif op == "stop":
                live = [i for i in s.instances.values() if book.holds(i)]
                if live:
                    inst = live[n % len(live)]
                    rep = book.release(inst, flag, t)
                    assert inst.instance_id not in s.gpus[inst.gpus[0]].instances
                    assert (rep is not None) <= flag
                    inst.phase = InstancePhase.STOPPED
            elif op == "lend":
                live = [i for i in s.instances.values() if book.holds(i)]
                if live:
                    inst = live[n % len(live)]
                    lent0 = inst.kv_blocks_lent
                    d = book.lend_kv(inst, n % 8, used_blocks=1, block_bytes=1, t=t)
                    assert inst.kv_blocks_lent == lent0 + d >= 0
                    assert inst.kv_blocks_lent <= max(inst.kv_blocks_total - 1, lent0)
        except CapacityError:
            assert _snapshot(book) == before, f"a refused {op} changed the books"
        book.check()
        for g in s.gpus:
            assert 0 <= g.used_bytes <= g.capacity_bytes
    assert len(book.ledger.held[0]) == len(CATEGORIES) and all(h[RESERVED] >= 0 for h in book.ledger.held)


def test_check_catches_books_that_disagree_with_the_state() -> None:
    s = _state()
    book = ClusterBook(s)
    book.add_replica(SPECS["a"], (0,), 0.0)
    book.check()
    del s.gpus[0].replicas["a"]  # the state changed behind the book's back
    with pytest.raises(CapacityError):
        book.check()
