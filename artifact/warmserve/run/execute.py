"""``execute(cfg)``: build the workload, the system and a backend, replay, write the run.

Steps (everything that can be wrong with the input is checked before any
file is written; outputs appear atomically in ``cfg.out``):

0. the config against the schema (``warmserve.validation.checks.check_run``)
   and the output path (``warmserve.atomic.check_output_dir``), before the
   workload is built;
1. the workload: ``warmserve.workload.api.build_workload(cfg.workload)`` and
   ``replay_slice(requests, replay_s, output_cap)`` (or a ``workload=``
   DataFrame passed in, for tests and sweeps that make their own);
2. model specs (``cfg.models`` if set, else the bundle's), and the check that
   every model the workload names is configured;
3. ``PolicyInputs`` -> the system's policy (``cfg.system.policy``), its
   ``BackendFeatures`` (``cfg.system.features``) -> the backend
   (``cfg.backend``) -> the ``Controller``;
4. ``backend.replay`` until every request ended or ``replay_s + drain_s``;
   the policy's forecast is recorded in the timeline at every window boundary;
5. ``requests.parquet``, ``timeline.parquet``, ``utilization.parquet``,
   ``run.json``, ``summary.json``, ``trace.json``.

Every run key is read from the config as it is (``configs/run.yaml`` is its one
home, validated first); a missing key is an ``InputError`` naming it.

Drain: after the last arrival the run continues ``drain_s`` (``configs/run.yaml``:
1800 s, the published client's per-request timeout, docs/reference.md §2.7) so in-flight
requests can finish; whatever is still unserved then is a ``timeout`` row.
"""

from __future__ import annotations

import importlib.metadata
import math
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from warmserve.atomic import atomic_output_dir, check_output_dir
from warmserve.config import REPO_ROOT, model_specs
from warmserve.control.controller import Controller
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import PolicyInputs
from warmserve.control.seam import ModelSpec
from warmserve.errors import InputError
from warmserve.hardware import load_profile
from warmserve.metrics.schema import TimelineRow, constant_categorical, timeline_row
from warmserve.metrics.summary import summarize
from warmserve.metrics.writers import write_run
from warmserve.run.progress import Progress
from warmserve.rundir import is_run_output
from warmserve.validation.checks import check_run
from warmserve.workload.api import build_workload, recipe_defaults, replay_slice

# Published replay length (1200 s) and output cap (1023), from configs/workload/_defaults.yaml (docs/reference.md §2.7).
_RECIPE = recipe_defaults()



@dataclass(slots=True)
class Workload:
    """What a run replays (a ``WorkloadBundle`` reduced to what the runner needs)."""

    requests: pd.DataFrame
    models: dict[str, ModelSpec]
    priors: pd.DataFrame | None = None
    week_load: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)


_ABSENT = object()


def _need(cfg: DictConfig, key: str) -> Any:
    """``cfg.<key>`` (null included); a missing key is an ``InputError``. The YAML (``configs/run.yaml``) and the
    schema (``warmserve.validation.schema.Run``, checked before any work) are the one home of every value, so
    nothing here repeats a default."""
    v = OmegaConf.select(cfg, key, default=_ABSENT)
    if v is _ABSENT:
        raise InputError(f"{key}: missing from the run config (configs/run.yaml sets it)")
    return v


def _workload_key(cfg: DictConfig, meta: dict[str, Any], key: str, recipe: float) -> Any:
    """A recipe value: the built workload's ``meta``, else ``cfg.workload``, else the recipe defaults
    (``configs/workload/_defaults.yaml``; for a workload passed in as a DataFrame without a ``workload`` group)."""
    if key in meta:
        return meta[key]
    v = OmegaConf.select(cfg, f"workload.{key}", default=None)
    return recipe if v is None else v


def _replay_s(cfg: DictConfig, meta: dict[str, Any]) -> float:
    """``replay_s`` of the run; null = the workload's replay length."""
    v = _need(cfg, "replay_s")
    return float(v if v is not None else _workload_key(cfg, meta, "replay_s", _RECIPE.replay_s))


