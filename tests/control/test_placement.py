"""Evict-aware placement and the round-robin ablation (docs/reference.md §5.3)."""

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from warmserve.control.placement import PlacementView, Replica, Wanted, evict_aware, round_robin

G = 100  # bytes per GPU of every replica in these tests


def view(free, replicas=(), gpn=4, present=None):
    return PlacementView(len(free) // gpn, gpn, free, replicas, present)


def place1(v, model, tp, score, size=G):
    out = evict_aware(v, [Wanted(model, tp, size, score)])
    return out[0][1] if out else None


def test_empty_cluster_takes_lowest_gpus():
    assert place1(view([1000] * 8), "a", 2, 1.0) == (0, 1)


def test_equal_tp_must_coincide_and_dominance_prefers_free_gpus():
    v = view([1000] * 4, [Replica("x", (0, 1), 5.0)])
    # (0,1) is valid (equal set) but R=4 would not dominate X=5; (2,3) overlaps nothing
    assert place1(v, "a", 2, 4.0) == (2, 3)
    # (1,2) / (0,2) etc. are misaligned with X and never chosen
    v = view([1000, 1000, 1000, 0], [Replica("x", (0, 1), 5.0)])  # GPU 3 full
    # only (0,1) is valid: taken although R does not dominate (least sum among all)
    assert place1(v, "a", 2, 4.0) == (0, 1)


def test_nested_shapes():
    # a TP4 replica over GPUs 0-3 and a TP1 replica on GPU 0
    reps = [Replica("big", (0, 1, 2, 3), 3.0), Replica("one", (0,), 1.0)]
    v = view([1000] * 4, reps)
    # TP2 groups inside the TP4 set; those holding GPU 0 also overlap "one" (sum 4), others sum 3
    assert place1(v, "a", 2, 5.0) == (1, 2)
    # TP4 group must contain both (it equals "big"): sum 4, R=2 does not dominate but it is the only group
    v = view([1000] * 4, reps)
    assert place1(v, "b", 4, 2.0) == (0, 1, 2, 3)


def test_smaller_replica_must_be_inside_larger_group():
    # TP1 replica on GPU 1: a TP2 group touching GPU 1 must contain it -> fine; TP2 replica on (2,3):
    # a TP4 group must contain it; a TP1 candidate on GPU 2 lies inside it
    reps = [Replica("x", (1,), 2.0), Replica("y", (2, 3), 1.0)]
    v = view([1000] * 4, reps)
    assert place1(v, "a", 1, 3.0) == (0,)  # the free GPU wins (sum 0)
    v = view([0, 1000, 1000, 1000], reps)
    assert place1(v, "a", 1, 3.0) == (2,)  # least sum: y=1 < x=2


def test_dominance_rule_beats_lower_sum():
    # group A=(0,1) overlaps one replica of score 5 (sum 5, max 5); group B=(2,3) overlaps two of 2 and 2.5
    reps = [Replica("x", (0, 1), 5.0), Replica("y", (2,), 2.0), Replica("z", (3,), 2.5)]
    v = view([1000] * 4, reps)
    # R=3: only B is dominated (max 2.5 < 3) although its sum 4.5 < 5 anyway; R=6: both dominated, least sum B
    assert place1(v, "a", 2, 3.0) == (2, 3)
    reps = [Replica("x", (0, 1), 4.0), Replica("y", (2,), 2.0), Replica("z", (3,), 2.5)]
    v = view([1000] * 4, reps)
    # R=3: A (sum 4, max 4) not dominated; B (sum 4.5, max 2.5) dominated -> B despite larger sum
    assert place1(v, "a", 2, 3.0) == (2, 3)


def test_tie_goes_to_lowest_gpus_across_nodes():
    reps = [Replica("x", (0,), 1.0), Replica("y", (5,), 1.0)]
    v = view([0, 1000, 1000, 1000, 1000, 1000, 1000, 1000], reps)
    # node 0: GPUs 1-3 free of replicas -> sum 0 at (1,); node 1 also has zero-sum GPUs; node 0 first
    assert place1(v, "a", 1, 1.0) == (1,)


def test_same_model_never_twice_on_a_gpu_and_memory_respected():
    v = view([1000] * 4, [Replica("a", (0, 1), 1.0)], present={"a": {3}})  # instance of a on GPU 3
    out = evict_aware(v, [Wanted("a", 1, G, 1.0), Wanted("a", 1, G, 0.5)])
    assert [g for _, g in out] == [(2,)]  # 0,1 hold a replica of a, 3 runs a; the second has no room
    v = view([150, 150, 150, 150])
    out = evict_aware(v, [Wanted("b", 2, G, 2.0), Wanted("c", 2, G, 1.0), Wanted("d", 2, G, 0.5)])
    assert [g for _, g in out] == [(0, 1), (2, 3)]  # 150 bytes hold one replica per GPU


def test_higher_scores_placed_first():
    v = view([150, 150, 1000, 1000])
    out = evict_aware(v, [Wanted("lo", 2, G, 1.0), Wanted("hi", 2, G, 9.0)])
    assert out[0] == ("hi", (0, 1))


# ---- brute force: the published depth-first enumeration, literally ---------------------------
def brute_force(free, gpn, replicas, model, tp, size, score):
    best = None
    for node in range(len(free) // gpn):
        cand = [g for g in range(node * gpn, (node + 1) * gpn) if free[g] >= size]
        for s in itertools.combinations(cand, tp):
            sset = set(s)
            ok, over = True, []
            for x in replicas:
                if not sset & set(x.gpus):
                    continue
                xs = set(x.gpus)
                if x.model == model:
                    ok = False
                elif len(xs) == tp:
                    ok &= xs == sset
                elif len(xs) < tp:
                    ok &= xs <= sset
                else:
                    ok &= sset <= xs
                over.append(x.score)
            if not ok:
                continue
            key = (not (max(over, default=0.0) < score), round(sum(over), 9), s)
            if best is None or key < best:
                best = key
    return None if best is None else best[2]


@st.composite
def states(draw):
    gpn = draw(st.sampled_from([2, 4, 8]))
    nodes = draw(st.integers(1, 2))
    n = gpn * nodes
    free = draw(st.lists(st.sampled_from([0, 100, 250, 1000]), min_size=n, max_size=n))
    reps = []
    for i in range(draw(st.integers(0, 6))):
        tp = draw(st.sampled_from([t for t in (1, 2, 4) if t <= gpn]))
        node = draw(st.integers(0, nodes - 1))
        gpus = tuple(sorted(draw(st.sets(st.integers(0, gpn - 1), min_size=tp, max_size=tp))))
        reps.append(Replica(f"m{i % 3}", tuple(node * gpn + g for g in gpus),
                            draw(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0]))))
    # at most one replica of a model per GPU (the state invariant)
    seen, clean = set(), []
    for r in reps:
        if any((r.model, g) in seen for g in r.gpus):
            continue
        seen |= {(r.model, g) for g in r.gpus}
        clean.append(r)
    tp = draw(st.sampled_from([t for t in (1, 2, 4) if t <= gpn]))
    return gpn, free, clean, draw(st.sampled_from(["m0", "new"])), tp, draw(st.sampled_from([0.5, 1.5, 2.5, 4.0]))


