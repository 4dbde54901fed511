"""Instance GPU choice and KV-cache reservation (docs/reference.md §1.3 step 4a, §5.5)."""

from control_fakes import GIB, FakeBackend

from warmserve.config import model_specs
from warmserve.control.kv_reservation import kv_commands, lend_target
from warmserve.control.launch import choose_gpus as _choose
from warmserve.control.launch import fewest_replicas, first_fit
from warmserve.control.seam import Evict, InstancePhase, InstanceState, LendKv, StartKind

SPECS = model_specs("paper4")
A, B, C, D = list(SPECS)  # 7b-0, 7b-1, 13b-0 (tp2), 70b-0 (tp4)


def choose_gpus(state, model, claimed, rule=fewest_replicas, use_replicas=True, score_of=None):
    """The launch choice as WarmServe configures it (fewest_replicas, replicas first) unless told otherwise."""
    return _choose(state, model, claimed, rule, use_replicas, score_of)


def backend():
    return FakeBackend(SPECS, nodes=2, gpus_per_node=4)


def test_prewarmed_replica_on_idle_gpus_is_a_hit():
    b = backend()
    b.prewarm(C, (2, 3))
    assert choose_gpus(b.state, C, set()) == (2, 3)
    assert choose_gpus(b.state, C, {3}) != (2, 3)  # claimed by another start this round


def test_fewest_replicas_rule_and_first_fit():
    b = backend()
    b.prewarm(A, (0,))
    b.prewarm(B, (1,))
    b.prewarm(D, (4, 5, 6, 7))
    # node 0 has two idle replica-free GPUs (2, 3); node 1 all four hold the 70B replica
    assert choose_gpus(b.state, C, set()) == (2, 3)
    assert choose_gpus(b.state, C, set(), rule=first_fit) == (0, 1)
    # TP4: node 0 evicts two replicas (A, B), node 1 evicts one (D) -> node 1, unless D's replica is worth more
    assert choose_gpus(b.state, D, set(), use_replicas=False) == (4, 5, 6, 7)
    score = {A: 0.1, B: 0.1, D: 5.0}
    assert choose_gpus(b.state, D, set(), use_replicas=False, score_of=lambda m, g: score[m]) == (4, 5, 6, 7)
    b.start_instance(A, (2,))
    assert choose_gpus(b.state, C, {3}) is None or choose_gpus(b.state, C, {3})[0] >= 4


def inst(total=100, used=10, inflight=16, lent=0):
    return InstanceState(0, A, (0,), InstancePhase.READY, StartKind.COLD, 0.0, inflight=inflight,
                         kv_blocks_total=total, kv_blocks_used=used, kv_blocks_lent=lent)


def test_lend_target_published_rule():
    assert lend_target(inst(), 32, True) == 100 - 10 - 50  # keeps int(100 x 16 / 32) free
    assert lend_target(inst(inflight=0, used=0), 32, True) == 100
    assert lend_target(inst(inflight=40), 32, True) == 0
    # load rose: the fixed rule gives blocks back, the published one keeps them lent
    assert lend_target(inst(inflight=32, used=20, lent=60), 32, True) == 0
    assert lend_target(inst(inflight=32, used=20, lent=60), 32, False) == 60


def test_returning_kv_evicts_replicas_on_lent_bytes():
    b = FakeBackend(SPECS, nodes=1, gpus_per_node=4, capacity_bytes=40 * GIB)
    iid = b.start_instance(A, (0,))
    b.state.instances[iid].phase = InstancePhase.READY
    b.lend_kv(iid, b.state.instances[iid].kv_blocks_total)  # idle: everything lent
    b.prewarm(B, (0,))  # a replica sits on lent KV
    assert b.state.gpus[0].free_bytes < (40 * GIB - SPECS[A].bytes_per_gpu)  # less than the lent KV
    b.state.instances[iid].inflight = 32  # fully loaded now: wants all its blocks back

    def bb(i):
        return -(-SPECS[A].kv_bytes_per_token // SPECS[A].tp) * 256

    cmds = kv_commands(b.state, 32, True, bb, lambda m, g: 1.0)
    assert cmds == [Evict(B, (0,)), LendKv(iid, 0)]
    assert kv_commands(b.state, 32, False, bb, lambda m, g: 1.0) == []  # published: never returned
