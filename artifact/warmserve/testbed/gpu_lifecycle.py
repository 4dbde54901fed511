"""GPU halves of ``TestbedBackend``'s verbs: engine plans, stops that free memory, sleeping to weights.

``GpuLifecycle`` is composed into the backend (as ``warmserve.testbed.launcher.Launcher``) and is
handed what it reads, so the backend module keeps to the seam's verbs. On a GPU an engine's memory is
free only once its process has exited, so every stop is a task recorded per GPU and nothing starts or
wakes its KV cache on that GPU before those tasks are done (``exited_on``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from warmserve.cluster.rules import kv_block_bytes
from warmserve.control.seam import ClusterState, GpuSet
from warmserve.testbed.engines import EngineProcess
from warmserve.testbed.gpu_engine import EnginePlan, plan_engine
from warmserve.testbed.mechanisms import EngineFactory, SleepModeClient
from warmserve.testbed.ports import PortAllocator
from warmserve.testbed.settings import TestbedSettings

if TYPE_CHECKING:
    import aiohttp


class GpuLifecycle:
    """Engine plans, background stops per GPU, sleep to weights, and a standby's start-up reservation."""

    def __init__(self, settings: TestbedSettings, factory: EngineFactory, state: ClusterState,
                 ports: PortAllocator, session: Callable[[], aiohttp.ClientSession],
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task]) -> None:
        self.settings = settings
        self.factory = factory
        self.state = state
        self.ports = ports
        self._session = session
        self._spawn = spawn
        self.stopping: dict[int, set[asyncio.Task]] = {}  # GPU -> stops of engines still holding memory there

    def stop_engine(self, eng: EngineProcess, gpus: GpuSet, grace_s: float | None = None) -> asyncio.Task:
        """Stop an engine in the background; until it has exited it still holds memory on ``gpus``."""
        grace = self.factory.cfg.stop_grace_s if grace_s is None else grace_s

        async def stop() -> None:
            try:
                await asyncio.to_thread(eng.stop, grace)
            finally:
                self.ports.release(eng.spec.port)

        task = self._spawn(stop())
        for g in gpus:
            self.stopping.setdefault(g, set()).add(task)

            def forget(t: asyncio.Task, g: int = g) -> None:
                self.stopping.get(g, set()).discard(t)

            task.add_done_callback(forget)
        return task

    async def exited_on(self, gpus: GpuSet) -> None:
        """Wait until every engine being stopped on ``gpus`` has exited (GPU only: on the CPU slots have
        no device memory, and waiting would change the measured CPU start times)."""
        if self.settings.device != "cuda":
            return
        pending = {t for g in gpus for t in self.stopping.get(g, ())}
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    def plan(self, model: str, share_bytes: int, kv_bytes: int | None = None) -> EnginePlan | None:
        gs = self.settings.gpu
        if gs is None:
            return None
        spec = self.state.models[model]
        return plan_engine(gs, share_bytes, spec.bytes_per_gpu, spec.tp, kv_bytes)

    def min_kv(self, model: str) -> int:
        """Per GPU, the KV cache vLLM requires to start: one ``max_model_len`` sequence in whole blocks."""
        bt = self.settings.kv_block_tokens
        return -(-self.settings.max_model_len // bt) * kv_block_bytes(self.state.models[model], bt)

    def plan_args(self, plan: EnginePlan | None) -> list[str] | None:
        return plan.args(self.settings.gpu) if plan is not None and self.settings.gpu is not None else None

    async def sleep_to_weights(self, eng: EngineProcess) -> None:
        """GPU: drop the KV cache, keep the weights resident = a prewarmed replica. Level 1 offloads the
        weights to host and back; level 2 discards them, so they are reloaded before anyone serves."""
        client = SleepModeClient(self._session(), eng.spec.url)
        await client.sleep(self.settings.sleep_level)
        await client.wake_up(["weights"])
        if self.settings.sleep_level == 2:
            await client.reload_weights()

