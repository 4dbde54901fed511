"""The experiment catalog, its presets and the reproduction plan agree with each other."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from warmserve.config import REPO_ROOT, configs_dir
from warmserve.experiments.catalog import CATALOG, QUICK_SCALE
from warmserve.experiments.reproduce import steps


def test_every_preset_and_notebook_exists() -> None:
    for exp in CATALOG.values():
        assert (REPO_ROOT / "notebooks" / exp.notebook).is_file(), exp.notebook
        for preset in exp.presets:
            assert (configs_dir() / "experiment" / f"{preset}.yaml").is_file(), preset
        assert exp.presets or exp.script, f"{exp.name}: runs nothing"
        if exp.script:
            import importlib

            mod, fn = exp.script.split(":")
            assert callable(getattr(importlib.import_module(mod), fn)), exp.script


@pytest.mark.parametrize("preset", sorted({p for e in CATALOG.values() for p in e.presets}))
def test_preset_composes_and_writes_under_its_experiment(preset: str) -> None:
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        cfg = compose(config_name="run", overrides=[f"+experiment={preset}"], return_hydra_config=True)
    assert cfg.hydra.mode.name == "MULTIRUN"
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher")
    assert str(cfg.hydra.sweep.dir).startswith(f"results/{cfg.experiment}/")
    assert cfg.trace in (True, False) and cfg.force is False
    raw = OmegaConf.load(configs_dir() / "experiment" / f"{preset}.yaml")
    quick = [str(o) for o in raw.get("quick_overrides", [])]
    # quick mode shares the 10 % synthetic week (one cache entry) unless the preset has its own workload file
    if any("coldstart" in str(d) for d in raw.get("defaults", [])):
        assert not any("source.scale" in o for o in quick)
    else:
        assert f"workload.source.scale={QUICK_SCALE}" in [o.split("#")[0].strip() for o in quick]


def test_reproduction_plan_covers_workloads_experiments_and_notebooks() -> None:
    full = [s.name for s in steps(quick=False, force=False)]
    assert full[:2] == ["workload conv", "workload code"]
    assert full[2:-1] == list(CATALOG)
    assert full[-1] == "notebooks"
    quick = steps(quick=True, force=True)
    assert all("--quick" in s.cmd and "--force" in s.cmd for s in quick if s.name in CATALOG)
    assert any(f"source.scale={QUICK_SCALE}" in s.cmd for s in quick if s.name.startswith("workload"))


def test_unknown_experiment_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    from warmserve.experiments.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["run", "nope"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown experiment 'nope'" in err[0]


def test_run_directories_skip_when_finished(tmp_path: Path) -> None:
    """A finished run (every output present, summary.json parses) is skipped unless force=true
    (resumable sweeps); a directory with summary.json alone is not finished and is rerun."""
    import subprocess
    import sys

    out = tmp_path / "run"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    cmd = [sys.executable, "-m", "warmserve.run", "system=static", "workload=tiny", "cluster=tiny_1x4", f"out={out}"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert res.stdout.strip() == f"wrote {out}"
    summary = (out / "summary.json").read_text()
    assert summary != "{}"
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert res.stdout.strip() == f"skip {out}"
    assert (out / "summary.json").read_text() == summary
