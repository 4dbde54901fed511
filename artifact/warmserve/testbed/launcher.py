"""Starting engine processes for ``TestbedBackend``: fresh, pre-spawned, local or on a node's Ray agent.

A mixin so the backend module keeps to the seam's verbs. It retries a launch on another port when the
chosen one turns out to be taken (someone else bound it between our check and the engine's bind), and
keeps the pool of pre-spawned processes ("worker" starts) topped up.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, cast

from warmserve.control.seam import GpuSet
from warmserve.testbed.engines import EngineError, EngineProcess, PortTaken

if TYPE_CHECKING:
    import aiohttp

    from warmserve.control.seam import ClusterState
    from warmserve.testbed.backend import TestbedSettings
    from warmserve.testbed.mechanisms import EngineFactory
    from warmserve.testbed.ports import PortAllocator
    from warmserve.testbed.ray_nodes import RayEngineHost


@dataclass(slots=True)
class Prespawned:
    engine: EngineProcess
    ready_file: Path
    cores: str


class EngineLauncher:
    """Launch helpers; mixed into ``TestbedBackend`` (uses its settings, factory, ports and pool)."""

    if TYPE_CHECKING:  # what TestbedBackend provides (declared for the type checker only)
        settings: TestbedSettings
        factory: EngineFactory
        state: ClusterState
        ports: PortAllocator
        engine_host: RayEngineHost | None
        _tmp: Path
        _pool: list[Prespawned]

        @property
        def session(self) -> aiohttp.ClientSession: ...
        def _name(self, tag: str, model: str) -> str: ...
        def _cores(self, gpus: GpuSet) -> str: ...

    def _spawn_prespawned(self) -> Prespawned:
        name = self._name("p", "pool")
        ready = self._tmp / f"{name}.ready"
        cores = ",".join(self.settings.slot_cores)
        spec = self.factory.prespawn(name, ready, cores)
        eng = EngineProcess(spec, stdin_pipe=True)
        eng.launch()
        return Prespawned(engine=eng, ready_file=ready, cores=cores)

    async def _wait_prespawned(self, p: Prespawned) -> None:
        deadline = time.monotonic() + self.factory.cfg.startup_timeout_s
        while not p.ready_file.exists():
            if not p.engine.alive():
                raise EngineError(f"pre-spawned process died: {p.engine.log_tail()}")
            if time.monotonic() > deadline:
                raise EngineError("pre-spawned process did not import its module in time")
            await asyncio.sleep(0.1)

    def _take_prespawned(self) -> Prespawned | None:
        for i, p in enumerate(self._pool):
            if p.ready_file.exists() and p.engine.alive():
                return self._pool.pop(i)
        return None

    async def _launch(self, name: str, model: str, gpus: GpuSet, extra: list[str] | None = None,
                      prespawned: Prespawned | None = None) -> EngineProcess:
        """Start a server for ``model`` on ``gpus`` and wait until healthy (retrying taken ports)."""
        base = self.state.models[model].base
        cores = self._cores(gpus)
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
                await eng.wait_healthy(self.session, self.factory.cfg.startup_timeout_s,
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

    def _engine_env(self, gpus: GpuSet) -> dict[str, str]:
        """Per-engine environment beyond the config's: the fake GPU node of stub engines on fake GPUs."""
        if self.settings.fake_gpu_dir is None:
            return {}
        from warmserve.testbed.fake_gpu import ENV

        return {ENV: str(fake_gpu_path(self.settings.fake_gpu_dir, self.state.node_of(gpus[0])))}

    def _take_prespawned_peek(self) -> bool:
        return any(p.ready_file.exists() and p.engine.alive() for p in self._pool)


def fake_gpu_path(directory: Path, node: int) -> Path:
    """The registry file of ``node``'s fake GPUs (``warmserve.testbed.fake_gpu``)."""
    return directory / f"node{node}.json"
