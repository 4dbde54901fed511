"""Collect the runs of an experiment (``results/<experiment>/<run>/``) into tidy frames.

Notebooks read only ``results/``; this module is how. Each run directory holds
``run.json`` (the resolved config) and ``summary.json``; a directory that is
not finished (``warmserve.rundir.is_finished``, the resume check) is counted
as unfinished, not silently skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from warmserve.analysis.lineage import UNKNOWN_REVISION
from warmserve.errors import InputError
from warmserve.rundir import is_finished

# Config fields every table carries (dotted paths into run.json["config"]).
CONFIG_FIELDS = {
    "system": "system.name",
    "rps": "workload.rps",
    "alpha": "workload.alpha",
    "cv": "workload.cv",
    "trace": "workload.source.trace",
    "source": "workload.source.name",
    "models": "workload.models",
    "cluster": "cluster.name",
    "nodes": "cluster.nodes",
    "gpus_per_node": "cluster.gpus_per_node",
    "hardware": "hardware.name",
    "backend": "backend.name",
    "window_s": "window_s",
    "rel_error": "system.policy.forecaster.rel_error",
    "seed": "seed",
    "setting": "setting",  # configs/setting/<name> (paper4, contended); None for runs outside a setting
    "keep_alive_s": "system.policy.keep_alive_s",
    "slo_target": "slo.attainment",  # the declared share of requests that must meet the SLO (configs/run.yaml)
    "cold_scale": "hardware.lifecycle.cold_scale",  # start-up cost sensitivity (sens_lifecycle)
    "prewarm_mechanism": "hardware.lifecycle.prewarm_mechanism",  # vmm (the paper's design) or sleep (vLLM)
}


def _get(doc: dict[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _flatten(prefix: str, d: dict[str, Any], out: dict[str, Any]) -> None:
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            _flatten(f"{key}.", v, out)
        else:
            out[key] = v


@dataclass
class Runs:
    """All finished runs of one experiment."""

    overall: pd.DataFrame  # one row per run
    per_model: pd.DataFrame  # one row per (run, model)
    unfinished: list[str]  # run directories without summary.json / run.json


def _run_row(run_dir: Path, run: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    cfg = run.get("config", {})
    # the code that made the run: figures refuse to mix revisions unless allowed (analysis.lineage)
    row: dict[str, Any] = {"run": run_dir.name, "path": str(run_dir),
                           "git_revision": run.get("git_revision") or UNKNOWN_REVISION}
    for name, dotted in CONFIG_FIELDS.items():
        v = _get(cfg, dotted)
        row[name] = v if not isinstance(v, list | dict) else json.dumps(v)
    tags = cfg.get("tags") or {}
    if isinstance(tags, dict):
        row.update({f"tag.{k}": v for k, v in tags.items()})
    row["simulated"] = bool(extra.get("simulated", row.get("backend") == "sim"))
    backend = run.get("backend")
    desc: dict[str, Any] = backend if isinstance(backend, dict) else {}
    row["machine"] = desc.get("machine")  # real runs: the hardware measured on (hostname-free)
    row["stub"] = "stub" in str(desc.get("engine_module", ""))  # stub engines: a control-path check, no measurement
    return row


def load_runs(exp_dir: str | Path) -> Runs:
    """Read every ``<exp_dir>/*/summary.json`` with its ``run.json``."""
    exp_dir = Path(exp_dir)
    overall, per_model, unfinished = [], [], []
    if not exp_dir.is_dir():
        return Runs(pd.DataFrame(), pd.DataFrame(), [])
    for run_dir in sorted(p for p in exp_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        s_path, r_path = run_dir / "summary.json", run_dir / "run.json"
        if not is_finished(run_dir):  # the resume check: every output present, summary.json parses
            unfinished.append(run_dir.name)
            continue
        summary = json.loads(s_path.read_text())
        run = json.loads(r_path.read_text())
        base = _run_row(run_dir, run, summary)
        row = dict(base)
        _flatten("", summary.get("overall", {}), row)
        for k in ("slo", "replay_s", "end_s", "hardware", "simulated"):
            if k in summary:
                if isinstance(summary[k], dict):
                    _flatten(f"{k}.", summary[k], row)
                else:
                    row[k] = summary[k]
        overall.append(row)
        for model, stats in summary.get("per_model", {}).items():
            mrow = dict(base, model=model)
            _flatten("", stats, mrow)
            per_model.append(mrow)
    return Runs(pd.DataFrame(overall), pd.DataFrame(per_model), unfinished)


class MissingResults(AssertionError):
    """An experiment a notebook needs has no finished runs: the notebook must stop, loudly."""


def require_runs(exp_dir: str | Path, *, what: str = "") -> Runs:
    """``load_runs`` that fails with one clear line when the experiment has no finished run.

    Notebooks call this instead of ``load_runs`` so an empty ``results/<exp>``
    stops the notebook (and ``run_notebooks.py``) with the command that fills
    it, rather than drawing an empty figure. Unfinished runs are reported.
    """
    exp_dir = Path(exp_dir)
    runs = load_runs(exp_dir)
    if runs.overall.empty:
        name = what or exp_dir.name
        raise MissingResults(
            f"no finished runs in {exp_dir} ({len(runs.unfinished)} unfinished); "
            f"run: python -m warmserve.experiments run {name} [--quick]"
        )
    if runs.unfinished:
        print(f"note: {len(runs.unfinished)} unfinished run(s) in {exp_dir} not shown: {runs.unfinished}")
    return runs


def run_config(run_path: str | Path) -> dict[str, Any]:
    """The resolved config of one run (``run.json["config"]``)."""
    return json.loads((Path(run_path) / "run.json").read_text()).get("config", {})


def config_value(run_path: str | Path, dotted: str) -> Any:
    """One field of a run's resolved config by dotted path (``None`` when absent)."""
    return _get(run_config(run_path), dotted)


REQUEST_COLUMNS_FOR_SLO = ("model", "status", "ttft_s", "tpot_s")


def read_requests(run_path: str | Path, columns: tuple[str, ...] | list[str] | None = None) -> pd.DataFrame:
    """A run's ``requests.parquet`` (only ``columns`` when given), categoricals as plain strings."""
    path = Path(run_path) / "requests.parquet"
    if not path.is_file():
        raise InputError(f"{path}: missing (the run has a summary but no request log)")
    df = pd.read_parquet(path, columns=list(columns) if columns else None)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df


def read_timeline(run_path: str | Path) -> pd.DataFrame:
    """A run's ``timeline.parquet``, categoricals as plain strings."""
    path = Path(run_path) / "timeline.parquet"
    if not path.is_file():
        raise InputError(f"{path}: missing (the run has a summary but no timeline)")
    df = pd.read_parquet(path)
    for c in df.columns:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            df[c] = df[c].astype(str)
    return df
