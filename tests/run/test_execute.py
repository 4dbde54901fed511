"""The runner end to end on the twin: outputs, determinism, bad input (nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from warmserve.config import configs_dir, model_specs
from warmserve.errors import InputError
from warmserve.run.execute import Workload, execute
from warmserve.sim.synthetic import synthetic_workload

FILES = {"requests.parquet", "timeline.parquet", "utilization.parquet", "run.json", "summary.json", "trace.json"}


def _cfg(out: Path, *extra: str):
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        return compose("run", overrides=["~workload", f"out={out}", "cluster=tiny_1x4", "drain_s=300",
                                         "utilization_interval_s=5", *extra])


def _workload(models=None, **kw) -> Workload:
    specs = models or model_specs("small2")
    reqs = synthetic_workload(list(specs), rate_rps=kw.pop("rate", 2.0), duration_s=kw.pop("duration", 60.0), seed=1)
    return Workload(requests=reqs, models=specs, **kw)


def test_static_run_writes_every_output(tmp_path: Path) -> None:
    out = execute(_cfg(tmp_path / "r"), workload=_workload())
    assert {p.name for p in out.iterdir()} == FILES
    req = pd.read_parquet(out / "requests.parquet")
    assert len(req) > 50 and (req.system.astype(str) == "static").all()
    s = json.loads((out / "summary.json").read_text())
    assert s["simulated"] is True and s["hardware_profile"] == "a100-80gb"
    assert s["overall"]["requests"] == len(req) and s["overall"]["starts_by_kind"]["warm"] == 2
    run = json.loads((out / "run.json").read_text())
    assert run["backend"]["simulated"] is True and run["seed"] == 42 and "pandas" in run["versions"]
    util = pd.read_parquet(out / "utilization.parquet")
    assert set(util.gpu) == {0, 1, 2, 3} and (util.busy <= 1).all()
    tl = pd.read_parquet(out / "timeline.parquet")
    assert {"instance_start", "instance_ready"} <= set(tl.kind.astype(str))
    trace = json.loads((out / "trace.json").read_text())
    assert trace["traceEvents"]


def test_static_sizes_from_priors_and_records_forecasts(tmp_path: Path) -> None:
    specs = model_specs("small2")
    priors = pd.DataFrame({"model": ["llama2-7b-0", "llama2-13b-0"], "window": [0, 0], "prior_mean": [10.0, 1.0],
                           "prior_peak": [70.0, 3.0]})
    out = execute(_cfg(tmp_path / "r"), workload=_workload(specs, priors=priors))
    tl = pd.read_parquet(out / "timeline.parquet")
    starts = tl[tl.kind == "instance_start"].model.astype(str).value_counts().to_dict()
    assert starts == {"llama2-7b-0": 2, "llama2-13b-0": 1}  # 7b: ceil(70/32)=3 reduced to fit 4 GPUs


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = execute(_cfg(tmp_path / "a"), workload=_workload())
    b = execute(_cfg(tmp_path / "b"), workload=_workload())
    for f in ("requests.parquet", "timeline.parquet", "utilization.parquet", "summary.json"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


@pytest.mark.parametrize("override,words", [
    (["hardware.nvme_GBps=-1"], "nvme_GBps"),
    (["cluster.gpus_per_node=1"], "gpus_per_node"),
    (["hardware.gpu_mem_bytes=1000000000"], "fit"),
    (["~hardware.lifecycle.engine_init_s"], "engine_init_s"),
])
def test_bad_input_writes_nothing(tmp_path: Path, override: list[str], words: str) -> None:
    out = tmp_path / "r"
    with pytest.raises(InputError, match=words):
        execute(_cfg(out, *override), workload=_workload())
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_workload_naming_an_unknown_model(tmp_path: Path) -> None:
    w = _workload()
    w.requests.loc[0, "model"] = "gpt-9"
    with pytest.raises(InputError, match="gpt-9"):
        execute(_cfg(tmp_path / "r"), workload=w)
    assert list(tmp_path.iterdir()) == []


def test_cli_bad_input_exits_2(tmp_path: Path) -> None:
    out = tmp_path / "r"
    p = subprocess.run([sys.executable, "-m", "warmserve.run", "hardware.nvme_GBps=-1", f"out={out}"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1].startswith("error:")
    assert not out.exists()
