"""What a stub engine does on the fake GPU node (``warmserve.testbed.fake_gpu``): vLLM's rules, no CUDA.

Active when the engine's environment names a registry (``WARMSERVE_FAKE_GPU``). The rules
are upstream vLLM's, so a testbed bug that would break on a GPU breaks here first:

* **start** (the GPU worker's ``init_device`` -> ``request_memory``): every device the engine
  uses must have ``free >= ceil(total x --gpu-memory-utilization)``, else the engine exits with
  vLLM's "Free memory on device ... is less than desired GPU memory utilization";
* **tensor parallelism**: the engine uses the first ``--tensor-parallel-size`` devices of
  ``CUDA_VISIBLE_DEVICES`` (more than are visible: exit) and holds ``weight_bytes / tp`` on each;
  weights that do not fit are a CUDA out-of-memory exit (a 70B model on one GPU);
* **KV cache**: ``--kv-cache-memory-bytes`` per device if given, else what the utilisation
  leaves after weights and overhead; fewer tokens than ``--max-model-len`` is vLLM's
  start-up error; while serving, requests hold ``--block-size`` blocks and wait when the
  cache is full (a request larger than the whole cache is refused);
* **sleep mode** (only with ``--enable-sleep-mode``): level 1 moves weights to host and drops
  the KV cache; level 2 drops both. ``/wake_up?tags=weights`` re-allocates the weights, and
  after level 2 their content is garbage until ``/collective_rpc`` ``reload_weights``:
  an engine serving with garbage weights answers "?" tokens and counts them
  (``/stub/state``), since a client sending ``ignore_eos`` would notice nothing.

Per-process overheads (CUDA context, activation peak) are the node's (``FakeGpuNode.init``).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from pathlib import Path

from warmserve.config import model_checkpoint
from warmserve.testbed.fake_gpu import ENV, FakeGpuNode


class EngineStartError(RuntimeError):
    """The engine would exit at start-up (the message is vLLM's)."""


class StubGpu:
    """The memory and sleep state of one stub engine on its devices."""

    def __init__(self, args: argparse.Namespace, node: FakeGpuNode, visible: list[int]) -> None:
        self.args = args
        self.node = node
        self.pid = os.getpid()
        self.tp = int(args.tensor_parallel_size)
        if self.tp > len(visible):
            raise EngineStartError(f"World size ({self.tp}) is larger than the number of available GPUs "
                                   f"({len(visible)}) in this node (CUDA_VISIBLE_DEVICES={visible})")
        self.devices = visible[: self.tp]
        mc = model_checkpoint(args.base)
        self.weights = -(-int(mc.weight_bytes) // self.tp)
        self.kv_per_token = -(-int(mc.kv_bytes_per_token) // self.tp)
        self.kv_bytes = 0
        self.kv_tokens = 0
        self.weights_on = self.kv_on = False
        self.weights_valid = True
        self.level = 0
        self.garbage_served = 0
        info = node.read()
        self.context_bytes = int(info.get("context_bytes", 0))
        self.activation_bytes = int(info.get("activation_bytes", 0))
        self._kv_used = 0  # tokens (in whole blocks) held by running requests
        self._kv_cond: asyncio.Condition | None = None

    # ---- start-up: vLLM's init_device / load_model / initialize_kv_cache ----
    def start(self) -> None:
        a = self.args
        for d in self.devices:
            free, total = self.node.free_bytes(d)
            requested = math.ceil(total * a.gpu_memory_utilization)
            if free < requested:
                raise EngineStartError(
                    f"Free memory on device cuda:{d} ({free / 2**30:.2f}/{total / 2**30:.2f} GiB) on startup is less "
                    f"than desired GPU memory utilization ({a.gpu_memory_utilization}, {requested / 2**30:.2f} GiB). "
                    "Decrease GPU memory utilization or reduce GPU memory used by other processes.")
        self._alloc_all("context", self.context_bytes)
        self._alloc_all("weights", self.weights)
        self.weights_on = True
        self._alloc_all("activations", self.activation_bytes)
        if a.kv_cache_memory_bytes is not None:
            kv = int(a.kv_cache_memory_bytes)
        else:
            _, total = self.node.free_bytes(self.devices[0])
            kv = int(total * a.gpu_memory_utilization) - self.weights - self.context_bytes - self.activation_bytes
        if kv <= 0:
            raise EngineStartError("No available memory for the cache blocks. Try increasing "
                                   "`gpu_memory_utilization` when initializing the engine.")
        blocks = kv // (a.block_size * self.kv_per_token)
        if blocks * a.block_size < a.max_model_len:
            raise EngineStartError(
                f"To serve at least one request with the models's max seq len ({a.max_model_len}), "
                f"({a.max_model_len * self.kv_per_token / 2**30:.2f} GiB KV cache is needed, which is larger than "
                f"the available KV cache memory ({kv / 2**30:.2f} GiB).")
        self.kv_bytes, self.kv_tokens = kv, int(blocks * a.block_size)
        self._alloc_all("kv_cache", kv)
        self.kv_on = True

    def _alloc_all(self, tag: str, nbytes: int) -> None:
        try:
            for d in self.devices:
                self.node.allocate(self.pid, d, tag, nbytes)
        except MemoryError as exc:
            for d in self.devices:
                self.node.release(self.pid, d, tag)
            raise EngineStartError(str(exc)) from None

    def _release_all(self, tag: str) -> None:
        for d in self.devices:
            self.node.release(self.pid, d, tag)

    # ---- sleep mode ------------------------------------------------------
    @property
    def sleeping(self) -> bool:
        return not (self.weights_on and self.kv_on)

    def sleep(self, level: int) -> str | None:
        """Returns an error (HTTP 500 in the server) or None."""
        if not self.args.enable_sleep_mode:
            return "Sleep mode is not enabled in the model config (start the engine with --enable-sleep-mode)"
        if level not in (1, 2):
            return f"unknown sleep level {level}"
        self._release_all("kv_cache")
        self._release_all("activations")
        self._release_all("weights")
        self.kv_on = self.weights_on = False
        if level == 2:
            self.weights_valid = False  # discarded, not backed up to host
        self.level = level
        return None

    def wake_up(self, tags: list[str]) -> str | None:
        if not self.args.enable_sleep_mode:
            return "Sleep mode is not enabled in the model config"
        try:
            if "weights" in tags and not self.weights_on:
                self._alloc_all("weights", self.weights)  # level 2: memory back, content not
                self.weights_on = True
            if "kv_cache" in tags and not self.kv_on:
                self._alloc_all("activations", self.activation_bytes)
                self._alloc_all("kv_cache", self.kv_bytes)
                self.kv_on = True
        except EngineStartError as exc:
            return str(exc)
        return None

    def collective_rpc(self, method: str) -> str | None:
        if method != "reload_weights":
            return f"the stub knows only reload_weights, not {method!r}"
        if not self.weights_on:
            return "reload_weights: weights are asleep (wake_up?tags=weights first)"
        self.weights_valid = True
        return None

    # ---- serving ---------------------------------------------------------
    def blocks_for(self, tokens: int) -> int:
        return -(-tokens // self.args.block_size) * self.args.block_size

    async def acquire_kv(self, tokens: int) -> str | None:
        """Wait until the request's blocks fit in the KV cache; an error if they never can."""
        need = self.blocks_for(tokens)
        if need > self.kv_tokens:
            return f"request needs {need} KV tokens, the cache holds {self.kv_tokens}"
        if self._kv_cond is None:
            self._kv_cond = asyncio.Condition()
        async with self._kv_cond:
            await self._kv_cond.wait_for(lambda: self._kv_used + need <= self.kv_tokens)
            self._kv_used += need
            self.node.set_busy(self.pid, True)
        return None

    async def release_kv(self, tokens: int) -> None:
        assert self._kv_cond is not None
        async with self._kv_cond:
            self._kv_used -= self.blocks_for(tokens)
            if self._kv_used == 0:
                self.node.set_busy(self.pid, False)
            self._kv_cond.notify_all()

    def state(self) -> dict:
        return {"devices": self.devices, "tp": self.tp, "weights_bytes": self.weights, "kv_bytes": self.kv_bytes,
                "kv_tokens": self.kv_tokens, "kv_used_tokens": self._kv_used, "weights_on": self.weights_on,
                "kv_on": self.kv_on, "weights_valid": self.weights_valid, "level": self.level,
                "garbage_served": self.garbage_served,
                "gpu_memory_utilization": self.args.gpu_memory_utilization,
                "block_size": self.args.block_size, "max_num_batched_tokens": self.args.max_num_batched_tokens,
                "sleep_mode": bool(self.args.enable_sleep_mode)}


def from_env(args: argparse.Namespace) -> StubGpu | None:
    """The engine's GPU model if its environment names a fake GPU node, else None (CPU stub)."""
    path = os.environ.get(ENV)
    if not path:
        return None
    if not args.base:
        raise EngineStartError("a stub engine on a fake GPU needs --base (configs/model/<base>.yaml gives its sizes)")
    visible = [int(x) for x in os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",") if x.strip()]
    return StubGpu(args, FakeGpuNode(Path(path)), visible)


def add_args(p: argparse.ArgumentParser) -> None:
    """vLLM's engine flags the stub honours on a fake GPU (defaults = vLLM's)."""
    p.add_argument("--base", default=None, help="checkpoint (configs/model/<base>.yaml), for weight and KV sizes")
    p.add_argument("--tensor-parallel-size", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--kv-cache-memory-bytes", type=int, default=None)
    p.add_argument("--block-size", type=int, default=16)
    p.add_argument("--max-num-batched-tokens", type=int, default=None)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--max-model-len", type=int, default=2048)
    p.add_argument("--enable-sleep-mode", action="store_true")
