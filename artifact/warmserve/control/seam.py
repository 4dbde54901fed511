"""The controller/backend seam: START HERE if you are new to the code.

(Past the ~400-line house rule on purpose: it is the one contract both backends and every policy
read, kept in one file so it can be read top to bottom; ``InstanceTable`` stays beside
``ClusterState``, whose default it is and whose phases it reads.)

WarmServe's claim is about *decisions* (what to prewarm where, when to start
or stop an instance, whom to evict). Those decisions are written once, as
policies, and run unchanged on two backends:

* ``warmserve.sim``      -- a discrete-event twin of a GPU cluster (virtual clock);
* ``warmserve.testbed``  -- real vLLM engine processes (wall clock).

A policy never knows which backend it runs on. It sees only what is in this
file:

``Clock``         what time it is, and "call me back in ``delay`` seconds".
``Backend``       the verbs a policy may ask for: start/stop an instance of a
                  model on a set of GPUs, prewarm/evict a model's weights on a
                  set of GPUs, dispatch a request to an instance, lend KV
                  blocks of a running instance to prewarming.
``ClusterState``  the backend's live, read-only picture of the cluster (GPU
                  memory, prewarmed replicas, instances and their in-flight
                  requests). The backend is the single source of truth; the
                  controller never keeps a second set of books about memory.
``EventSink``     what the backend tells the controller: a request arrived or
                  finished, an instance became ready or stopped, a prewarm
                  completed.
``Command``       the value objects a policy returns; the controller applies
                  them to the backend in order.

Flow::

    workload -> backend (arrivals) -> EventSink (= warmserve.control.controller.Controller)
             -> SystemPolicy.route/on_tick (pure decisions over ClusterState + load stats)
             -> Commands -> Backend verbs -> physical effects -> events -> ...

Memory semantics shared by every backend (they follow the published system):

* A prewarmed replica of model M on GPU set S holds ``bytes_per_gpu`` on each
  GPU of S (weights only, no KV). Replicas of several models may coexist on a
  GPU while there is free memory; the same model never twice on one GPU.
* ``start_instance(M, S)`` claims S for an instance of M: replicas of *other*
  models on S are evicted by the backend (each eviction appears in the
  timeline), a replica of M on exactly S is reused (a "prewarmed" start), and
  the instance's KV cache takes ``mem_fraction`` of each GPU's memory pool
  minus the weights. ``mem_fraction < 1`` lets several instances share a GPU
  (MuxServe-style colocation); then other instances on S are kept.
* ``lend_kv(i, n)`` sets how many of instance i's KV blocks are lent to
  prewarming; the bytes become free for replicas on i's GPUs. Lowering n
  returns blocks to the instance (only blocks not holding a lent replica).
* ``stop_instance(i, keep_weights=True)`` keeps i's weights resident as a
  prewarmed replica of its model (WarmServe's implicit keep-alive).
* Nothing is ever oversubscribed: a command the backend cannot honour raises
  ``CapacityError`` (a policy bug, not a run-time condition).
"""

from __future__ import annotations

import enum
import heapq
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

GpuSet = tuple[int, ...]
"""Sorted global GPU indices of one instance or replica; always within one node."""


class CapacityError(RuntimeError):
    """A command would oversubscribe GPU memory or double-book a GPU (a policy bug)."""


