"""What hardware is here: GPUs (NVML, else torch), CPU cores, Ray nodes; and whether it is free.

The real-engine reproduction (``warmserve.experiments.real``) reads this before
it plans anything, so it picks a preset that fits the machine instead of
failing an hour in, and it refuses to start on GPUs another job is using (its
measurements would be someone else's contention). Every figure of a real run
names the machine by ``Machine.describe()``: hardware only (CPU model and
cores, GPU name, count and memory), never a host name, so a committed figure
says what was measured without saying where.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from warmserve.calibrate.machine import cpu_model, usable_cores
from warmserve.errors import InputError

GIB = 1 << 30


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    mem_bytes: int
    used_bytes: int = 0
    processes: int = 0  # compute processes NVML lists on the device


@dataclass(frozen=True)
class Machine:
    """The hardware a real run will use (one node's view, plus the node count)."""

    cpu_model: str
    cores: int  # cores this process may run on (sched_getaffinity), what the CPU testbed binds engines to
    gpus: tuple[Gpu, ...] = ()
    nodes: int = 1
    fake: bool = False  # stub engines on fake GPUs (backend=testbed-stub-gpu): nothing is measured
    source: str = "none"  # how the GPUs were read: nvml, torch, fake, none
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def gpus_per_node(self) -> int:
        return len(self.gpus)

    @property
    def gpu_mem_bytes(self) -> int:
        """The smallest GPU's memory: what every slot can count on."""
        return min((g.mem_bytes for g in self.gpus), default=0)

    def describe(self, device: str = "cuda") -> str:
        """'1x NVIDIA H100 80GB HBM3 (80 GiB)' / '2 cores of Intel(R) Xeon(R) ...': no host name."""
        if device != "cuda" or not self.gpus:
            return f"{self.cores} core{'s' if self.cores != 1 else ''} of {self.cpu_model}"
        names = sorted({g.name for g in self.gpus})
        per = f"{len(self.gpus)}x {'/'.join(names)} ({self.gpu_mem_bytes / GIB:.0f} GiB)"
        nodes = f"{self.nodes} nodes x " if self.nodes > 1 else ""
        return ("fake GPUs: " if self.fake else "") + nodes + per


def _nvml_gpus(nvml: Any) -> list[Gpu]:
    out = []
    for i in range(int(nvml.nvmlDeviceGetCount())):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        name = nvml.nvmlDeviceGetName(h)
        mem = nvml.nvmlDeviceGetMemoryInfo(h)
        try:
            procs = len(nvml.nvmlDeviceGetComputeRunningProcesses(h))
        except Exception:  # noqa: BLE001 - some drivers refuse the query in containers: count none, memory still checks
            procs = 0
        out.append(Gpu(i, name.decode() if isinstance(name, bytes) else str(name),
                       int(mem.total), int(mem.used), procs))
    return out


def _torch_gpus() -> list[Gpu]:
    import torch  # noqa: PLC0415 - optional

    if not torch.cuda.is_available():
        return []
    out = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        free, total = torch.cuda.mem_get_info(i)
        out.append(Gpu(i, p.name, int(total), int(total - free), 0))
    return out


def probe_gpus(nvml: Any = None) -> tuple[list[Gpu], str]:
    """GPUs of this node through NVML (``nvml`` given, or pynvml), else torch; ([], 'none') without."""
    if nvml is None:
        try:
            import pynvml  # noqa: PLC0415 - the gpu extra

            pynvml.nvmlInit()
            nvml = pynvml
        except Exception:  # noqa: BLE001 - no library or no driver: try torch
            nvml = None
    if nvml is not None:
        try:
            return _nvml_gpus(nvml), "nvml"
        except Exception:  # noqa: BLE001 - a driver without devices
            pass
    try:
        gpus = _torch_gpus()
    except Exception:  # noqa: BLE001 - no torch, or a CPU build
        gpus = []
    return gpus, ("torch" if gpus else "none")


def ray_nodes(address: str | None) -> int:
    """Alive nodes with at least one GPU in the Ray cluster at ``address`` (``auto`` = the running one)."""
    try:
        import ray  # noqa: PLC0415 - the testbed extra
    except ImportError:
        raise InputError("--ray: ray is not installed (WITH_TESTBED=1 bash scripts/setup_env.sh)") from None
    ray.init(address=address, ignore_reinit_error=True, log_to_driver=False)
    try:
        return sum(1 for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("GPU", 0) > 0)
    finally:
        ray.shutdown()


def probe(*, ray_address: str | None = None, nvml: Any = None) -> Machine:
    """This machine as the driver sees it (``ray_address``: count nodes through Ray)."""
    gpus, source = probe_gpus(nvml)
    nodes = ray_nodes(ray_address) if ray_address else 1
    return Machine(cpu_model=cpu_model(), cores=usable_cores(), gpus=tuple(gpus), nodes=max(1, nodes), source=source)


def fake_machine(gpus: int, mem_bytes: int, name: str = "fake GPU") -> Machine:
    """The machine ``backend=testbed-stub-gpu`` pretends to have (its fake GPUs, this host's CPU)."""
    return Machine(cpu_model=cpu_model(), cores=usable_cores(),
                   gpus=tuple(Gpu(i, name, int(mem_bytes)) for i in range(gpus)), fake=True, source="fake")


def busy_gpus(machine: Machine, ids: list[int], *, max_used_fraction: float, max_processes: int) -> list[str]:
    """One line per GPU of ``ids`` that another job uses (processes or memory above the limits)."""
    out = []
    for g in machine.gpus:
        if g.index not in ids:
            continue
        frac = g.used_bytes / g.mem_bytes if g.mem_bytes else 0.0
        if g.processes > max_processes or frac > max_used_fraction:
            out.append(f"GPU {g.index} ({g.name}): {g.processes} compute process(es), "
                       f"{g.used_bytes / GIB:.1f} of {g.mem_bytes / GIB:.0f} GiB used")
    return out


def testbed_machine(device: str, slot_ids: list[str], *, fake: bool, mem_bytes: int) -> str:
    """What a testbed run ran on, for its run.json and every figure's provenance: the slots' cores
    (CPU) or GPUs (NVML/torch; fake GPUs say so), never the host name."""
    if device != "cuda":
        cores = {c for s in slot_ids for c in str(s).split(",")}
        return Machine(cpu_model=cpu_model(), cores=len(cores)).describe("cpu")
    ids = [int(str(s).split(",")[0]) for s in slot_ids]
    if fake:
        return fake_machine(len(set(ids)), mem_bytes).describe("cuda")
    gpus, _ = probe_gpus()
    used = tuple(g for g in gpus if g.index in ids) or tuple(Gpu(i, "unknown GPU", mem_bytes) for i in sorted(set(ids)))
    return Machine(cpu_model=cpu_model(), cores=usable_cores(), gpus=used).describe("cuda")
