"""GPU halves of ``TestbedBackend``'s verbs: engine plans, stops that free memory, sleeping to weights.

A mixin (as ``warmserve.testbed.launcher``) so the backend module keeps to the seam's verbs. On a GPU an
engine's memory is free only once its process has exited, so every stop is a task recorded per GPU and
nothing starts or wakes its KV cache on that GPU before those tasks are done (``_exited_on``).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from warmserve.control.seam import GpuSet
from warmserve.testbed.engines import EngineProcess
from warmserve.testbed.gpu_engine import EnginePlan, min_kv_bytes, plan_engine
from warmserve.testbed.mechanisms import SleepModeClient

if TYPE_CHECKING:
    from collections.abc import Coroutine
    from typing import Any

    import aiohttp

    from warmserve.control.seam import ClusterState
    from warmserve.testbed.backend import TestbedSettings, _Runtime, _Standby
    from warmserve.testbed.mechanisms import EngineFactory
    from warmserve.testbed.ports import PortAllocator


class GpuLifecycle:
    """GPU helpers; mixed into ``TestbedBackend`` (uses its settings, state, ports and tasks)."""

    if TYPE_CHECKING:  # what TestbedBackend provides (declared for the type checker only)
        settings: TestbedSettings
        factory: EngineFactory
        state: ClusterState
        ports: PortAllocator
        _rt: dict[int, _Runtime]
        _standby: dict[tuple[str, GpuSet], _Standby]
        _stopping: dict[int, set[asyncio.Task]]

        @property
        def session(self) -> aiohttp.ClientSession: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task: ...

    def engine_gpus(self) -> dict[int, tuple[GpuSet, int | None]]:
        """pid -> (every slot it uses, instance id or None) of every live engine (NVML sampling)."""
        out: dict[int, tuple[GpuSet, int | None]] = {}
        for iid, rt in self._rt.items():
            if rt.engine is not None and rt.engine.proc is not None and rt.engine.alive():
                out[rt.engine.proc.pid] = (self.state.instances[iid].gpus, iid)
        for s in self._standby.values():
            if s.engine is not None and s.engine.proc is not None and s.engine.alive():
                out[s.engine.proc.pid] = (s.gpus, None)
        return out

    def _stop_engine(self, eng: EngineProcess, gpus: GpuSet, grace_s: float | None = None) -> asyncio.Task:
        """Stop an engine in the background; until it has exited it still holds memory on ``gpus``."""
        grace = self.factory.cfg.stop_grace_s if grace_s is None else grace_s

        async def stop() -> None:
            try:
                await asyncio.to_thread(eng.stop, grace)
            finally:
                self.ports.release(eng.spec.port)

        task = self._spawn(stop())
        for g in gpus:
            self._stopping.setdefault(g, set()).add(task)

            def forget(t: asyncio.Task, g: int = g) -> None:
                self._stopping.get(g, set()).discard(t)

            task.add_done_callback(forget)
        return task

    async def _exited_on(self, gpus: GpuSet) -> None:
        """Wait until every engine being stopped on ``gpus`` has exited (GPU only: on the CPU slots have
        no device memory, and waiting would change the measured CPU start times)."""
        if self.settings.device != "cuda":
            return
        pending = {t for g in gpus for t in self._stopping.get(g, ())}
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def _plan(self, model: str, share_bytes: int, kv_bytes: int | None = None) -> EnginePlan | None:
        gs = self.settings.gpu
        if gs is None:
            return None
        spec = self.state.models[model]
        return plan_engine(gs, share_bytes, spec.bytes_per_gpu, spec.tp, kv_bytes)

    def _min_kv(self, model: str) -> int:
        assert self.settings.gpu is not None
        spec = self.state.models[model]
        return min_kv_bytes(self.settings.gpu, spec.kv_bytes_per_token, spec.tp)

    async def _sleep_to_weights(self, eng: EngineProcess) -> None:
        """GPU: drop the KV cache, keep the weights resident = a prewarmed replica. Level 1 offloads the
        weights to host and back; level 2 discards them, so they are reloaded before anyone serves."""
        client = SleepModeClient(self.session, eng.spec.url)
        await client.sleep(self.settings.sleep_level)
        await client.wake_up(["weights"])
        if self.settings.sleep_level == 2:
            await client.reload_weights()

    def _plan_args(self, plan: EnginePlan | None) -> list[str] | None:
        return plan.args(self.settings.gpu) if plan is not None and self.settings.gpu is not None else None
