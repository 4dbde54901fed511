"""The command-line share of one GPU engine: memory, KV cache, TP and scheduler limits.

Upstream vLLM fixes these per engine process when it starts, so they must come from
the plan, not from one line shared by every engine:

* ``--gpu-memory-utilization`` is checked at start-up against the device's *free*
  memory (``request_memory`` in ``vllm/v1/worker/utils.py``, called from the GPU worker's
  ``init_device``: ``free >= ceil(total x utilisation)`` or the engine exits), even when
  ``--kv-cache-memory-bytes`` is given. One fixed 0.9 for every engine therefore refuses
  every second engine on a device. Each engine asks for exactly its share of the device:
  ``share / total``, rounded down so the request never exceeds the share;
* ``--kv-cache-memory-bytes`` (per GPU) = share - weights / tp - the engine's overheads
  (CUDA context and activation peak, ``gpu:`` in ``configs/backend/testbed-gpu.yaml``);
  the engine refuses to start if that cannot hold one ``max_model_len`` sequence;
* ``--tensor-parallel-size`` = the number of GPUs of the instance (``CUDA_VISIBLE_DEVICES``
  lists them); without it a TP4 model loads onto one GPU;
* ``--enable-sleep-mode`` on every engine: any engine may later become a prewarmed replica
  (a prewarm, or a stop that keeps its weights) and sleep mode can only be chosen at start;
* block size, batch and sequence limits come from the hardware profile's ``engine:`` block
  (the twin's numbers), never from a second copy in the backend config.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from warmserve.errors import InputError

#: hardware profile ``engine:`` key -> the vLLM flag carrying it
PROFILE_FLAGS = {
    "kv_block_tokens": "--block-size",
    "max_num_batched_tokens": "--max-num-batched-tokens",
    "max_num_seqs": "--max-num-seqs",
    "max_model_len": "--max-model-len",
}
#: flags set per engine from the plan; a backend config must not set them for every engine
PLAN_FLAGS = ("--tensor-parallel-size", "--gpu-memory-utilization", "--kv-cache-memory-bytes",
              "--enable-sleep-mode")
UTIL_DIGITS = 4  # vLLM takes any float; 4 digits = 8 MiB steps on an 80 GiB device


def profile_engine_args(engine: Mapping) -> list[str]:
    """The engine flags the twin's profile already states (``configs/hardware/*.yaml`` ``engine:``)."""
    out: list[str] = []
    for key, flag in PROFILE_FLAGS.items():
        if key not in engine:
            raise InputError(f"hardware.engine: missing '{key}' (the engines get {flag} from it)")
        out += [flag, str(int(engine[key]))]
    return out


def check_no_second_copy(args: list[str], device: str, engine: Mapping) -> None:
    """GPU engines take the profile's and the plan's flags only from here; a CPU config may state
    them (its profile is calibrated *from* the config), but they must agree with the profile."""
    for key, flag in PROFILE_FLAGS.items():
        if flag not in args:
            continue
        if device == "cuda":
            raise InputError(f"backend.engine.args sets {flag}: on GPUs it comes from the hardware profile's "
                             f"engine.{key}, remove it from the backend config")
        given = args[args.index(flag) + 1]
        if key in engine and str(int(engine[key])) != given:
            raise InputError(f"backend.engine.args {flag} {given} disagrees with hardware engine.{key} "
                             f"{engine[key]} (the twin plans with the profile's value)")
    if device == "cuda":
        for flag in PLAN_FLAGS:
            if flag in args:
                raise InputError(f"backend.engine.args sets {flag}: GPU engines get it per engine from the plan")


@dataclass(frozen=True, slots=True)
class GpuEngineSettings:
    """What the testbed needs to size GPU engines (``device: cuda``)."""

    device_bytes: int  # the device's total memory (hardware gpu_mem_bytes)
    context_bytes: int  # per engine per GPU, held while the process lives (backend gpu.context_bytes)
    activation_bytes: int  # per engine per GPU, held while awake (backend gpu.activation_bytes)
    profile_args: tuple[str, ...]  # profile_engine_args of the hardware profile

    @property
    def overhead_bytes(self) -> int:
        return self.context_bytes + self.activation_bytes


@dataclass(frozen=True, slots=True)
class EnginePlan:
    """One engine's share of each of its GPUs."""

    tp: int
    share_bytes: int  # per GPU: context + activations + weights + KV
    kv_bytes: int  # per GPU (--kv-cache-memory-bytes)
    utilization: float

    def args(self, gs: GpuEngineSettings) -> list[str]:
        return ["--tensor-parallel-size", str(self.tp), "--gpu-memory-utilization", f"{self.utilization}",
                "--kv-cache-memory-bytes", str(self.kv_bytes), "--enable-sleep-mode", *gs.profile_args]


def plan_engine(gs: GpuEngineSettings, share_bytes: int, weights_per_gpu: int, tp: int,
                kv_bytes: int | None = None) -> EnginePlan:
    """The plan for an engine holding ``share_bytes`` per GPU (``kv_bytes`` smaller than what the share
    leaves, if given: a prewarmed replica that must fit the free memory of its start)."""
    room = share_bytes - weights_per_gpu - gs.overhead_bytes
    kv = room if kv_bytes is None else min(kv_bytes, room)
    used = weights_per_gpu + gs.overhead_bytes + max(0, kv)
    util = math.floor(used / gs.device_bytes * 10**UTIL_DIGITS) / 10**UTIL_DIGITS
    return EnginePlan(tp=tp, share_bytes=used, kv_bytes=kv, utilization=util)
