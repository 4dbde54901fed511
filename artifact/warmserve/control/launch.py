"""Which GPUs a new instance of a model gets (docs/reference.md §1.3 step 4a).

In order of preference:

1. a *ready* prewarmed replica of the model whose GPUs are all idle (a
   prewarm hit: the start only maps memory), then one still loading;
   among equals the lowest GPU tuple;
2. otherwise ``tp`` idle GPUs of one node, chosen by a *launch rule*
   (``system.policy.launch_rule``, looked up in ``LAUNCH_RULES``):
   * ``fewest_replicas`` (WarmServe): the GPUs holding the fewest prewarmed
     replicas of other models, then the least summed replica score, then
     the lowest GPU ids; across nodes the set with the least (count, score)
     wins. The published code takes the *first* node with enough idle GPUs
     and applies the fewest-replicas rule inside it; searching every node
     costs O(GPUs) and never evicts more.
   * ``first_fit`` (the round-robin ablation and systems without
     prewarming): the first ``tp`` idle GPUs of the first node that has them.

A launch rule is any ``LaunchRule``: it gets, in node order, the idle and
unclaimed GPUs of every node that has at least ``tp`` of them, and returns
the chosen set. Adding one is a function decorated with
``@LAUNCH_RULES.register("<name>")``; the policies and the config checks pick
it up by name.

The backend evicts whatever other replicas the chosen GPUs hold. ``claimed``
lists GPUs already promised to other starts in the same decision round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from warmserve.control.registry import Registry
from warmserve.control.seam import ClusterState, GpuSet

ScoreOf = Callable[[str, GpuSet], float]


class LaunchRule(Protocol):
    """Choose ``tp`` GPUs for a new instance among ``candidates`` (idle, unclaimed GPUs per node, node order,
    only nodes with at least ``tp``; never empty); ``score_of`` values a prewarmed replica (None: all 0)."""

    def __call__(self, state: ClusterState, candidates: Sequence[list[int]], tp: int,
                 score_of: ScoreOf | None) -> GpuSet: ...


LAUNCH_RULES: Registry[LaunchRule] = Registry("system.policy.launch_rule")


@LAUNCH_RULES.register("first_fit")
def first_fit(state: ClusterState, candidates: Sequence[list[int]], tp: int, score_of: ScoreOf | None) -> GpuSet:
    """The first ``tp`` idle GPUs of the first node that has them (round-robin ablation, no prewarming)."""
    return tuple(candidates[0][:tp])


@LAUNCH_RULES.register("fewest_replicas")
def fewest_replicas(state: ClusterState, candidates: Sequence[list[int]], tp: int,
                    score_of: ScoreOf | None) -> GpuSet:
    """Per node the GPUs holding the fewest / least valuable replicas; across nodes the least (count, score)."""

    def weight(g: int) -> tuple[int, float, int]:
        reps = state.gpus[g].replicas
        score = sum(score_of(m, r.gpus) for m, r in reps.items()) if score_of else 0.0
        return len(reps), score, g

    best: tuple[int, float, GpuSet] | None = None
    for idle in candidates:
        chosen = tuple(sorted(sorted(idle, key=weight)[:tp]))
        # distinct replicas evicted by the whole set (a TP replica counts once)
        evicted = {(m, r.gpus) for g in chosen for m, r in state.gpus[g].replicas.items()}
        score = sum(score_of(m, gs) for m, gs in evicted) if score_of else 0.0
        key = (len(evicted), round(score, 9), chosen)
        if best is None or key < best:
            best = key
    assert best is not None  # candidates is never empty
    return best[2]


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


def idle_choice(state: ClusterState, tp: int, claimed: set[int], rule: LaunchRule,
                score_of: ScoreOf | None) -> GpuSet | None:
    """``tp`` idle, unclaimed GPUs of one node by ``rule``; None if no node has them."""
    gpn = state.gpus_per_node
    candidates = []
    for node in range(state.nodes):
        idle = [g for g in range(node * gpn, (node + 1) * gpn) if state.gpus[g].idle and g not in claimed]
        if len(idle) >= tp:
            candidates.append(idle)
    return rule(state, candidates, tp, score_of) if candidates else None


def choose_gpus(state: ClusterState, model: str, claimed: set[int], rule: LaunchRule, use_replicas: bool,
                score_of: ScoreOf | None) -> GpuSet | None:
    """GPUs for a new instance of ``model`` (see module doc)."""
    if use_replicas:
        hit = prewarmed_choice(state, model, claimed)
        if hit is not None:
            return hit
    return idle_choice(state, state.models[model].tp, claimed, rule, score_of)
