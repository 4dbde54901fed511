"""A fake GPU node shared by the stub engines of one node, and a fake NVML that reads it.

Stub engines are separate processes, so the devices they "allocate" on must live
outside any one of them: a small JSON file per node (``WARMSERVE_FAKE_GPU`` names it),
read and written under an exclusive ``fcntl`` lock. It holds each device's total
bytes and, per device, what each engine process holds (tag -> bytes: ``context``,
``weights``, ``kv_cache``, ``activations``). As on a real GPU, memory held by a process
that has exited is free again: entries of dead pids are dropped on every read. That
makes "an evicted engine is still being killed while the next one wakes its KV cache"
visible: its bytes stay until its process is gone.

``FakeNvml`` exposes the few ``pynvml`` calls ``warmserve.testbed.utilization.NvmlSampler``
makes, answered from the same file (device index = GPU id, as NVML numbers devices
in PCI bus order; the testbed sets ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` so CUDA agrees).
Nothing here is a measurement; it is the contract a GPU imposes, for tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import psutil

ENV = "WARMSERVE_FAKE_GPU"  # path of the node's registry file, set in each stub engine's environment


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass(slots=True)
class FakeGpuNode:
    """One node's devices in a locked JSON file (create it with ``init``)."""

    path: Path

    @classmethod
    def init(cls, path: Path, devices: list[int], total_bytes: int, context_bytes: int = 0,
             activation_bytes: int = 0) -> FakeGpuNode:
        """A node of ``devices`` (GPU ids) of ``total_bytes`` each. Every engine process holds
        ``context_bytes`` per device while it lives and ``activation_bytes`` while awake (the
        overheads a real engine has beyond weights and KV cache)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        node = cls(path)
        with node._locked() as data:
            data.clear()
            data["total_bytes"] = int(total_bytes)
            data["context_bytes"] = int(context_bytes)
            data["activation_bytes"] = int(activation_bytes)
            data["devices"] = {str(d): {} for d in devices}
            data["busy"] = {}
        return node

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict]:
        with open(self.path.with_suffix(".lock"), "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                data = json.loads(self.path.read_text()) if self.path.exists() else {}
                for holders in data.get("devices", {}).values():
                    for pid in [p for p in holders if not _alive(int(p))]:
                        del holders[pid]
                for pid in [p for p in data.get("busy", {}) if not _alive(int(p))]:
                    del data["busy"][pid]
                yield data
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data))
                tmp.replace(self.path)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> dict:
        with self._locked() as data:
            return json.loads(json.dumps(data))

    def allocate(self, pid: int, device: int, tag: str, nbytes: int) -> int:
        """Hold ``nbytes`` on ``device`` for ``pid`` under ``tag`` (replacing what it held under it);
        raises ``MemoryError`` if the device lacks them (nothing changes then). Returns the free bytes left."""
        with self._locked() as data:
            holders = data["devices"].setdefault(str(device), {})
            mine = holders.setdefault(str(pid), {})
            used = sum(b for h in holders.values() for b in h.values()) - mine.get(tag, 0)
            free = data["total_bytes"] - used
            if nbytes > free:
                raise MemoryError(f"CUDA out of memory: tried to allocate {nbytes / 2**30:.2f} GiB on device "
                                  f"{device} ({free / 2**30:.2f} GiB free of {data['total_bytes'] / 2**30:.2f} GiB)")
            mine[tag] = int(nbytes)
            return free - nbytes

    def release(self, pid: int, device: int, tag: str) -> None:
        with self._locked() as data:
            data["devices"].get(str(device), {}).get(str(pid), {}).pop(tag, None)

    def free_bytes(self, device: int) -> tuple[int, int]:
        """(free, total) bytes of ``device``, as ``torch.cuda.mem_get_info`` answers."""
        data = self.read()
        holders = data["devices"].get(str(device), {})
        used = sum(b for h in holders.values() for b in h.values())
        return data["total_bytes"] - used, data["total_bytes"]

    def set_busy(self, pid: int, busy: bool) -> None:
        with self._locked() as data:
            if busy:
                data["busy"][str(pid)] = 1
            else:
                data["busy"].pop(str(pid), None)


class FakeNvml:
    """The ``pynvml`` calls ``NvmlSampler`` makes, answered from the registry named by ``WARMSERVE_FAKE_GPU``
    (in the sampling process: the testbed sets it when the backend config has a ``fake_gpu`` block)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.node: FakeGpuNode | None = None

    def nvmlInit(self) -> None:  # noqa: N802 - pynvml's names
        self.node = FakeGpuNode(self.path or Path(os.environ[ENV]))

    def nvmlShutdown(self) -> None:  # noqa: N802
        self.node = None

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:  # noqa: N802
        assert self.node is not None, "nvmlInit first"
        if str(index) not in self.node.read()["devices"]:
            raise ValueError(f"NVML: no device {index}")
        return index

    def nvmlDeviceGetUtilizationRates(self, handle: int) -> SimpleNamespace:  # noqa: N802
        assert self.node is not None
        data = self.node.read()
        pids = data["devices"].get(str(handle), {})
        busy = any(p in data["busy"] for p in pids)
        return SimpleNamespace(gpu=100 if busy else 0, memory=0)

    def nvmlDeviceGetMemoryInfo(self, handle: int) -> SimpleNamespace:  # noqa: N802
        assert self.node is not None
        free, total = self.node.free_bytes(handle)
        return SimpleNamespace(total=total, free=free, used=total - free)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: int) -> list[SimpleNamespace]:  # noqa: N802
        assert self.node is not None
        holders = self.node.read()["devices"].get(str(handle), {})
        return [SimpleNamespace(pid=int(p), usedGpuMemory=sum(h.values())) for p, h in holders.items()]