@settings(max_examples=300, deadline=None)
@given(states())
def test_matches_brute_force_enumeration(s):
    gpn, free, reps, model, tp, score = s
    got = place1(view(free, reps, gpn), model, tp, score)
    assert got == brute_force(free, gpn, reps, model, tp, G, score)


# ---- round robin --------------------------------------------------------------------------------
def test_round_robin_counts_remaining_demand():
    v = view([1000] * 4, [Replica("a", (0,), 0.0)])
    out = round_robin(v, [("a", 1, G, 2), ("b", 1, G, 1)], published=False)
    # a already has one of its 2: one more; b one
    assert out == [("a", (1,)), ("b", (0,))]


def test_round_robin_published_counts_total_and_stops_at_first_miss():
    v = view([1000] * 4, [Replica("a", (0,), 0.0)])
    out = round_robin(v, [("a", 1, G, 2), ("b", 1, G, 1)], published=True)
    # total demand: a twice more, b once; stops when a comes round with nothing left
    assert out == [("a", (1,)), ("b", (0,)), ("a", (2,))]
    v = view([1000, 1000, 0, 0])
    assert round_robin(v, [("a", 2, G, 1), ("b", 4, G, 1), ("c", 1, G, 1)], published=True) == [("a", (0, 1))]
    # fixed: b does not fit and leaves the cycle, c still gets its replica
    v = view([1000, 1000, 0, 0])
    assert (round_robin(v, [("a", 2, G, 1), ("b", 4, G, 1), ("c", 1, G, 1)], published=False)
            == [("a", (0, 1)), ("c", (0,))])
