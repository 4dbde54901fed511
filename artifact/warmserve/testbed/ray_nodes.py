"""More than one machine: one Ray actor per node owns that node's engine processes.

``NodeAgent`` (a Ray actor pinned to its node with a hard node-affinity
strategy) starts, health-checks and stops engine processes *on its node*
with the same ``EngineProcess`` code the single-machine testbed uses.
``RemoteEngine`` is the controller-side proxy with ``EngineProcess``'s
interface, so ``TestbedBackend`` drives a remote engine exactly like a local
one (``backend.launcher.engine_host = RayEngineHost(...)``). This mirrors the published system,
where one detached manager actor owns per-GPU worker actors (docs/reference.md §1.1),
but keeps engines per node rather than all on the head node (docs/reference.md §10.10).

Networking: ``RayEngineHost.connect`` starts a *local* Ray instance bound to
127.0.0.1 with no dashboard unless ``address`` names an existing cluster
(``"auto"`` or ``"ray://head:10001"``); engines bind the host the backend
config gives (127.0.0.1 by default), so nothing listens beyond loopback
unless configured. Multi-node runs set ``host`` to each node's address
(``{node_ip}`` placeholder) -- not exercised here (one machine).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from warmserve.testbed.engines import (
    EngineExited,
    EngineProcess,
    EngineSpec,
    EngineTimeout,
    PortTaken,
)

_ERRORS = {"PortTaken": PortTaken, "EngineTimeout": EngineTimeout, "EngineExited": EngineExited}


class _NodeAgentImpl:
    """The actor body: engine processes of one node, by name."""

    def __init__(self) -> None:
        self._engines: dict[str, EngineProcess] = {}

    def node_ip(self) -> str:
        import ray

        return ray.util.get_node_ip_address()

    def launch(self, spec: dict) -> None:
        eng = EngineProcess(EngineSpec(**spec))
        eng.launch()  # PortTaken propagates to the caller
        self._engines[eng.spec.name] = eng

    async def wait_healthy(self, name: str, timeout_s: float, interval_s: float) -> tuple[str, Any]:
        import aiohttp

        async with aiohttp.ClientSession() as s:
            try:
                return "ok", await self._engines[name].wait_healthy(s, timeout_s, interval_s)
            except (PortTaken, EngineTimeout, EngineExited) as exc:
                return type(exc).__name__, str(exc)

    def alive(self, name: str) -> bool:
        eng = self._engines.get(name)
        return eng is not None and eng.alive()

    def pid(self, name: str) -> int | None:
        eng = self._engines.get(name)
        return eng.proc.pid if eng is not None and eng.proc is not None else None

    def stop(self, name: str, grace_s: float) -> int | None:
        eng = self._engines.pop(name, None)
        return None if eng is None else eng.stop(grace_s)

    def stop_all(self) -> int:
        names = list(self._engines)
        for n in names:
            self.stop(n, 2.0)
        return len(names)

    def log_tail(self, name: str) -> str:
        eng = self._engines.get(name)
        return "" if eng is None else eng.log_tail()


class RayEngineHost:
    """Connects to Ray and keeps one ``NodeAgent`` per node (node index = order of ``ray.nodes()``)."""

    def __init__(self, address: str | None = None, namespace: str = "warmserve", num_cpus: int | None = None) -> None:
        import ray

        self._ray = ray
        if not ray.is_initialized():
            if address is None:  # a private local cluster, loopback only, no dashboard
                ray.init(namespace=namespace, include_dashboard=False, num_cpus=num_cpus,
                         _node_ip_address="127.0.0.1", log_to_driver=False)
            else:
                ray.init(address=address, namespace=namespace, log_to_driver=False)
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        nodes = [n for n in ray.nodes() if n.get("Alive")]
        actor = ray.remote(num_cpus=0)(_NodeAgentImpl)
        self.agents = [actor.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False),
                                     max_concurrency=64).remote() for n in nodes]

    def agent(self, node: int):
        if not 0 <= node < len(self.agents):
            raise ValueError(f"node {node} not in the Ray cluster ({len(self.agents)} nodes alive)")
        return self.agents[node]

    def shutdown(self) -> None:
        self._ray.get([a.stop_all.remote() for a in self.agents])
        for a in self.agents:
            self._ray.kill(a)
        self.agents = []


class RemoteEngine:
    """``EngineProcess``'s interface for an engine that a node's ``NodeAgent`` owns."""

    def __init__(self, host: RayEngineHost, node: int, spec: EngineSpec) -> None:
        self.spec = spec
        self._host = host
        self._agent = host.agent(node)
        self.proc = None  # no local process: utilisation is not sampled for remote engines
        self.launched_mono: float | None = None
        self.healthy_mono: float | None = None

    def _spec_dict(self) -> dict:
        s = self.spec
        return {"name": s.name, "argv": s.argv, "port": s.port, "host": s.host, "env": s.env, "log_dir": s.log_dir,
                "cpus": s.cpus}

    def launch(self) -> None:
        self._host._ray.get(self._agent.launch.remote(self._spec_dict()))
        self.launched_mono = time.monotonic()

    async def wait_healthy(self, session: Any, timeout_s: float, interval_s: float = 0.2) -> float:
        kind, value = await asyncio.wrap_future(
            self._agent.wait_healthy.remote(self.spec.name, timeout_s, interval_s).future())
        if kind != "ok":
            raise _ERRORS[kind](value)
        self.healthy_mono = time.monotonic()
        return float(value)

    def alive(self) -> bool:
        return bool(self._host._ray.get(self._agent.alive.remote(self.spec.name)))

    def stop(self, grace_s: float = 5.0) -> int | None:
        return self._host._ray.get(self._agent.stop.remote(self.spec.name, grace_s))

    def log_tail(self, lines: int = 15) -> str:
        return self._host._ray.get(self._agent.log_tail.remote(self.spec.name))
