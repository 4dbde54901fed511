"""MuxServe-style placement (Duan et al., ICML'24, Algorithm 1), as a pure function over numbers.

What MuxServe's optimizer does (docs/published_measurements.md §7), and our rendering:

1. **Meshes over every GPU.** Each node is cut by one of the patterns of mesh
   sizes from ``mesh_sizes`` (for 8 GPUs and sizes {8,4,2,1}: the 10 patterns
   [8], [4,4], [4,2,2], ..., [1]*8); patterns are combined across nodes
   (multisets: nodes are interchangeable), so every GPU is in exactly one mesh.
   A candidate with more meshes than LLMs is skipped, as in MuxServe; so is one
   whose largest mesh is smaller than the largest TP degree of the mix. (When
   the cluster has more nodes than LLMs MuxServe has no candidate at all; we
   then allow one mesh per node and fill the meshes left empty, see 4.)
2. **Greedy, by rate x size.** LLMs are sorted by forecast demand x size scale
   (MuxServe's 1/2/4/8 for the 7/13/30/65B classes), largest first. Each goes
   to the mesh where the estimated served demand of the *whole* layout grows
   most, subject to per-GPU memory (weights of everything on the mesh plus a
   KV reserve per instance) and the mesh's SM budget (decode shares summing to
   at most ``1 + overload``; MuxServe allows 20 points). Ties go to the mesh
   with the least compute demand per GPU placed so far (MuxServe's sort key),
   then the smaller mesh.
3. **Shares.** The decode share of an LLM on a mesh is the smallest of
   ``decode_grid`` whose estimated supply meets its demand (else the largest),
   MuxServe's ``estimate_mps``; its prefill share is fixed by size class
   (80/90/100/100 %, MuxServe's ``dump_to_yaml``). At run time every LLM on a
   mesh gets ``max(prefill, decode) / sum over the mesh`` of the SMs: how the
   published WarmServe code runs MuxServe placements under MPS
   (docs/reference.md §6).
4. **An LLM on a mesh of S GPUs runs as S/tp data-parallel replicas of its
   configured TP** (MuxServe itself raises TP to S). Our seam starts instances
   of a model at the TP its ``configs/model`` gives (the twin's latency, KV
   and memory tables are keyed by it), and replicas use the same GPUs, so the
   mesh still serves on every GPU. Meshes a candidate leaves empty (only when
   nodes outnumber LLMs) each get the fitting LLM with the largest gain, then
   the one that leaves the largest worst-case headroom.
5. **Best layout**: the candidate with the largest estimated served demand;
   ties (common: every LLM's demand is met in many layouts) go to the largest
   worst-case headroom (supply / demand), then to the first candidate.

**Throughput estimate** (ours; MuxServe uses its profiled cost file): demand
is forecast concurrency (``history.parquet`` priors), and one instance at the
whole GPU sustains ``capacity`` in-flight requests (the router's per-instance
limit). At decode share ``s`` its requests take ``s ** -decode_exponent``
longer (``warmserve.control.mps``), so it sustains ``capacity * s **
decode_exponent`` of the same demand. Prefill is left out of the estimate:
decode dominates a request's time (MuxServe paper, Section 2). docs/muxserve.md §1 discusses it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from warmserve.control.mps import ShareModel
from warmserve.errors import InputError

GIB = 2**30
_EPS = 1e-9
_HEADROOM_CAP = 1e18  # infinite headroom (a model with no demand) compared as a large finite number


@dataclass(frozen=True, slots=True)
class Llm:
    """One served LLM as the placement sees it."""

    name: str
    tp: int
    bytes_per_gpu: int  # weights per GPU at its TP
    reserve_bytes: int  # KV per GPU an instance must keep at least
    kv_bytes_per_token_gpu: int  # KV bytes per token per GPU (for the KV split)
    demand: float  # forecast concurrency
    scale: int  # MuxServe rate scale of its size class
    prefill_share: float  # MuxServe prefill SM share of its size class


@dataclass(frozen=True, slots=True)
class Params:
    pool_bytes: int  # per-GPU memory for weights + KV
    capacity: int  # in-flight requests one instance sustains at the whole GPU
    mesh_sizes: tuple[int, ...]
    decode_grid: tuple[float, ...]
    overload: float  # SM budget of a mesh may be exceeded by this much
    shares: ShareModel


@dataclass(frozen=True, slots=True)
class Mesh:
    node: int
    first: int  # first global GPU index
    size: int

    @property
    def gpus(self) -> tuple[int, ...]:
        return tuple(range(self.first, self.first + self.size))


@dataclass(frozen=True, slots=True)
class Layout:
    """A placement: which LLMs on which mesh, with their decode and run-time shares."""

    meshes: tuple[Mesh, ...]
    on_mesh: tuple[tuple[str, ...], ...]  # per mesh, LLM names
    decode: dict[tuple[str, int], float]  # (llm, mesh index) -> decode share
    run_share: dict[tuple[str, int], float]  # (llm, mesh index) -> SM share at run time
    served: float
    headroom: float


@dataclass(frozen=True, slots=True)
class Instance:
    model: str
    gpus: tuple[int, ...]
    mem_fraction: float
    compute_share: float


# ---- candidate meshes ------------------------------------------------------
def node_patterns(gpus_per_node: int, sizes: Sequence[int]) -> list[tuple[int, ...]]:
    """Every way to cut a node into meshes of the given sizes, largest meshes first (MuxServe's order)."""
    parts = sorted(set(sizes), reverse=True)
    out: list[tuple[int, ...]] = []

    def rec(left: int, start: int, acc: tuple[int, ...]) -> None:
        if left == 0:
            out.append(acc)
            return
        for i in range(start, len(parts)):
            if parts[i] <= left:
                rec(left - parts[i], i, acc + (parts[i],))

    rec(gpus_per_node, 0, ())
    return out


def candidates(nodes: int, gpus_per_node: int, sizes: Sequence[int], max_meshes: int) -> Iterator[tuple[Mesh, ...]]:
    """Mesh layouts of the cluster with at most ``max_meshes`` meshes (multisets of node patterns)."""
    pats = node_patterns(gpus_per_node, sizes)
    if not pats:
        return
    fewest = min(len(p) for p in pats)

    def rec(node: int, start: int, count: int, acc: list[tuple[int, ...]]) -> Iterator[tuple[Mesh, ...]]:
        if node == nodes:
            yield _meshes(acc, gpus_per_node)
            return
        for i in range(start, len(pats)):
            c = count + len(pats[i])
            if c + fewest * (nodes - node - 1) > max_meshes:
                continue
            acc.append(pats[i])
            yield from rec(node + 1, i, c, acc)
            acc.pop()

    yield from rec(0, 0, 0, [])


def _meshes(per_node: list[tuple[int, ...]], gpus_per_node: int) -> tuple[Mesh, ...]:
    out = []
    for node, pat in enumerate(per_node):
        g = node * gpus_per_node
        for size in pat:  # largest first: every mesh starts at a multiple of its size
            out.append(Mesh(node, g, size))
            g += size
    return tuple(out)


# ---- estimates ---------------------------------------------------------------
def _supply(llm: Llm, mesh_size: int, share: float, p: Params) -> float:
    """Demand ``mesh_size / tp`` replicas of ``llm`` sustain at SM share ``share``."""
    _, slow = p.shares.factors(share, llm.tp)
    return (mesh_size // llm.tp) * p.capacity / slow


def _decode_share(llm: Llm, mesh_size: int, p: Params) -> float:
    for s in p.decode_grid:
        if _supply(llm, mesh_size, s, p) >= llm.demand:
            return s
    return p.decode_grid[-1]


def _run_shares(names: Sequence[str], mesh: int, llms: dict[str, Llm], decode: dict[tuple[str, int], float]
                ) -> dict[str, float]:
    raw = {n: max(llms[n].prefill_share, decode[(n, mesh)]) for n in names}
    tot = sum(raw.values())
    return {n: v / tot for n, v in raw.items()}


def _score(meshes: Sequence[Mesh], on: list[list[str]], llms: dict[str, Llm], decode: dict[tuple[str, int], float],
           p: Params) -> tuple[float, float, dict[tuple[str, int], float]]:
    """(served demand, worst headroom, run-time shares) of an assignment."""
    supply = dict.fromkeys(llms, 0.0)
    run: dict[tuple[str, int], float] = {}
    for i, mesh in enumerate(meshes):
        for n, s in _run_shares(on[i], i, llms, decode).items():
            run[(n, i)] = s
            supply[n] += _supply(llms[n], mesh.size, s, p)
    served = sum(min(llms[n].demand, supply[n]) for n in llms)
    head = min((supply[n] / llms[n].demand for n in llms if llms[n].demand > 0), default=math.inf)
    return served, head, run


def _fits(llm: Llm, i: int, mesh: Mesh, on: list[list[str]], llms: dict[str, Llm],
          decode: dict[tuple[str, int], float], p: Params) -> float | None:
    """The decode share ``llm`` would get on mesh ``i``, or None if it does not fit there."""
    if mesh.size < llm.tp or mesh.size % llm.tp or llm.name in on[i]:
        return None
    mem = sum(llms[n].bytes_per_gpu + llms[n].reserve_bytes for n in on[i]) + llm.bytes_per_gpu + llm.reserve_bytes
    if mem > p.pool_bytes:
        return None
    d = _decode_share(llm, mesh.size, p)
    if sum(decode[(n, i)] for n in on[i]) + d > 1 + p.overload + _EPS:
        return None
    return d


def _trial(meshes: tuple[Mesh, ...], on: list[list[str]], llms: dict[str, Llm], decode: dict[tuple[str, int], float],
           p: Params, name: str, i: int, d: float) -> tuple[float, float, dict[tuple[str, int], float]]:
    """``_score`` of the layout with ``name`` added to mesh ``i`` at decode share ``d``; the layout is left
    as it was (the greedy tries every mesh before committing to one)."""
    on[i].append(name)
    decode[(name, i)] = d
    try:
        return _score(meshes, on, llms, decode, p)
    finally:
        on[i].pop()
        del decode[(name, i)]


# ---- greedy --------------------------------------------------------------
def _greedy(meshes: tuple[Mesh, ...], order: list[Llm], llms: dict[str, Llm], p: Params) -> Layout | str:
    """Place every LLM once, then fill empty meshes; the name of the LLM that did not fit on failure."""
    on: list[list[str]] = [[] for _ in meshes]
    decode: dict[tuple[str, int], float] = {}
    load = [0.0] * len(meshes)  # compute demand per GPU placed (MuxServe's mesh sort key)
    base = _score(meshes, on, llms, decode, p)[0]
    for llm in order:
        best: tuple[tuple[float, float, int, int], int, float] | None = None
        for i, mesh in enumerate(meshes):
            d = _fits(llm, i, mesh, on, llms, decode, p)
            if d is None:
                continue
            gain = _trial(meshes, on, llms, decode, p, llm.name, i, d)[0] - base
            key = (round(gain, 9), -round(load[i], 9), -mesh.size, -i)
            if best is None or key > best[0]:
                best = (key, i, d)
        if best is None:
            return llm.name
        _, i, d = best
        on[i].append(llm.name)
        decode[(llm.name, i)] = d
        load[i] += llm.demand * llm.scale / meshes[i].size
        base = _score(meshes, on, llms, decode, p)[0]
    for i, mesh in enumerate(meshes):  # only when nodes outnumber LLMs: replicate an LLM into each empty mesh
        if on[i]:
            continue
        fill: tuple[tuple[float, float, int], str, float] | None = None
        for k, llm in enumerate(order):
            d = _fits(llm, i, mesh, on, llms, decode, p)
            if d is None:
                continue
            served, head, _ = _trial(meshes, on, llms, decode, p, llm.name, i, d)
            fkey = (round(served - base, 9), round(min(head, _HEADROOM_CAP), 9), -k)
            if fill is None or fkey > fill[0]:
                fill = (fkey, llm.name, d)
        if fill is None:
            return f"<a mesh of {mesh.size} GPUs on node {mesh.node}>"
        on[i].append(fill[1])
        decode[(fill[1], i)] = fill[2]
        base = _score(meshes, on, llms, decode, p)[0]
    served, head, run = _score(meshes, on, llms, decode, p)
    return Layout(meshes, tuple(tuple(x) for x in on), decode, run, served, head)


def place(nodes: int, gpus_per_node: int, llms: Sequence[Llm], p: Params) -> Layout:
    """The best MuxServe-style layout of ``llms`` on the cluster; ``InputError`` naming a model if none fits."""
    if not llms:
        raise InputError("muxserve: no models to place")
    by_name = {m.name: m for m in llms}
    order = sorted(llms, key=lambda m: (-m.demand * m.scale, -m.scale, llms.index(m)))
    widest = max(llms, key=lambda m: m.tp)
    best: Layout | None = None
    failed: dict[str, int] = {}
    seen = 0
    for meshes in candidates(nodes, gpus_per_node, p.mesh_sizes, max(len(llms), nodes)):
        if max(m.size for m in meshes) < widest.tp:
            continue  # a mesh too small for the widest model (MuxServe's max_mesh_size_required)
        seen += 1
        got = _greedy(meshes, order, by_name, p)
        if isinstance(got, str):
            failed[got] = failed.get(got, 0) + 1
            continue
        if best is None or (round(got.served, 9), round(min(got.headroom, _HEADROOM_CAP), 9)) > \
                (round(best.served, 9), round(min(best.headroom, _HEADROOM_CAP), 9)):
            best = got
    if best is not None:
        return best
    if not seen:
        raise InputError(f"muxserve: model '{widest.name}' needs TP {widest.tp}, but no mesh of sizes "
                         f"{sorted(p.mesh_sizes)} fits a node of {gpus_per_node} GPUs")
    name = max(failed, key=lambda n: failed[n])
    m = by_name.get(name)
    what = (f"'{name}' ({m.bytes_per_gpu / GIB:.1f} GiB/GPU of weights + {m.reserve_bytes / GIB:.1f} GiB of KV "
            f"reserve at TP {m.tp})") if m else name
    raise InputError(f"muxserve: placement cannot hold the models: no mesh layout of {nodes}x{gpus_per_node} GPUs "
                     f"(pool {p.pool_bytes / GIB:.1f} GiB/GPU) has room for {what} next to the others")


def instances(layout: Layout, llms: Sequence[Llm], pool_bytes: int) -> list[Instance]:
    """The instances of a layout: ``size / tp`` replicas per LLM and mesh, with memory and SM shares.

    On each GPU every instance keeps its weights and KV reserve; the memory left
    is split in proportion to per-replica demand x KV bytes per token (MuxServe
    splits its unified KV pool by rate x token KV size), equally if no demand.
    """
    by_name = {m.name: m for m in llms}
    replicas = {m.name: 0 for m in llms}
    for mesh, names in zip(layout.meshes, layout.on_mesh, strict=True):
        for n in names:
            replicas[n] += mesh.size // by_name[n].tp
    out: list[Instance] = []
    for i, (mesh, names) in enumerate(zip(layout.meshes, layout.on_mesh, strict=True)):
        llm_on = [by_name[n] for n in names]
        free = pool_bytes - sum(m.bytes_per_gpu + m.reserve_bytes for m in llm_on)
        w = {m.name: m.demand / replicas[m.name] * m.kv_bytes_per_token_gpu for m in llm_on}
        tot = sum(w.values())
        for m in llm_on:
            extra = free * (w[m.name] / tot if tot > 0 else 1 / len(llm_on))
            frac = math.floor((m.bytes_per_gpu + m.reserve_bytes + extra) / pool_bytes * 1e9) / 1e9
            share = layout.run_share[(m.name, i)]
            for r in range(mesh.size // m.tp):
                g0 = mesh.first + r * m.tp
                out.append(Instance(m.name, tuple(range(g0, g0 + m.tp)), min(frac, 1.0), share))
    return out