def _specs(value: Any) -> dict[str, ModelSpec]:
    """Model specs from a mix name, an inline list, a dict of specs or a list of served names."""
    if isinstance(value, dict) and all(isinstance(v, ModelSpec) for v in value.values()):
        return dict(value)
    if isinstance(value, str):
        return model_specs(value)
    if OmegaConf.is_config(value):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return model_specs(value)
    raise InputError(f"models: cannot resolve model specs from {value!r}; set models=<configs/models name>")


def load_workload(cfg: DictConfig) -> Workload:
    """Build the replayed workload from ``cfg.workload`` through the workload package.

    ``workload.seed: null`` (the presets' default) takes the run's ``seed``, so a seed sweep
    replays different request samples; the effective seed is written back into ``cfg`` so
    ``run.json`` records it.
    """
    if OmegaConf.select(cfg, "workload.seed", default=None) is None and OmegaConf.select(cfg, "workload") is not None:
        with open_dict(cfg):
            cfg.workload.seed = int(_need(cfg, "seed"))
    bundle = build_workload(cfg.workload)
    meta = dict(bundle.meta or {})
    replay_s = _replay_s(cfg, meta)
    cap = int(_workload_key(cfg, meta, "output_cap", _RECIPE.output_cap))
    requests = replay_slice(bundle.requests, replay_s, cap)
    mix = OmegaConf.select(cfg, "models", default=None)
    if mix is None:
        mix = OmegaConf.select(cfg, "workload.models", default=None)
    if mix is None:
        raise InputError("models: the workload names no model mix; set models=<configs/models name>")
    specs = _specs(mix)
    names = [str(m) for m in (bundle.models or list(specs))]
    unknown = [m for m in names if m not in specs]
    if unknown:
        raise InputError(f"workload.models: {unknown} not in the model mix {list(specs)}")
    specs = {m: specs[m] for m in names}
    meta.setdefault("replay_s", replay_s)
    return Workload(requests=requests, models=specs, priors=bundle.priors, week_load=bundle.week_load, meta=meta)


