"""``backend=testbed``: the runner's "runnable backend" (``warmserve.run.protocol``) on real engines.

``hydra.utils.instantiate(cfg.backend, models=..., cluster=..., hardware=...,
features=..., seed=...)`` builds a ``RunnableTestbed``; ``replay`` then runs the
whole experiment on one asyncio loop: engines (pre-spawned pool if the system
has ``worker_pool``), the front door, the controller on a ``WallClock``, the
open-loop client, and per-second utilisation sampling. Whatever happens --
normal end, an exception, Ctrl-C (SIGINT) or SIGTERM -- every engine process
is stopped and every port freed before ``replay`` returns; an interrupted run
returns normally with ``partial=True`` (in ``describe()`` and the replay info)
and every unfinished request as a ``timeout`` row, so the runner still writes
honest, marked outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from warmserve.config import REPO_ROOT
from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.seam import ModelSpec
from warmserve.errors import InputError
from warmserve.hardware import load_profile
from warmserve.metrics.schema import REQUEST_COLUMNS, UTILIZATION_COLUMNS, conform
from warmserve.run.protocol import ReplayInfo
from warmserve.testbed.backend import TestbedBackend
from warmserve.testbed.clock import WallClock
from warmserve.testbed.fake_gpu import FakeGpuNode, FakeNvml
from warmserve.testbed.frontdoor import FrontDoor
from warmserve.testbed.gpu_engine import (
    PROFILE_FLAGS,
    GpuEngineSettings,
    check_no_second_copy,
    profile_engine_args,
)
from warmserve.testbed.hostpin import host_cpus, pin_host, warm_page_cache
from warmserve.testbed.launcher import fake_gpu_path
from warmserve.testbed.mechanisms import EngineConfig, EngineFactory
from warmserve.testbed.replay import ClientRecord, replay_open_loop, request_log
from warmserve.testbed.settings import TestbedSettings
from warmserve.testbed.utilization import NvmlSampler, ProcessSampler, Sampler, load_nvml


def _resolve(path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else (REPO_ROOT / p)


class RunnableTestbed(TestbedBackend):
    """The testbed as the runner sees it. Keyword arguments come from ``configs/backend/testbed*.yaml``."""

    def __init__(self, *, models: dict[str, ModelSpec], cluster: Any, hardware: Any,
                 features: BackendFeatures | None = None, seed: int = 0, device: str,
                 host: str, engine: dict, slots: dict, prewarm: dict, ports: dict,
                 checkpoint_dir: str, log_dir: str,
                 frontdoor_port: int, request_timeout_s: float, max_retries: int,
                 prompt_vocab: int, utilization_interval_s: float,
                 setup_ready: bool = False, label: str = "", gpu: dict | None = None,
                 fake_gpu: bool = False, host_cores: str | None, warm_page_cache: bool,
                 **_: Any) -> None:
        # every key of configs/backend/testbed.yaml is required here: the YAML is its one home
        self.features = features or BackendFeatures()
        nodes, gpn = int(cluster["nodes"]), int(cluster["gpus_per_node"])
        cores = [str(c) for c in slots["cores"]]
        if len(cores) != nodes * gpn:
            raise InputError(f"backend.slots.cores: {len(cores)} core sets for {nodes}x{gpn} slots of cluster "
                             f"'{cluster.get('name', '?')}'")
        if device not in ("cpu", "cuda"):
            raise InputError(f"backend.device: 'cpu' or 'cuda', got {device!r}")
        ckpt = _resolve(checkpoint_dir)
        for spec in models.values():
            if engine.get("needs_checkpoint", True) and not (ckpt / spec.base / "config.json").is_file():
                raise InputError(f"backend.checkpoint_dir: no checkpoint {ckpt / spec.base} (make it with "
                                 f"python -m warmserve.testbed.tiny_models --out {checkpoint_dir} --sizes {spec.base})")
        hw = load_profile(hardware)  # the one typed profile the twin and the policies also read
        engine_cfg = EngineConfig.from_cfg(dict(engine))
        hw_engine = {key: getattr(hw.engine, key) for key in PROFILE_FLAGS}
        check_no_second_copy(engine_cfg.args, device, hw_engine)
        gpu_settings = None
        if device == "cuda":
            if not gpu or "context_bytes" not in gpu or "activation_bytes" not in gpu:
                raise InputError("backend.gpu: device cuda needs context_bytes and activation_bytes "
                                 "(configs/backend/testbed-gpu.yaml)")
            gpu_settings = GpuEngineSettings(
                device_bytes=hw.gpu_mem_bytes, context_bytes=int(gpu["context_bytes"]),
                activation_bytes=int(gpu["activation_bytes"]), profile_args=tuple(profile_engine_args(hw_engine)))
        fake_dir = None
        if fake_gpu:
            if gpu_settings is None:
                raise InputError("backend.fake_gpu needs device: cuda (fake GPUs stand in for real ones)")
            fake_dir = Path(tempfile.mkdtemp(prefix="warmserve-fakegpu-"))
            for node in range(nodes):
                FakeGpuNode.init(fake_gpu_path(fake_dir, node), [int(c) for c in cores[node * gpn:(node + 1) * gpn]],
                                 gpu_settings.device_bytes, gpu_settings.context_bytes, gpu_settings.activation_bytes)
        settings = TestbedSettings(
            device=device, slot_cores=cores,
            capacity_bytes=hw.pool_bytes,
            max_engines=int(slots["max_engines"]),
            prespawned_pool=int(prewarm["prespawned_pool"]) if self.features.worker_pool else 0,
            sleep_level=int(prewarm["sleep_level"]),
            kv_block_tokens=hw.engine.kv_block_tokens, max_model_len=hw.engine.max_model_len,
            kv_cache_bytes=int(kv) if (kv := engine_cfg.flag("--kv-cache-memory-bytes")) else None,
            port_first=int(ports["first"]), port_count=int(ports["count"]), max_port_retries=int(ports["retries"]),
            adopt_replicas=self.features.memory_switching,
            gpu=gpu_settings, fake_gpu_dir=fake_dir,
        )
        # one folder of engine logs per run, so logs of different runs never mix
        self._log_dir = _resolve(log_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
        factory = EngineFactory(engine_cfg, ckpt, host, self._log_dir)
        super().__init__(settings, factory, models, nodes, gpn, WallClock())
        self.host = host
        self.seed = seed
        self.hardware_name = hw.name
        self.frontdoor_port = frontdoor_port
        self.request_timeout_s = request_timeout_s
        self.max_retries = max_retries
        self.prompt_vocab = prompt_vocab
        self.util_interval_s = utilization_interval_s
        self.label = label
        self.setup_ready = setup_ready
        self.host_cores = str(host_cores) if host_cores not in (None, "") else None
        try:
            self._host_cpus = host_cpus(self.host_cores, cores)
        except ValueError as exc:
            raise InputError(str(exc)) from None
        self.warm_dirs = sorted({ckpt / spec.base for spec in models.values()}) if warm_page_cache else []
        self.page_cache_warmed_bytes = 0
        self.partial = False
        self.interrupted_by: str | None = None
        self._requests = pd.DataFrame()
        self._sampler: Sampler | None = None
        self._wall_s = 0.0
        self.route_times: list[float | None] = []  # seconds inside each routing decision (bench_router)

    def _make_sampler(self) -> Sampler:
        """CPU: process trees (psutil). GPU: NVML, indexed by each slot's GPU id (fake GPUs: their registry)."""
        if self.settings.device != "cuda":
            return ProcessSampler(self.fleet.engine_pids, {g: len(c.split(",")) for g, c in
                                                     enumerate(self.settings.slot_cores)},
                                  self.clock.now, self.util_interval_s)
        gpn = self.state.gpus_per_node
        if self.settings.fake_gpu_dir is not None:
            nvmls = [FakeNvml(fake_gpu_path(self.settings.fake_gpu_dir, n)) for n in range(self.state.nodes)]
            for n in nvmls:
                n.nvmlInit()
        else:
            nvmls = [load_nvml()] * self.state.nodes
        devices = {g: (nvmls[g // gpn], int(c)) for g, c in enumerate(self.settings.slot_cores)}
        return NvmlSampler(self.fleet.engine_gpus, devices, self.clock.now, self.util_interval_s)

    # ---- the runnable protocol -----------------------------------------
    def replay(self, workload: pd.DataFrame, controller: Controller, until_s: float, *,
               on_start: Callable[[], None] | None = None,
               progress: Callable[[float], None] | None = None) -> ReplayInfo:
        # before the clock starts: checkpoints into the page cache, this process off the slots' cores
        self.page_cache_warmed_bytes = warm_page_cache(d for d in self.warm_dirs if d.is_dir())
        restore = pin_host(self._host_cpus)
        t = time.monotonic()
        try:
            info = asyncio.run(self._replay(workload, controller, until_s, on_start, progress))
        finally:
            self._wall_s = time.monotonic() - t
            restore()
        return info

    async def _replay(self, workload: pd.DataFrame, controller: Controller, until_s: float,
                      on_start: Callable[[], None] | None, progress: Callable[[float], None] | None) -> ReplayInfo:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def interrupt(name: str) -> None:
            if self.interrupted_by is not None:  # second signal: give up at once (cleanup still runs)
                raise KeyboardInterrupt
            self.interrupted_by, self.partial = name, True
            stop.set()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, interrupt, sig.name)
        self.sink = controller
        client: dict[int, ClientRecord] = {}
        door = FrontDoor(self, controller, self.host, self.frontdoor_port, self.request_timeout_s, self.max_retries)
        sampler_stop = asyncio.Event()
        try:
            await self.open()
            await door.start()
            self._sampler = self._make_sampler()
            self.clock.start()
            controller.start(ticks=not self.setup_ready)  # t = 0: the policy's setup commands
            if self.setup_ready:
                # instances and prewarms deployed before the replay (as the twin's setup_ready): wait for
                # them, restart the clock at 0 (setup events are logged at t = 0), then begin ticks
                await self.wait_deployed()
                self.clock.start()
                for row in self.timeline_rows:
                    row["t_s"] = 0.0
                controller.start_ticks()
            if on_start is not None:
                on_start()
            sampler = asyncio.create_task(self._sampler.run(sampler_stop))
            t0 = self.clock.monotonic()
            sender = asyncio.create_task(replay_open_loop(door.url, workload, t0, self.prompt_vocab, self.seed,
                                                          client, stop, progress))
            deadline = asyncio.create_task(asyncio.sleep(max(0.0, until_s)))
            await asyncio.wait({sender, deadline}, return_when=asyncio.FIRST_COMPLETED)
            if not sender.done():  # out of time: unfinished requests become timeout rows
                stop.set()
                await sender
            deadline.cancel()
            end_s = self.clock.now()
            controller.stop()
            sampler_stop.set()
            await sampler
        finally:
            sampler_stop.set()
            with contextlib.suppress(Exception):
                await door.stop()
            await self.close()
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
        self._requests = request_log(workload, client, door.records, t0)
        self.route_times = [r.route_s for r in door.records.values()]
        unfinished = int((self._requests.status == "timeout").sum())
        extra = {"partial": self.partial, "interrupted_by": self.interrupted_by, **self.counters,
                 "retried": int((self._requests.attempts > 1).sum())}
        return ReplayInfo(end_s=end_s, requests=len(workload), unfinished=unfinished, extra=extra)

    def request_log(self) -> pd.DataFrame:
        cols = {k: v for k, v in REQUEST_COLUMNS.items() if k != "system"}
        return conform(self._requests.assign(system=""), cols, "testbed request log")

    def request_details(self) -> pd.DataFrame:
        """The testbed-only columns (mechanism per start, attempts, client token count, errors)."""
        keep = ["request_id", "mechanism", "attempts", "tokens_received", "error", "send_lag_s"]
        return self._requests[keep].copy() if len(self._requests) else pd.DataFrame(columns=keep)

    def timeline(self) -> pd.DataFrame:
        return self.events.frame()

    def utilization(self, interval_s: float) -> pd.DataFrame:
        """Per slot per sample: measured CPU busy fraction; bytes from the backend's accounting at
        that time are not reconstructed here, so weights/KV come from the live engines' roles and
        ``prewarm_bytes`` is the *measured* resident memory of standby engines (the real cost of a
        CPU prewarm)."""
        raw = self._sampler.frame() if self._sampler is not None else pd.DataFrame(
            columns=["t_s", "gpu", "busy", "rss_bytes", "pid", "instance_id"])
        if raw.empty:
            return conform(pd.DataFrame(columns=list(UTILIZATION_COLUMNS)), UTILIZATION_COLUMNS, "util")
        raw = raw.assign(t_s=(raw.t_s / interval_s).round() * interval_s,
                         serving=raw.instance_id >= 0)
        agg = raw.groupby(["t_s", "gpu"]).apply(
            lambda g: pd.Series({
                "busy": min(1.0, g.loc[g.serving, "busy"].sum()),
                "weights_bytes": int(g.loc[g.serving, "instance_id"].map(self._weights_of).sum()),
                "kv_bytes": int(g.loc[g.serving, "rss_bytes"].sum() - g.loc[g.serving, "instance_id"]
                                .map(self._weights_of).sum()),
                "prewarm_bytes": int(g.loc[~g.serving, "rss_bytes"].sum()),
            }), include_groups=False).reset_index()
        agg["node"] = agg.gpu // self.state.gpus_per_node
        return conform(agg, UTILIZATION_COLUMNS, "testbed utilization")

    def process_samples(self) -> pd.DataFrame:
        """Raw per-process samples (pid, slot, busy, resident bytes) behind ``utilization``."""
        return self._sampler.frame() if self._sampler is not None else pd.DataFrame()

    def _weights_of(self, iid: int) -> int:
        inst = self.state.instances.get(int(iid))
        return self.state.models[inst.model].bytes_per_gpu if inst else 0

    def _machine(self) -> str:
        """The hardware this run used, hostname-free (figures say "measured, <machine>")."""
        from warmserve.experiments.hardware_probe import testbed_machine  # noqa: PLC0415 - NVML only when asked

        try:
            return testbed_machine(self.settings.device, list(self.settings.slot_cores),
                                   fake=self.settings.fake_gpu_dir is not None,
                                   mem_bytes=self.settings.gpu.device_bytes if self.settings.gpu else 0)
        except Exception as exc:  # noqa: BLE001 - a description must never fail a finished run
            return f"unknown machine ({type(exc).__name__})"

    def describe(self) -> dict[str, Any]:
        starts = [e for e in self.timeline_rows if e["kind"] == "instance_ready"]
        return {
            "simulated": False,
            "backend": "testbed",
            "device": self.settings.device,
            "hardware_profile": self.hardware_name,
            "engine_module": self.factory.cfg.module,
            "partial": self.partial,
            "interrupted_by": self.interrupted_by,
            "wall_s": round(self._wall_s, 3),
            "engine_logs": str(self._log_dir),
            "counters": dict(self.counters),
            "starts_by_mechanism": pd.Series([e["mechanism"] for e in starts]).value_counts().to_dict(),
            "fake_gpu": self.settings.fake_gpu_dir is not None,
            "host_cores": self.host_cores,
            "page_cache_warmed_bytes": self.page_cache_warmed_bytes,
            "machine": self._machine(),
            "note": (("stub engines on fake GPUs (warmserve.testbed.fake_gpu): the GPU testbed's control path and "
                      "vLLM's memory/sleep rules, no measurement" if self.settings.fake_gpu_dir is not None else
                      "vLLM engines on GPUs: prewarmed replicas are sleeping engines with their weights awake")
                     if self.settings.device == "cuda" else
                     "real engine processes on this machine; on the CPU a prewarmed replica is a whole standby "
                     "engine (vLLM sleep mode / weight-level prewarm and memory switching are GPU-only)")
                    + ", KV lending is not available on stock vLLM",
        }
