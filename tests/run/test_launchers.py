"""Sweeps beyond one process: the submitit launcher (Slurm on a cluster) runs a two-point sweep
through its local executor, the same code path a Slurm job array takes, and each point writes a
whole run directory."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from warmserve.config import REPO_ROOT

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="hydra-submitit-launcher not installed")


def test_submitit_local_two_point_sweep(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "warmserve.run", "-m", "hydra/launcher=submitit_local",
           f"hydra.sweep.dir={tmp_path / '.hydra'}", "hydra.launcher.timeout_min=5",
           "system=static,reactive", "workload=tiny", "replay_s=60", "trace=false",
           f"out={tmp_path}/" + "${system.name}"]
    res = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    for system in ("static", "reactive"):
        summary = json.loads((tmp_path / system / "summary.json").read_text())
        assert summary["system"] == system and summary["overall"]["ok"] > 0
