"""Where to put prewarmed replicas: evict-aware placement and the round-robin ablation.

Evict-aware placement (docs/reference.md §5.3). Wanted replicas are placed
greedily, highest score first. A candidate GPU group ``S`` for a replica
``R`` (TP degree ``t``, ``s`` bytes per GPU) is ``t`` GPUs of one node, each
with at least ``s`` free bytes and none holding ``R``'s model (as a replica
or a running instance). Every existing replica ``X`` overlapping ``S`` must be
*aligned* with it:

* ``X.tp == t``  ->  ``S == X.gpus``;
* ``X.tp <  t``  ->  ``X.gpus`` is inside ``S``;
* ``X.tp >  t``  ->  ``S`` is inside ``X.gpus``;

so starting any one replica later evicts a predictable, nested set of
others. Each valid group has ``maxScore`` / ``sumScore``: the largest and the
total score of the replicas it overlaps (each counted once). The chosen group
is the one with the least ``sumScore`` among groups where ``R`` would
*dominate* (``maxScore < R.score``), else the least ``sumScore`` overall.
**Ties** go to the lexicographically smallest global GPU tuple, i.e. lower
node first, then lower GPUs: the published depth-first enumeration order.
A replica with no valid group is skipped (prewarmed replicas are never
evicted to make room, as published).

Speed: the candidate groups of a TP degree are all ``t``-subsets of every
node (70 per 8-GPU node for ``t = 4``), held as numpy arrays; per-GPU
constraint summaries (bit masks of the nesting rules, score sums) turn the
validity test and both scores into a few vector operations per replica, and
placing a replica re-derives only its own node's rows. See
``scripts/bench_planner.py``.

Round-robin (the published ``--disable-placement`` ablation): cycle over the
models, each turn placing one replica of the model on the first node with
``t`` GPUs that have room and no copy of it (the first ``t`` such GPUs), with
no alignment rule and no scores. The published loop counted each model's
*total* demand rather than what is still missing beyond existing replicas,
and stopped at the first model with nothing (left) to place or the first
replica that did not fit (docs/reference.md §10.7). We count remaining
demand and drop a model from the cycle when it is satisfied or does not fit;
``published=True`` reproduces the original loop.

Both are registered in ``PLACEMENTS`` (selected by ``system.policy.placement``).
A placement is any ``Placement``: given the planner's view and each model's
demand (config model order), it returns the replicas to prewarm. Adding one is
a function decorated with ``@PLACEMENTS.register("<name>")``; ``WarmServePolicy``
and the config checks pick it up by name.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np

from warmserve.control.demand import ReplicaDemand
from warmserve.control.registry import Registry
from warmserve.control.seam import GpuSet


@dataclass(frozen=True, slots=True)
class Replica:
    """A replica the planner sees (existing, in progress, or planned this tick)."""

    model: str
    gpus: GpuSet
    score: float


@dataclass(frozen=True, slots=True)
class Wanted:
    """A replica the planner should place."""

    model: str
    tp: int
    bytes_per_gpu: int
    score: float


@dataclass(frozen=True, slots=True)
class _Groups:
    members: np.ndarray  # (n_groups, tp) global GPU ids, rows in lexicographic order
    masks: np.ndarray  # (n_groups,) int64 node-local bit masks
    per_node: int  # groups per node (rows of node n are [n*per_node, (n+1)*per_node))
    containing: tuple[np.ndarray, ...]  # local GPU -> offsets (within a node) of groups holding it


@lru_cache(maxsize=64)
def _groups(nodes: int, gpus_per_node: int, tp: int) -> _Groups:
    local = list(itertools.combinations(range(gpus_per_node), tp))
    per_node = len(local)
    loc = np.asarray(local, dtype=np.int64).reshape(per_node, tp)
    masks_local = np.array([sum(1 << g for g in c) for c in local], dtype=np.int64)
    base = (np.arange(nodes, dtype=np.int64) * gpus_per_node)[:, None, None]
    members = (loc[None, :, :] + base).reshape(nodes * per_node, tp)
    containing = tuple(np.flatnonzero((masks_local >> g) & 1) for g in range(gpus_per_node))
    return _Groups(members, np.tile(masks_local, nodes), per_node, containing)


class PlacementView:
    """The planner's private, mutable picture: free bytes, replicas, models present per GPU.

    ``free[g] < 0`` marks a GPU that may not receive replicas (e.g. claimed by
    an instance start this tick). ``present`` lists, per model, the GPUs that
    already hold it (replica or instance): the same model never twice on a GPU.
    """

    def __init__(
        self,
        nodes: int,
        gpus_per_node: int,
        free: Sequence[int] | np.ndarray,
        replicas: Iterable[Replica] = (),
        present: dict[str, set[int]] | None = None,
    ) -> None:
        if gpus_per_node > 62:
            raise ValueError("placement supports at most 62 GPUs per node (bit masks)")
        self.nodes, self.gpn = nodes, gpus_per_node
        self.free = np.asarray(free, dtype=np.int64).copy()
        if len(self.free) != nodes * gpus_per_node:
            raise ValueError(f"free has {len(self.free)} entries for {nodes}x{gpus_per_node} GPUs")
        self.replicas: list[Replica] = []
        self.masks: list[int] = []  # node-local bit mask of each replica
        self.cover: list[list[int]] = [[] for _ in range(len(self.free))]
        self.present: dict[str, set[int]] = {m: set(g) for m, g in (present or {}).items()}
        self._caches: dict[int, _TpCache] = {}
        for r in replicas:
            self._add(r)

    def _add(self, r: Replica) -> None:
        idx = len(self.replicas)
        self.replicas.append(r)
        self.masks.append(self.mask(r.gpus))
        for g in r.gpus:
            self.cover[g].append(idx)
        self.present.setdefault(r.model, set()).update(r.gpus)

    def place(self, r: Replica, bytes_per_gpu: int) -> None:
        """Record a planned replica: it takes ``bytes_per_gpu`` on each of its GPUs."""
        self._add(r)
        for g in r.gpus:
            self.free[g] -= bytes_per_gpu
        nodes = {g // self.gpn for g in r.gpus}
        for cache in self._caches.values():
            cache.dirty |= nodes

    def mask(self, gpus: Iterable[int]) -> int:
        return sum(1 << (g % self.gpn) for g in gpus)

    def cache(self, tp: int) -> _TpCache:
        c = self._caches.get(tp)
        if c is None:
            c = self._caches[tp] = _TpCache(self, tp)
        c.refresh()
        return c


class _TpCache:
    """Per-TP-degree constraint summaries per GPU and per candidate group."""

    def __init__(self, view: PlacementView, tp: int) -> None:
        self.view, self.tp = view, tp
        self.groups = _groups(view.nodes, view.gpn, tp)
        n_gpus, n_groups = len(view.free), len(self.groups.masks)
        full = (1 << view.gpn) - 1
        self.within = np.full(n_gpus, full, dtype=np.int64)  # S must lie inside these bits
        self.include = np.zeros(n_gpus, dtype=np.int64)  # S must contain these bits
        self.low = np.zeros(n_gpus)  # scores of replicas (tp <= t) counted at their lowest GPU
        self.high = np.zeros(n_gpus)  # scores of covering replicas with tp > t
        self.maxcov = np.zeros(n_gpus)  # highest score of any replica covering the GPU
        self.nest_ok = np.zeros(n_groups, dtype=bool)
        self.gsum = np.zeros(n_groups)
        self.gmax = np.zeros(n_groups)
        self.gfree = np.zeros(n_groups, dtype=np.int64)
        self.dirty: set[int] = set(range(view.nodes))

    def refresh(self) -> None:
        if len(self.dirty) == self.view.nodes:
            self._refresh(range(len(self.view.free)), slice(None))
        else:
            k, gpn = self.groups.per_node, self.view.gpn
            for node in sorted(self.dirty):
                self._refresh(range(node * gpn, (node + 1) * gpn), slice(node * k, (node + 1) * k))
        self.dirty.clear()

    def _refresh(self, gpu_range: range, groups: slice) -> None:
        """Re-derive the per-GPU summaries of ``gpu_range`` and the rows ``groups`` of its nodes."""
        v, t = self.view, self.tp
        full = (1 << v.gpn) - 1
        lo = gpu_range.start
        n = len(gpu_range)
        within, include = [full] * n, [0] * n
        low, high, mx = [0.0] * n, [0.0] * n, [0.0] * n
        seen: set[int] = set()
        for g in gpu_range:
            for ri in v.cover[g]:
                if ri in seen:
                    continue
                seen.add(ri)
                r, m, size = v.replicas[ri], v.masks[ri], len(v.replicas[ri].gpus)
                for x in r.gpus:
                    i = x - lo
                    if size >= t:
                        within[i] &= m
                    else:
                        include[i] |= m
                    if size > t:
                        high[i] += r.score
                    if r.score > mx[i]:
                        mx[i] = r.score
                if size <= t:
                    low[r.gpus[0] - lo] += r.score
        sl = slice(lo, lo + n)
        self.within[sl], self.include[sl] = within, include
        self.low[sl], self.high[sl], self.maxcov[sl] = low, high, mx
        mem = self.groups.members[groups]
        masks = self.groups.masks[groups][:, None]
        ok = ((masks & ~self.within[mem]) == 0) & ((self.include[mem] & ~masks) == 0)
        self.nest_ok[groups] = ok.all(axis=1)
        self.gsum[groups] = np.round(self.low[mem].sum(axis=1) + self.high[mem[:, 0]], 9)
        self.gmax[groups] = self.maxcov[mem].max(axis=1)
        self.gfree[groups] = v.free[mem].min(axis=1)

    def best(self, model: str, bytes_per_gpu: int, score: float) -> GpuSet | None:
        """The chosen group for a replica (see module doc), or None."""
        valid = self.nest_ok & (self.gfree >= bytes_per_gpu)
        k = self.groups.per_node
        for g in self.view.present.get(model, ()):
            node, local = divmod(g, self.view.gpn)
            valid[node * k + self.groups.containing[local]] = False
        if not valid.any():
            return None
        dom = valid & (self.gmax < score)
        cand = dom if dom.any() else valid
        i = int(np.argmin(np.where(cand, self.gsum, np.inf)))
        return tuple(int(x) for x in self.groups.members[i])


def evict_aware(view: PlacementView, wanted: Sequence[Wanted]) -> list[tuple[str, GpuSet]]:
    """Place ``wanted`` replicas (highest score first, stable) into ``view``; returns (model, gpus)."""
    out: list[tuple[str, GpuSet]] = []
    for w in sorted(wanted, key=lambda w: -w.score):
        if w.tp > view.gpn:
            continue
        gpus = view.cache(w.tp).best(w.model, w.bytes_per_gpu, w.score)
        if gpus is None:
            continue
        view.place(Replica(w.model, gpus, w.score), w.bytes_per_gpu)
        out.append((w.model, gpus))
    return out


def _first_fit(view: PlacementView, model: str, tp: int, size: int) -> GpuSet | None:
    """First node with ``tp`` GPUs that have room and no copy of ``model``: its first such GPUs."""
    have = view.present.get(model, set())
    for node in range(view.nodes):
        ok = [g for g in range(node * view.gpn, (node + 1) * view.gpn) if view.free[g] >= size and g not in have]
        if len(ok) >= tp:
            return tuple(ok[:tp])
    return None


def round_robin(
    view: PlacementView,
    demand: Sequence[tuple[str, int, int, int]],
    published: bool,
) -> list[tuple[str, GpuSet]]:
    """The round-robin ablation. ``demand`` = ``(model, tp, bytes_per_gpu, total wanted)`` in model order."""
    existing = {m: 0 for m, *_ in demand}
    for r in view.replicas:
        if r.model in existing:
            existing[r.model] += 1
    left = [total if published else total - existing[m] for m, _, _, total in demand]
    out: list[tuple[str, GpuSet]] = []
    if published:
        idx = 0
        while demand:
            i = idx % len(demand)
            model, tp, size, _ = demand[i]
            if left[i] <= 0:
                break
            left[i] -= 1
            gpus = _first_fit(view, model, tp, size)
            if gpus is None:
                break
            view.place(Replica(model, gpus, 0.0), size)
            out.append((model, gpus))
            idx += 1
        return out
    queue = deque(i for i in range(len(demand)) if left[i] > 0)
    while queue:
        i = queue.popleft()
        model, tp, size, _ = demand[i]
        gpus = _first_fit(view, model, tp, size)
        if gpus is None:
            continue  # does not fit: drop the model from the cycle
        left[i] -= 1
        view.place(Replica(model, gpus, 0.0), size)
        out.append((model, gpus))
        if left[i] > 0:
            queue.append(i)
    return out


# ---------------------------------------------------------------- pluggable placements
@dataclass(frozen=True, slots=True)
class ModelDemand:
    """One model's wanted replicas this window (what every placement is given)."""

    model: str
    tp: int
    bytes_per_gpu: int
    demand: ReplicaDemand  # how many replicas in all (existing ones included) and the score of each rank


