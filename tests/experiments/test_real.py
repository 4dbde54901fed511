"""The real-engine reproduction: hardware probe, preset choice, refusals, plan, resume, side-by-side table."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import psutil
import pytest
from omegaconf import OmegaConf

from warmserve.analysis import side_by_side
from warmserve.analysis.figures import provenance
from warmserve.config import REPO_ROOT
from warmserve.errors import InputError
from warmserve.experiments import hardware_probe as hp
from warmserve.experiments import real
from warmserve.experiments import real_plan as rp
from warmserve.experiments.points import compose_run

GIB = 1 << 30


def gpus(n: int, mem_gib: float, used_gib: float = 0.0, procs: int = 0, name: str = "NVIDIA H100 80GB HBM3"):
    return tuple(hp.Gpu(i, name, int(mem_gib * GIB), int(used_gib * GIB), procs) for i in range(n))


def machine(n_gpus: int = 0, mem_gib: float = 80, cores: int = 2, nodes: int = 1, **kw) -> hp.Machine:
    return hp.Machine(cpu_model="Test CPU 9000", cores=cores, gpus=gpus(n_gpus, mem_gib, **kw), nodes=nodes)


class FakeNvml:
    """Just the NVML calls the probe makes."""

    def __init__(self, devices: list[tuple[str, int, int, int]]) -> None:
        self.devices = devices

    def nvmlDeviceGetCount(self) -> int:  # noqa: N802 - NVML's names
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, i: int) -> int:  # noqa: N802
        return i

    def nvmlDeviceGetName(self, h: int) -> bytes:  # noqa: N802
        return self.devices[h][0].encode()

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(total=self.devices[h][1], used=self.devices[h][2])

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[int]:  # noqa: N802
        return list(range(self.devices[h][3]))


def test_probe_reads_nvml_and_describes_without_host_name() -> None:
    nv = FakeNvml([("NVIDIA H200", 141 * GIB, GIB // 2, 0), ("NVIDIA H200", 141 * GIB, 40 * GIB, 2)])
    m = hp.probe(nvml=nv)
    assert m.source == "nvml" and m.gpus_per_node == 2 and m.gpus[1].processes == 2
    assert m.describe("cuda") == "2x NVIDIA H200 (141 GiB)"
    import socket

    assert socket.gethostname() not in m.describe("cuda") + m.describe("cpu")
    assert m.describe("cpu").endswith(hp.cpu_model()) and "core" in m.describe("cpu")
    busy = hp.busy_gpus(m, [0, 1], max_used_fraction=0.05, max_processes=0)
    assert len(busy) == 1 and busy[0].startswith("GPU 1")
    assert hp.busy_gpus(m, [0], max_used_fraction=0.05, max_processes=0) == []


@pytest.mark.parametrize(("backend", "m", "want"), [
    ("testbed-gpu", machine(1, 141), "gpu_1x1"),
    ("testbed-gpu", machine(8, 80), "node_1x8"),
    ("testbed-gpu", machine(8, 80, nodes=2), "paper_2x8"),
    ("testbed", machine(cores=2), "cpu_1x2"),
    ("testbed-stub", machine(cores=1), "stub_cpu"),
    ("testbed-stub-gpu", hp.fake_machine(1, 80 * GIB), "stub_gpu"),
])
def test_the_largest_preset_that_fits_is_chosen(backend: str, m: hp.Machine, want: str) -> None:
    assert rp.choose(backend, m).name == want


def test_no_fitting_preset_is_refused_with_the_reason() -> None:
    with pytest.raises(InputError, match="needs 24 GiB per GPU, 16 GiB found"):
        rp.choose("testbed-gpu", machine(1, 16))
    with pytest.raises(InputError, match="needs 2 cores"):
        rp.choose("testbed", machine(cores=1))
    with pytest.raises(InputError, match="does not fit"):
        rp.choose("testbed-gpu", machine(1, 141), "node_1x8")


def test_missing_checkpoint_is_refused_with_the_fetch_command(tmp_path: Path) -> None:
    preset = rp.presets()["gpu_1x1"]
    (tmp_path / "qwen2.5-0.5b").mkdir()
    (tmp_path / "qwen2.5-0.5b" / "config.json").write_text("{}")
    missing = rp.missing_checkpoints(preset, tmp_path, True)
    assert missing == [("qwen2.5-1.5b", "huggingface-cli download Qwen/Qwen2.5-1.5B-Instruct "
                        "--local-dir .cache/models/qwen2.5-1.5b")]
    assert rp.missing_checkpoints(preset, tmp_path, False) == []
    bcfg = compose_run(["backend=testbed-gpu", f"backend.checkpoint_dir={tmp_path}"]).backend
    a = argparse.Namespace(backend="testbed-stub", download=False)  # skips the vLLM check, keeps the weights check
    with pytest.raises(InputError, match="huggingface-cli download Qwen/Qwen2.5-1.5B-Instruct"):
        real.checks(a, preset, machine(1, 141), bcfg, [0])


def test_busy_gpus_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(real.importlib.util, "find_spec", lambda name: object())  # pretend vLLM is installed
    preset = rp.presets()["stub_gpu"]  # needs no checkpoint
    bcfg = compose_run(["backend=testbed-stub-gpu"]).backend
    a = argparse.Namespace(backend="testbed-gpu", download=False)
    with pytest.raises(InputError, match="GPUs in use by another job.*GPU 0"):
        real.checks(a, preset, machine(1, 80, used_gib=30), bcfg, [0])
    real.checks(a, preset, machine(1, 80, used_gib=0.5), bcfg, [0])


def test_a_long_plan_needs_confirmation(monkeypatch: pytest.MonkeyPatch) -> None:
    real.confirm(10, 100, yes=False)  # below the limit: no question
    real.confirm(1000, 100, yes=True)
    monkeypatch.setattr(sys, "stdin", SimpleNamespace(isatty=lambda: False))
    with pytest.raises(InputError, match="not asking without a terminal: rerun with --yes"):
        real.confirm(1000, 100, yes=False)


def test_overrides_merge_and_outputs_move_under_the_real_root(tmp_path: Path) -> None:
    assert rp.merged(["a=1", "b=2"], ["a=3", "++c=4"], ["c=5"]) == ["a=3", "b=2", "c=5"]
    preset = rp.presets()["stub_cpu"]
    base = rp.base_overrides(preset, "testbed-stub", "cpu-testbed", machine(cores=1), True, [])
    csv = rp.write_probe_csv(preset, tmp_path / "probe.csv")
    steps = rp.steps(preset, base, "results/real/x/measured", True, str(csv))
    assert [s.experiment for s in steps] == ["main", "capacity", "ablation", "sensitivity", "timeline", "coldstart"]
    # every point of a step composes (first value of each sweep) and lands under the real root
    for s in steps:
        if s.preset == "capacity_search":
            continue
        ovs = [o.split(",")[0] if "=" in o and not o.startswith(("out=", "hydra.", "backend.slots")) else o
               for o in s.overrides]
        cfg = compose_run([f"+experiment={s.preset}", *ovs, "hydra.mode=RUN"])
        out = OmegaConf.to_container(cfg, resolve=False)["out"]  # ${hydra:...} resolves in a Hydra job only
        assert out.startswith("results/real/x/measured/"), out
        assert (cfg.setting == "real" and cfg.cluster.name == "cpu_1x2"
                and [str(c) for c in cfg.backend.slots.cores] == ["0", "0"])
    cold = next(s for s in steps if s.preset == "coldstart")
    assert f"workload.source.path={csv}" in cold.overrides and "workload.models=tiny2" in cold.overrides
    assert pd.read_csv(csv).model.tolist() == ["tiny-s-0", "tiny-m-0"]


def _run(path: Path, simulated: bool, ttft: float, machine_desc: str | None = None) -> None:
    path.mkdir(parents=True)
    (path / "summary.json").write_text(json.dumps({"simulated": simulated, "overall": {
        "ttft_p50": ttft, "ttft_p99": 2 * ttft, "tpot_mean": 0.01, "slo_attainment": 1.0, "gpu_seconds": 10,
        "ok": 5, "requests": 5}}))
    (path / "run.json").write_text(json.dumps({"config": {"cluster": {"name": "gpu_1x1"}, "hardware": {"name": "h"}},
                                               "backend": {"machine": machine_desc, "engine_module": "vllm"}}))
    for name in ("requests", "timeline", "utilization"):  # a finished run has all its files (rundir.is_finished)
        pd.DataFrame({"x": [0]}).to_parquet(path / f"{name}.parquet")


def test_side_by_side_pairs_every_real_run_with_its_twin(tmp_path: Path) -> None:
    _run(tmp_path / "measured" / "main" / "a", False, 1.0, "1x NVIDIA H200 (141 GiB)")
    _run(tmp_path / "measured" / "main" / "b", False, 1.0, "1x NVIDIA H200 (141 GiB)")
    _run(tmp_path / "twin" / "main" / "a", True, 1.05)
    df = side_by_side.table(tmp_path / "measured", tmp_path / "twin")
    p50 = df[df.metric == "TTFT p50 (s)"].set_index("run")
    assert p50.loc["a", "diff"] == pytest.approx(0.05) and pd.isna(p50.loc["b", "simulated"])
    md = side_by_side.render(df, measured_label="measured, 1x NVIDIA H200 (141 GiB)", twin_label="simulated, h")
    assert "| a | 5/5 / 5/5 |" in md and "measured, 1x NVIDIA H200" in md
    from warmserve.analysis.results import load_runs

    prov = provenance(load_runs(tmp_path / "measured" / "main").overall)
    assert prov.startswith("measured, 1x NVIDIA H200 (141 GiB)")


def _stub_engines(since: float, wait_s: float = 10.0) -> list[psutil.Process]:
    """Stub engines this checkout started since ``since`` still alive after up to ``wait_s`` (other
    sessions' tests may run stub engines on the same machine: not ours to count)."""
    def ours() -> list[psutil.Process]:
        out = []
        for p in psutil.process_iter(["cmdline", "create_time"]):
            try:
                if ("warmserve.testbed.stub_engine" in " ".join(p.info["cmdline"] or [])
                        and p.info["create_time"] >= since and p.cwd() == str(REPO_ROOT)):
                    out.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        return out
    deadline = time.monotonic() + wait_s
    while (left := ours()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


@pytest.mark.slow
def test_driver_end_to_end_resumes_and_cleans_up_on_sigint(tmp_path: Path) -> None:
    """The driver on stub engines: the first run is interrupted (SIGINT) during its real runs -- no engine
    survives it, the interrupted run is kept as partial or not at all -- and the second finishes, skipping
    every run the first finished."""
    root = REPO_ROOT / "results" / "real" / "testbed-stub-stub_cpu-quick"
    measured = root / "measured" / "coldstart"
    cmd = [sys.executable, "-m", "warmserve.experiments.real", "--backend", "testbed-stub", "--quick", "--only",
           "coldstart", "main", "--no-notebooks"]
    subprocess.run(["rm", "-rf", str(root)], check=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:  # interrupt once the first real run is written
        if line.startswith("  [main]") and "/measured/" in line:
            break
    time.sleep(1.0)
    import os

    os.killpg(proc.pid, signal.SIGINT)
    proc.wait(timeout=60)
    assert _stub_engines(t0) == []
    first = {p.parent.name for p in (root / "measured").glob("*/*/summary.json")}
    assert first, "the first run finished no real point before the interrupt"
    out = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert "already measured" in out.stdout
    assert (root / "tables" / "side_by_side.md").is_file() and measured.is_dir()
    assert sum(1 for _ in (root / "measured").glob("*/*/summary.json")) == 4
    assert _stub_engines(t0) == []
