"""Which GPUs a new instance of a model gets (docs/reference.md §1.3 step 4a).

In order of preference:

1. a *ready* prewarmed replica of the model whose GPUs are all idle (a
   prewarm hit: the start only maps memory), then one still loading;
   among equals the lowest GPU tuple;
2. otherwise ``tp`` idle GPUs of one node, chosen by ``rule``:
   * ``fewest_replicas`` (WarmServe): the GPUs holding the fewest prewarmed
     replicas of other models, then the least summed replica score, then
     the lowest GPU ids; across nodes the set with the least (count, score)
     wins. The published code takes the *first* node with enough idle GPUs
     and applies the fewest-replicas rule inside it; searching every node
     costs O(GPUs) and never evicts more.
   * ``first_fit`` (the round-robin ablation and systems without
     prewarming): the first ``tp`` idle GPUs of the first node that has them.

The backend evicts whatever other replicas the chosen GPUs hold. ``claimed``
lists GPUs already promised to other starts in the same decision round.
"""

from __future__ import annotations

from collections.abc import Callable

from warmserve.control.seam import ClusterState, GpuSet

RULES = ("fewest_replicas", "first_fit")


def prewarmed_choice(state: ClusterState, model: str, claimed: set[int]) -> GpuSet | None:
    """A replica of ``model`` on idle, unclaimed GPUs (ready first, then lowest GPUs)."""
    best: tuple[bool, GpuSet] | None = None
    for gpus, rep in state.replicas_of(model).items():
        if any(not state.gpus[g].idle or g in claimed for g in gpus):
            continue
        key = (not rep.ready, gpus)
        if best is None or key < best:
            best = key
    return None if best is None else best[1]


def idle_choice(
    state: ClusterState,
    tp: int,
    claimed: set[int],
    rule: str = "fewest_replicas",
    score_of: Callable[[str, GpuSet], float] | None = None,
) -> GpuSet | None:
    """``tp`` idle, unclaimed GPUs of one node by ``rule``; None if no node has them."""
    if rule not in RULES:
        raise ValueError(f"unknown launch rule '{rule}'; choose one of {RULES}")
    gpn = state.gpus_per_node
    best: tuple[int, float, GpuSet] | None = None
    for node in range(state.nodes):
        idle = [g for g in range(node * gpn, (node + 1) * gpn) if state.gpus[g].idle and g not in claimed]
        if len(idle) < tp:
            continue
        if rule == "first_fit":
            return tuple(idle[:tp])

        def weight(g: int) -> tuple[int, float, int]:
            reps = state.gpus[g].replicas
            score = sum(score_of(m, r.gpus) for m, r in reps.items()) if score_of else 0.0
            return len(reps), score, g

        chosen = tuple(sorted(sorted(idle, key=weight)[:tp]))
        # distinct replicas evicted by the whole set (a TP replica counts once)
        evicted = {(m, r.gpus) for g in chosen for m, r in state.gpus[g].replicas.items()}
        score = sum(score_of(m, gs) for m, gs in evicted) if score_of else 0.0
        key = (len(evicted), round(score, 9), chosen)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]


def choose_gpus(
    state: ClusterState,
    model: str,
    claimed: set[int],
    rule: str = "fewest_replicas",
    use_replicas: bool = True,
    score_of: Callable[[str, GpuSet], float] | None = None,
) -> GpuSet | None:
    """GPUs for a new instance of ``model`` (see module doc)."""
    if use_replicas:
        hit = prewarmed_choice(state, model, claimed)
        if hit is not None:
            return hit
    return idle_choice(state, state.models[model].tp, claimed, rule, score_of)