def min_kv_blocks(max_model_len: int, block_tokens: int) -> int:
    """The fewest KV blocks an instance may start with: one ``max_model_len`` sequence plus one block.

    The twin admits a sequence only while one more block fits beside it, so an
    engine with fewer blocks could never run a maximum-length request. Backends
    refuse such a start (``CapacityError``), input checks refuse a model whose
    GPU cannot hold that much beside its weights, and policies that size KV
    shares (MuxServe) leave at least this much -- all through this function.
    """
    return -(-max_model_len // block_tokens) + 1


class StartKind(enum.StrEnum):
    """How much of an instance was already in place when a request needed it.

    ``warm``      an instance of the model was already serving;
    ``prewarmed`` its weights were already in GPU memory (memory switching only);
    ``worker``    a universal worker / pre-started engine existed, weights loaded on demand;
    ``cold``      a fresh process: start-up, context, engine init and weight load.
    """

    WARM = "warm"
    PREWARMED = "prewarmed"
    WORKER = "worker"
    COLD = "cold"


class InstancePhase(enum.StrEnum):
    STARTING = "starting"  # loading weights / initialising; may already hold dispatched requests
    READY = "ready"  # serving
    STOPPING = "stopping"  # takes no new requests, drains in-flight ones
    STOPPED = "stopped"
    FAILED = "failed"


_STARTING = InstancePhase.STARTING  # module constants: enum attribute lookups are slow in hot paths
_READY = InstancePhase.READY


class RequestStatus(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    TIMEOUT = "timeout"


@dataclass(frozen=True, slots=True)
class Request:
    """One request of a workload (docs/design.md §4, workload row)."""

    request_id: int
    arrival_s: float
    model: str
    input_tokens: int
    output_tokens: int


# --------------------------------------------------------------------------
# Commands: what a policy returns. The controller applies them in order.
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartInstance:
    """Start an instance of ``model`` on ``gpus``.

    ``compute_share`` is the fraction of each GPU's SMs the instance may use when
    it shares GPUs with other instances (MuxServe-style, via MPS); ``None`` = the
    whole GPU. The twin slows iterations by it (``warmserve.control.mps``); the
    testbed does not enforce it.
    """

    model: str
    gpus: GpuSet
    mem_fraction: float = 1.0
    compute_share: float | None = None


@dataclass(frozen=True, slots=True)
class StopInstance:
    instance_id: int
    keep_weights: bool = False


@dataclass(frozen=True, slots=True)
class Prewarm:
    model: str
    gpus: GpuSet


@dataclass(frozen=True, slots=True)
class Evict:
    model: str
    gpus: GpuSet


@dataclass(frozen=True, slots=True)
class Dispatch:
    request_id: int
    instance_id: int


@dataclass(frozen=True, slots=True)
class LendKv:
    instance_id: int
    blocks: int


Command = StartInstance | StopInstance | Prewarm | Evict | Dispatch | LendKv


# --------------------------------------------------------------------------
# Live cluster state, owned and updated by the backend, read by policies.
# --------------------------------------------------------------------------


@dataclass(slots=True)
class ReplicaState:
    """Prewarmed weights of ``model`` spread over ``gpus`` (one TP shard per GPU)."""

    model: str
    gpus: GpuSet
    bytes_per_gpu: int
    ready: bool = False  # False while the weights are still being loaded
    since_s: float = 0.0


@dataclass(slots=True)
class InstanceState:
    instance_id: int
    model: str
    gpus: GpuSet
    phase: InstancePhase
    start_kind: StartKind
    created_s: float
    ready_s: float | None = None
    inflight: int = 0  # requests dispatched and not finished (queued or running in the engine)
    kv_blocks_total: int = 0  # blocks the engine was created with
    kv_blocks_lent: int = 0  # blocks currently lent to prewarming
    kv_blocks_used: int = 0  # blocks holding live sequences
    mem_fraction: float = 1.0


@dataclass(slots=True)
class GpuState:
    gpu: int
    node: int
    capacity_bytes: int  # memory pool usable by weights + KV (after utilisation cap)
    used_bytes: int = 0  # weights + KV of instances + prewarmed replicas
    instances: list[int] = field(default_factory=list)  # instance ids occupying this GPU
    replicas: dict[str, ReplicaState] = field(default_factory=dict)  # model -> replica on this GPU

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.used_bytes

    @property
    def idle(self) -> bool:
        return not self.instances


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What the control plane needs to know of a served model (from ``configs/model``)."""

    name: str  # served name, e.g. "llama2-7b-0" (virtual replicas share a base)
    base: str  # checkpoint, e.g. "llama2-7b"
    tp: int
    weight_bytes: int  # whole model, all shards
    kv_bytes_per_token: int  # whole model, all shards

    @property
    def bytes_per_gpu(self) -> int:
        return -(-self.weight_bytes // self.tp)


class InstanceTable(dict[int, "InstanceState"]):
    """``instance_id -> InstanceState`` that also indexes instances by model.

    Routing asks "which instances serve model M" for every request; scanning
    all instances would make that O(cluster) (10^3 instances at internet
    scale). Backends just assign and delete as with a dict.

    Optional idle index (``track_idle``): a backend that promises to call
    ``note_idle(inst)`` whenever an instance's ``inflight`` drops to 0 (the
    twin does; the testbed does not) lets
    routers find "the lowest-id serving instance with nothing in flight" --
    the least-loaded choice whenever one exists -- in O(log n) instead of
    scanning every instance of the model. Per model it is a heap of ids with
    lazy deletion: entries are checked against the live state when read, so a
    stale entry (the instance got busy, stopped or left) is simply dropped.
    Tables that are not tracked (the default) answer ``first_idle`` with None
    and routers fall back to their scan.
    """

    def __init__(self) -> None:
        super().__init__()
        self.by_model: dict[str, dict[int, InstanceState]] = {}
        self.tracked = False  # whether the idle index is kept (track_idle)
        self.idle: dict[str, list[int]] = {}  # model -> heap of candidate idle ids (tracked tables only)

    def __setitem__(self, iid: int, inst: InstanceState) -> None:
        old = self.get(iid)
        if old is not None:
            self.by_model.get(old.model, {}).pop(iid, None)
        super().__setitem__(iid, inst)
        self.by_model.setdefault(inst.model, {})[iid] = inst
        if self.tracked and inst.inflight == 0:
            heapq.heappush(self.idle.setdefault(inst.model, []), iid)

    def __delitem__(self, iid: int) -> None:
        inst = self[iid]
        super().__delitem__(iid)
        self.by_model.get(inst.model, {}).pop(iid, None)

    def pop(self, iid: int, *default: object):
        if iid in self:
            inst = self[iid]
            del self[iid]
            return inst
        if default:
            return default[0]
        raise KeyError(iid)

    def clear(self) -> None:
        super().clear()
        self.by_model.clear()
        self.idle.clear()

    # ---- the idle index (opt-in) ------------------------------------------
    def track_idle(self) -> None:
        """Turn the idle index on; the caller must then ``note_idle`` every drop of ``inflight`` to 0."""
        self.tracked = True
        self.idle.clear()
        for iid, inst in self.items():
            if inst.inflight == 0:
                heapq.heappush(self.idle.setdefault(inst.model, []), iid)

    def note_idle(self, inst: InstanceState) -> None:
        """``inst.inflight`` just became 0 (a no-op on an untracked table)."""
        if not self.tracked:
            return
        heap = self.idle.setdefault(inst.model, [])
        heapq.heappush(heap, inst.instance_id)
        if len(heap) > 2 * len(self.by_model.get(inst.model, ())) + 16:  # drop stale entries (amortised O(1))
            live = self.by_model.get(inst.model, {})
            heap[:] = sorted({i for i in heap if (j := live.get(i)) is not None and j.inflight == 0
                              and (j.phase is _STARTING or j.phase is _READY)})

    def first_idle(self, model: str) -> InstanceState | None:
        """Lowest-id instance of ``model`` that is starting or ready with nothing in flight.

        None if there is none, or if the table is not tracked (then the caller must scan).
        """
        if not self.tracked:
            return None
        heap = self.idle.get(model)
        if not heap:
            return None
        live = self.by_model[model]
        while heap:
            inst = live.get(heap[0])
            if inst is not None and inst.inflight == 0 and (inst.phase is _STARTING or inst.phase is _READY):
                return inst
            heapq.heappop(heap)
        return None


@dataclass(slots=True)
class ClusterState:
    """The backend's live picture of the cluster. Policies must treat it as read-only."""

    nodes: int
    gpus_per_node: int
    gpus: list[GpuState]
    models: dict[str, ModelSpec]
    instances: InstanceTable = field(default_factory=InstanceTable)

    def node_of(self, gpu: int) -> int:
        return gpu // self.gpus_per_node

    def instances_of(self, model: str, phases: Iterable[InstancePhase] | None = None) -> list[InstanceState]:
        wanted = set(phases) if phases is not None else {InstancePhase.STARTING, InstancePhase.READY}
        return [i for i in self.instances.by_model.get(model, {}).values() if i.phase in wanted]

    def replicas_of(self, model: str) -> dict[GpuSet, ReplicaState]:
        """Every replica of ``model``, keyed by its GPU set."""
        out: dict[GpuSet, ReplicaState] = {}
        for g in self.gpus:
            r = g.replicas.get(model)
            if r is not None:
                out[r.gpus] = r
        return out


# --------------------------------------------------------------------------
# Clock, backend verbs and the events that flow back.
# --------------------------------------------------------------------------


class Clock(ABC):
    """Virtual time on the twin, wall time (seconds since replay start) on the testbed."""

    @abstractmethod
    def now(self) -> float: ...

    @abstractmethod
    def call_later(self, delay_s: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` once, ``delay_s`` seconds from now (used for planning ticks)."""


class Backend(ABC):
    """The verbs a policy may ask for. Effects are asynchronous; completion comes as events."""

    clock: Clock
    state: ClusterState

    @abstractmethod
    def start_instance(self, model: str, gpus: GpuSet, mem_fraction: float = 1.0,
                       compute_share: float | None = None) -> int:
        """Begin starting an instance; returns its id. ``on_instance_ready`` follows."""

    @abstractmethod
    def stop_instance(self, instance_id: int, keep_weights: bool = False) -> None:
        """Stop taking requests, drain, release GPUs; ``on_instance_stopped`` follows."""

    @abstractmethod
    def prewarm(self, model: str, gpus: GpuSet) -> None:
        """Load ``model``'s weights into free memory of ``gpus``; ``on_prewarm_done`` follows."""

    @abstractmethod
    def evict(self, model: str, gpus: GpuSet) -> None:
        """Drop (or cancel loading of) ``model``'s replica on ``gpus``. Immediate."""

    @abstractmethod
    def dispatch(self, request_id: int, instance_id: int) -> None:
        """Send an arrived request to an instance (which may still be starting)."""

    @abstractmethod
    def lend_kv(self, instance_id: int, blocks: int) -> int:
        """Set the number of KV blocks lent to prewarming; returns the number now lent."""


class EventSink(Protocol):
    """What a backend reports. ``warmserve.control.controller.Controller`` implements it."""

    def on_arrival(self, request: Request) -> None: ...

    def on_finish(self, request_id: int, model: str, instance_id: int | None, status: RequestStatus) -> None:
        """A request ended (any status); ``instance_id`` is None if it never reached one."""

    def on_instance_ready(self, instance_id: int) -> None: ...

    def on_instance_stopped(self, instance_id: int) -> None: ...

    def on_prewarm_done(self, model: str, gpus: GpuSet) -> None: ...
