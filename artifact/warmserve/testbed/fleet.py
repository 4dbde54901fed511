"""The testbed's engines by role: each instance's runtime, each prewarmed replica's standby engine.

``TestbedBackend`` writes these tables as its verbs run; everything else only reads them: the front
door (is an instance ready, where does its engine listen, did it die), the utilisation samplers
(which process belongs to which slot) and ``close`` (which engines to stop). Keeping the tables and
their read-only queries here lets those readers depend on this small module instead of the backend.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from warmserve.control.seam import ClusterState, GpuSet
from warmserve.testbed.engines import EngineError, EngineProcess
from warmserve.testbed.gpu_engine import EnginePlan
from warmserve.testbed.mechanisms import Mechanism


@dataclass(slots=True)
class InstanceRuntime:
    """What the backend knows of one instance beyond ``InstanceState``."""

    engine: EngineProcess | None
    mechanism: Mechanism
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    start_mono: float = 0.0
    task: asyncio.Task | None = None
    retiring: bool = False  # the backend itself is stopping the engine: its exit is no failure
    plan: EnginePlan | None = None  # GPU: this engine's share (None on the CPU or for an adopted standby)
    kv_bytes: int = 0  # GPU: the engine's KV cache per GPU


@dataclass(slots=True)
class Standby:
    """A prewarmed replica's engine (CPU: a whole idle engine; GPU: weights awake)."""

    model: str
    gpus: GpuSet
    engine: EngineProcess | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    error: str | None = None
    task: asyncio.Task | None = None
    kv_bytes: int = 0  # GPU: its KV cache per GPU (fixed when it started); while it starts awake the
    # cluster book holds a reservation for that cache and the engine's overheads (ClusterBook.reserved)


class Fleet:
    """Instance runtimes and standby engines, with the queries their readers need."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state  # read only: which slots an instance uses
        self.rt: dict[int, InstanceRuntime] = {}
        self.standby: dict[tuple[str, GpuSet], Standby] = {}

    def engines(self) -> list[EngineProcess]:
        """Every engine an instance or a replica holds, alive or not (what ``close`` stops)."""
        out = [rt.engine for rt in self.rt.values() if rt.engine is not None]
        return out + [s.engine for s in self.standby.values() if s.engine is not None]

    def live_engines(self) -> list[EngineProcess]:
        out = [rt.engine for rt in self.rt.values() if rt.engine is not None and rt.engine.alive()]
        return out + [s.engine for s in self.standby.values() if s.engine is not None and s.engine.alive()]

    def starting_without_engine(self) -> int:
        """Instances whose engine process is not there yet (counted against ``max_engines``)."""
        return sum(1 for r in self.rt.values() if r.engine is None)

    def engine_pids(self) -> dict[int, tuple[int, int | None]]:
        """pid -> (slot, instance id or None) of every live engine (for utilisation sampling)."""
        return {pid: (gpus[0], iid) for pid, (gpus, iid) in self.engine_gpus().items()}

    def engine_gpus(self) -> dict[int, tuple[GpuSet, int | None]]:
        """pid -> (every slot it uses, instance id or None) of every live engine (NVML sampling)."""
        out: dict[int, tuple[GpuSet, int | None]] = {}
        for iid, rt in self.rt.items():
            if rt.engine is not None and rt.engine.proc is not None and rt.engine.alive():
                out[rt.engine.proc.pid] = (self.state.instances[iid].gpus, iid)
        for s in self.standby.values():
            if s.engine is not None and s.engine.proc is not None and s.engine.alive():
                out[s.engine.proc.pid] = (s.gpus, None)
        return out

    async def wait_ready(self, instance_id: int) -> str | None:
        """Wait until the instance serves; returns an error string if it failed instead."""
        rt = self.rt[instance_id]
        await rt.ready.wait()
        return rt.error

    def engine_alive(self, instance_id: int) -> bool:
        eng = self.rt[instance_id].engine
        return eng is not None and eng.alive()

    def engine_url(self, instance_id: int) -> str:
        eng = self.rt[instance_id].engine
        if eng is None:
            raise EngineError(f"instance {instance_id} has no engine")
        return eng.spec.url
