"""Sweeps fail per point; the workload cache is checked and rebuilt, or bypassed when unwritable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from err_harness import invoke

from warmserve.config import REPO_ROOT, configs_dir
from warmserve.rundir import FAILED, is_finished
from warmserve.workload.sources import open_source

# ---------------------------------------------------------------- sweeps


def test_a_bad_point_fails_alone_and_is_named_at_the_end(tmp_path, capsys) -> None:
    """Basic launcher (in-process): the bad point comes first and the good one still runs."""
    argv = ["-m", f"hydra.sweep.dir={tmp_path / '.hydra'}", "system=static", "cluster=tiny_1x4",
            "workload.rps=-1,0.5", f"out={tmp_path}/r" + "${workload.rps}"]
    code, err = invoke("run", argv, capsys)
    assert code == 1, err
    assert is_finished(tmp_path / "r0.5")
    record = json.loads((tmp_path / "r-1" / FAILED).read_text())
    assert record["error"].startswith("workload.rps: must be greater than 0")
    assert not is_finished(tmp_path / "r-1")
    assert (any("1 of 2 points failed" in s for s in err)
            and any(f"{tmp_path}/r-1: error: workload.rps" in s for s in err))


def test_rerunning_the_sweep_retries_only_the_failed_point(tmp_path, capsys) -> None:
    base = ["-m", f"hydra.sweep.dir={tmp_path / '.hydra'}", "system=static", "cluster=tiny_1x4",
            f"out={tmp_path}/r" + "${workload.seed}"]
    code, _ = invoke("run", [*base, "workload.seed=1,2", "+workload.source.bogus=1"], capsys)
    assert code == 1 and (tmp_path / "r1" / FAILED).is_file() and (tmp_path / "r2" / FAILED).is_file()
    code, _ = invoke("run", [*base, "workload.seed=1,2"], capsys)
    assert code == 0 and is_finished(tmp_path / "r1") and is_finished(tmp_path / "r2")
    assert not (tmp_path / "r1" / FAILED).exists()


@pytest.mark.slow
def test_joblib_keeps_the_good_job_running_beside_a_bad_one(tmp_path) -> None:
    """Before: the bad point's SystemExit killed its joblib worker and the good job with it."""
    cmd = [sys.executable, "-m", "warmserve.run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
           f"hydra.sweep.dir={tmp_path / '.hydra'}", "system=static", "cluster=tiny_1x4", "workload.rps=0.5,-1",
           f"out={tmp_path}/r" + "${workload.rps}"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, timeout=600)
    assert res.returncode == 1, res.stderr[-2000:]
    assert is_finished(tmp_path / "r0.5") and (tmp_path / "r-1" / FAILED).is_file()
    assert "Traceback" not in res.stderr and "r-1: error: workload.rps" in res.stderr


# ---------------------------------------------------------------- the workload cache
def _source(scale: float = 0.003):
    """A tiny synthetic week (a few thousand rows): fast to generate, cached like the real one."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(configs_dir() / "source" / "synthetic.yaml")
    cfg.scale = scale
    return open_source(cfg)


def _hours(src) -> pd.DataFrame:
    return pd.concat([src.week.hour(d) for d in range(7)], ignore_index=True)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("WARMSERVE_CACHE", str(root))
    return root


@pytest.mark.parametrize("damage", ["truncate-hours", "truncate-trace", "garbage-info", "info-without-sizes",
                                    "delete-hours"])
def test_a_corrupt_cache_entry_is_rebuilt_with_a_notice(damage, cache, capsys) -> None:
    first = _source()
    expected = _hours(first)
    entry = first.week.dir
    assert (entry / "info.json").is_file()
    if damage == "truncate-hours":
        (entry / "hours.parquet").write_bytes((entry / "hours.parquet").read_bytes()[:100])
    elif damage == "truncate-trace":
        (entry / "trace.parquet").write_bytes(b"PAR1")
    elif damage == "garbage-info":
        (entry / "info.json").write_text("{not json")
    elif damage == "info-without-sizes":
        info = json.loads((entry / "info.json").read_text())
        info.pop("cache_files")
        (entry / "info.json").write_text(json.dumps(info))
    else:
        (entry / "hours.parquet").unlink()
    capsys.readouterr()
    again = _source()
    pd.testing.assert_frame_equal(_hours(again), expected)
    again.week.load(35.0, 15.0, 300.0)  # reads trace.parquet too
    err = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
    assert len(err) == 1 and err[0].startswith("notice: workload cache entry") and str(entry) in err[0], err
    capsys.readouterr()
    _hours(_source())  # rebuilt: the next read is silent
    assert capsys.readouterr().err == ""


def test_a_corrupt_load_file_is_recomputed(cache, capsys) -> None:
    src = _source()
    mean, peak = src.week.load(35.0, 15.0, 300.0)
    (path,) = src.week.dir.glob("load-*.parquet")
    path.write_bytes(b"garbage")
    capsys.readouterr()
    m2, p2 = _source().week.load(35.0, 15.0, 300.0)
    assert (m2 == mean).all() and (p2 == peak).all()
    assert "recomputing" in capsys.readouterr().err


def test_an_unwritable_cache_is_named_and_bypassed(tmp_path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("WARMSERVE_CACHE", str(blocker / "cache"))  # its parent is a file: mkdir fails
    src = _source()
    assert len(_hours(src)) > 0
    err = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
    assert len(err) == 1 and "not writable" in err[0] and str(blocker) in err[0], err
