"""Starting engine processes for ``TestbedBackend``: fresh, pre-spawned, local or on a node's Ray agent.

``Launcher`` is composed into the backend, not mixed in: it owns the loopback ports (``PortAllocator``)
and the pool of pre-spawned processes ("worker" starts), and is handed what it reads (settings, engine
factory, cluster state for model checkpoints and node numbers, the shared id counter that names engines,
the HTTP session getter), so the backend's verbs keep to the seam. It retries a launch on another port
when the chosen one turns out to be taken (someone else bound it between our check and the engine's bind).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from warmserve.control.seam import ClusterState, GpuSet
from warmserve.testbed.engines import EngineError, EngineProcess, PortTaken
from warmserve.testbed.mechanisms import EngineFactory
from warmserve.testbed.ports import PortAllocator
from warmserve.testbed.settings import TestbedSettings

if TYPE_CHECKING:
    import aiohttp

    from warmserve.testbed.ray_nodes import RayEngineHost


@dataclass(slots=True)
class Prespawned:
    engine: EngineProcess
    ready_file: Path


class Launcher:
    """Ports, the pre-spawned pool and engine launches of one backend."""

    def __init__(self, settings: TestbedSettings, factory: EngineFactory, state: ClusterState,
                 ids: Iterator[int], session: Callable[[], aiohttp.ClientSession]) -> None:
        self.settings = settings
        self.factory = factory
        self.state = state  # read only: each model's checkpoint, each slot's node
        self.ports = PortAllocator(settings.port_first, settings.port_count, factory.host)
        self.pool: list[Prespawned] = []
        self.engine_host: RayEngineHost | None = None  # engines live on their node's agent when set
        self._ids = ids  # shared with the backend's instance ids: names and ids come from one counter
        self._session = session
        self._tmp = Path(tempfile.mkdtemp(prefix="warmserve-prespawn-"))

    def name(self, tag: str, model: str) -> str:
        return f"{tag}{next(self._ids)}-{model}"

    def cores(self, gpus: GpuSet) -> str:
        return ",".join(self.settings.slot_cores[g] for g in gpus)

    # ---- the pre-spawned pool ------------------------------------------
    async def fill_pool(self) -> None:
        """Fill the pool (waits until each process has imported its engine module)."""
        for _ in range(self.settings.prespawned_pool):
            self.pool.append(self._spawn_prespawned())
        await asyncio.gather(*(self._wait_prespawned(p) for p in self.pool))

    def replenish(self) -> None:
        """Start one more pre-spawned process in place of one taken."""
        self.pool.append(self._spawn_prespawned())

    def has_prespawned(self) -> bool:
        return any(p.ready_file.exists() and p.engine.alive() for p in self.pool)

    def take_prespawned(self) -> Prespawned | None:
        for i, p in enumerate(self.pool):
            if p.ready_file.exists() and p.engine.alive():
                return self.pool.pop(i)
        return None

    def live_pool(self) -> list[EngineProcess]:
        return [p.engine for p in self.pool if p.engine.alive()]

    def _spawn_prespawned(self) -> Prespawned:
        name = self.name("p", "pool")
        ready = self._tmp / f"{name}.ready"
        spec = self.factory.prespawn(name, ready, ",".join(self.settings.slot_cores))
        eng = EngineProcess(spec, stdin_pipe=True)
        eng.launch()
        return Prespawned(engine=eng, ready_file=ready)

    async def _wait_prespawned(self, p: Prespawned) -> None:
        deadline = time.monotonic() + self.factory.cfg.startup_timeout_s
        while not p.ready_file.exists():
            if not p.engine.alive():
                raise EngineError(f"pre-spawned process died: {p.engine.log_tail()}")
            if time.monotonic() > deadline:
                raise EngineError("pre-spawned process did not import its module in time")
            await asyncio.sleep(0.1)

    # ---- launching and stopping ------------------------------------------
    async def launch(self, name: str, model: str, gpus: GpuSet, extra: list[str] | None = None,
                     prespawned: Prespawned | None = None) -> EngineProcess:
        """Start a server for ``model`` on ``gpus`` and wait until healthy (retrying taken ports)."""
        base = self.state.models[model].base
        cores = self.cores(gpus)
        env_extra = self._engine_env(gpus)
        for attempt in range(self.settings.max_port_retries):
            port = self.ports.acquire()
            if prespawned is not None and attempt == 0:
                eng = prespawned.engine
                eng.spec.port = port
                eng.spec.name = name
                args = self.factory.server_args(model, base, port, cores, extra)
                assert eng.proc is not None and eng.proc.stdin is not None
                cpus = self.factory.cpus(cores)
                msg = {"args": args, "env": self.factory.env(cores, env_extra), "cpus": list(cpus) if cpus else None}
                eng.proc.stdin.write((json.dumps(msg) + "\n").encode())
                eng.proc.stdin.flush()
                eng.proc.stdin.close()
                eng.launched_mono = time.monotonic()
            else:
                spec = self.factory.fresh(name, model, base, port, cores, extra, env_extra)
                if self.engine_host is not None:
                    from warmserve.testbed.ray_nodes import RemoteEngine

                    # duck-typed: RemoteEngine has EngineProcess's interface (spec, proc, launch, wait_healthy, ...)
                    eng = cast(EngineProcess, RemoteEngine(self.engine_host, self.state.node_of(gpus[0]), spec))
                else:
                    eng = EngineProcess(spec)
                try:
                    eng.launch()
                except PortTaken:
                    self.ports.release(port)
                    continue
            try:
                await eng.wait_healthy(self._session(), self.factory.cfg.startup_timeout_s,
                                       self.factory.cfg.health_interval_s)
                return eng
            except PortTaken:
                await asyncio.to_thread(eng.stop, 1.0)
                self.ports.release(port)
                continue
            except BaseException:
                await asyncio.to_thread(eng.stop, 1.0)
                self.ports.release(port)
                raise
        raise PortTaken(f"{name}: no usable port after {self.settings.max_port_retries} tries")

    async def stop_all(self, engines: list[EngineProcess]) -> None:
        """Stop ``engines`` and the pool's processes at once and free their ports (the backend's close)."""
        engines = engines + [p.engine for p in self.pool]
        grace = self.factory.cfg.stop_grace_s
        await asyncio.gather(*(asyncio.to_thread(e.stop, grace) for e in engines))
        for e in engines:
            if e.spec.port:
                self.ports.release(e.spec.port)

    def _engine_env(self, gpus: GpuSet) -> dict[str, str]:
        """Per-engine environment beyond the config's: the fake GPU node of stub engines on fake GPUs."""
        if self.settings.fake_gpu_dir is None:
            return {}
        from warmserve.testbed.fake_gpu import ENV

        return {ENV: str(fake_gpu_path(self.settings.fake_gpu_dir, self.state.node_of(gpus[0])))}


def fake_gpu_path(directory: Path, node: int) -> Path:
    """The registry file of ``node``'s fake GPUs (``warmserve.testbed.fake_gpu``)."""
    return directory / f"node{node}.json"
