"""One run of ``configs/run.yaml`` in this process, from Hydra overrides: what searches call.

A Hydra multirun pays a Python start, a compose and a workload build per run.
A capacity search probes rates one after another and decides the next rate
from the last result, so it cannot be a multirun sweep; it calls
:func:`run_point` instead, which composes the same config the CLI would
(``python -m warmserve.run <overrides>``), runs it with
:func:`warmserve.run.execute.execute`, and returns the summary. A finished run
directory (``warmserve.rundir.is_finished``) is read back instead of rerun, so an
interrupted search resumes where it stopped, exactly as a sweep does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from warmserve.config import configs_dir
from warmserve.run.execute import execute
from warmserve.rundir import is_finished


def compose_run(overrides: list[str]) -> DictConfig:
    """``configs/run.yaml`` composed with ``overrides``, as ``python -m warmserve.run`` would."""
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        return compose("run", overrides=overrides)


def finished(out: Path) -> bool:
    """The one resume check of every run directory (``warmserve.rundir.is_finished``)."""
    return is_finished(out)


def run_point(overrides: list[str], out: Path, *, force: bool = False) -> dict[str, Any]:
    """Run (or read back) one point; returns its ``summary.json`` as a dict."""
    if force or not finished(out):
        execute(compose_run([*overrides, f"out={out}", "progress=false"]))
    return json.loads((out / "summary.json").read_text())