def _check_workload(w: Workload) -> None:
    for col in ("request_id", "arrival_s", "model", "input_tokens", "output_tokens"):
        if col not in w.requests.columns:
            raise InputError(f"workload: missing column '{col}'")
    named = set(pd.unique(w.requests["model"].astype(str)))
    missing = sorted(named - set(w.models))
    if missing:
        raise InputError(f"workload.model: {missing} not in the configured models {list(w.models)}")


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=5, check=False).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("warmserve", "numpy", "pandas", "pyarrow", "hydra-core", "omegaconf"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[pkg] = "missing"
    return out


def build(cfg: DictConfig, w: Workload) -> tuple[Any, Any, Controller, BackendFeatures]:
    """Backend, policy and controller for a config and a workload (all input checks happen here)."""
    _check_workload(w)
    cluster = cfg.cluster
    features = BackendFeatures.from_config(OmegaConf.select(cfg, "system.features"))
    seed = int(_need(cfg, "seed"))
    backend = instantiate(cfg.backend, _partial_=True)(
        models=w.models, cluster=cluster, hardware=cfg.hardware, features=features, seed=seed)
    inputs = PolicyInputs(
        models=w.models, nodes=backend.state.nodes, gpus_per_node=backend.state.gpus_per_node,
        hardware=load_profile(cfg.hardware), features=features, window_s=float(_need(cfg, "window_s")), seed=seed,
        priors=w.priors, week_load=w.week_load, workload=w.requests)
    policy = instantiate(cfg.system.policy, _partial_=True)(inputs=inputs)
    controller = Controller(backend, policy, list(w.models))
    return backend, policy, controller, features


def run_replay(cfg: DictConfig, w: Workload) -> Path:
    """Replay ``w`` under ``cfg`` and write the run into ``cfg.out`` (atomically)."""
    if not _need(cfg, "out"):
        raise InputError("out: no output directory given (out=<dir>)")
    out = check_output_dir(str(cfg.out), owned=is_run_output)
    wall0 = time.perf_counter()
    backend, policy, controller, features = build(cfg, w)
    replay_s = _replay_s(cfg, w.meta)
    last = float(w.requests["arrival_s"].max()) if len(w.requests) else 0.0
    replay_s = max(replay_s, last) if math.isfinite(replay_s) else last
    drain_s = float(_need(cfg, "drain_s"))
    window_s = float(_need(cfg, "window_s"))
    if drain_s < 0 or window_s <= 0:
        raise InputError("drain_s must be >= 0 and window_s > 0")
    until = replay_s + drain_s
    forecasts: list[TimelineRow] = []

    # The policy closes a window on its first tick at or after the boundary; record one tick
    # later so the logged forecast is the one made for the new window (not the old one).
    lag_s = float(policy.tick_interval_s)

    def record_forecast() -> None:
        snap = policy.forecast_snapshot()
        t = backend.clock.now()
        for model, (mean, peak) in snap.items():
            forecasts.append(timeline_row(t, "forecast", model, mean=float(mean), peak=float(peak)))
        nxt = (math.floor(t / window_s) + 1) * window_s + lag_s
        if nxt <= until:
            backend.clock.call_later(nxt - t, record_forecast)

    with Progress(total_s=until, enabled=_need(cfg, "progress")) as bar:
        info = backend.replay(w.requests, controller, until, on_start=record_forecast, progress=bar.update)
    replay_wall = time.perf_counter() - wall0
    requests = backend.request_log()
    requests["system"] = constant_categorical(str(_need(cfg, "system.name")), len(requests))
    timeline = backend.timeline()
    if forecasts:
        fc = pd.DataFrame(forecasts, columns=list(timeline.columns))
        timeline = pd.concat([timeline.astype({c: object for c in timeline.columns if
                                                isinstance(timeline[c].dtype, pd.CategoricalDtype)}),
                              fc], ignore_index=True).sort_values("t_s", kind="stable", ignore_index=True)
    util = backend.utilization(float(_need(cfg, "utilization_interval_s")))
    desc = backend.describe()
    summary = summarize(
        requests, timeline, end_s=info.end_s, replay_s=replay_s,
        slo_ttft_s=float(_need(cfg, "slo.ttft_s")), slo_tpot_s=float(_need(cfg, "slo.tpot_s")),
        extra={"simulated": bool(desc.get("simulated", False)), "hardware_profile": desc.get("hardware_profile"),
               "system": requests["system"].iloc[0] if len(requests) else str(_need(cfg, "system.name")),
               "notes": list(getattr(policy, "notes", []))})
    run_doc = {
        "name": str(_need(cfg, "name")),
        "config": OmegaConf.to_container(cfg, resolve=True),
        "seed": int(_need(cfg, "seed")),
        "git_revision": _git_rev(),
        "versions": _versions(),
        "backend": desc,
        "features": features.as_dict(),
        "workload_meta": w.meta,
        "replay": {"replay_s": replay_s, "drain_s": drain_s, "end_s": info.end_s, "requests": info.requests,
                   "unfinished_at_end": info.unfinished, "events": info.events, "extra": info.extra},
        "wall_s": {"replay": replay_wall, "total": None},
        "argv": sys.argv,
    }
    with atomic_output_dir(out) as stage:
        run_doc["wall_s"]["total"] = time.perf_counter() - wall0
        write_run(stage, requests=requests, timeline=timeline, utilization=util, run=run_doc, summary=summary,
                  gpus_per_node=int(backend.state.gpus_per_node), end_s=info.end_s,
                  trace=bool(_need(cfg, "trace")))
    return out


def execute(cfg: DictConfig, *, workload: Workload | None = None) -> Path:
    """Run one config (Hydra-composed ``configs/run.yaml``); returns the output directory."""
    check_run(cfg, with_workload=workload is None)
    check_output_dir(str(cfg.out), owned=is_run_output)
    w = workload if workload is not None else load_workload(cfg)
    return run_replay(cfg, w)