@dataclass(frozen=True, slots=True)
class PlacementOptions:
    """Placement knobs of ``system.policy`` (a placement reads the ones it has)."""

    round_robin_published: bool  # round_robin: the published loop (total demand, stop at the first miss)


class Placement(Protocol):
    """Place replicas for ``demand`` (config model order) into ``view``; returns ``(model, gpus)`` placed,
    having recorded each with ``view.place``."""

    def __call__(self, view: PlacementView, demand: Sequence[ModelDemand],
                 options: PlacementOptions) -> list[tuple[str, GpuSet]]: ...


PLACEMENTS: Registry[Placement] = Registry("system.policy.placement")


@PLACEMENTS.register("evict_aware")
def evict_aware_placement(view: PlacementView, demand: Sequence[ModelDemand],
                          options: PlacementOptions) -> list[tuple[str, GpuSet]]:
    """Evict-aware placement of the replicas still missing beyond those the view holds, scored by rank."""
    wanted: list[Wanted] = []
    for d in demand:
        have = sum(1 for r in view.replicas if r.model == d.model)
        wanted += [Wanted(d.model, d.tp, d.bytes_per_gpu, d.demand.score(r)) for r in range(have, d.demand.total)]
    return evict_aware(view, wanted)


@PLACEMENTS.register("round_robin")
def round_robin_placement(view: PlacementView, demand: Sequence[ModelDemand],
                          options: PlacementOptions) -> list[tuple[str, GpuSet]]:
    """The round-robin ablation (``options.round_robin_published``: the published loop)."""
    totals = [(d.model, d.tp, d.bytes_per_gpu, d.demand.total) for d in demand]
    return round_robin(view, totals, published=options.round_robin_published)
