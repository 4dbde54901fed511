"""The workload layer's public API: build a workload from a config, save and load it.

``build_workload(cfg)`` takes a run preset (``configs/workload/*.yaml``) or the
CLI config; missing recipe keys come from ``configs/workload/_defaults.yaml``
(the published constants, with their sources). It returns a ``WorkloadBundle``:
the sampled hour (``requests``, all of it; ``replay_slice`` gives what a run
replays), the replayed hour's priors, the week load for forecasters and a
``meta`` dict that says where everything came from (``synthetic`` and
``label`` included). Column contracts: ``warmserve.workload.schema``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from warmserve.atomic import atomic_output_dir
from warmserve.config import configs_dir, model_checkpoint, model_mix
from warmserve.errors import InputError
from warmserve.workload import history, recipe, schema
from warmserve.workload.export import write_jsonl
from warmserve.workload.recipe import HOUR_S, replay_slice
from warmserve.workload.sources import Source, open_source

__all__ = ["WorkloadBundle", "build_workload", "load_bundle", "replay_slice", "save_bundle"]

MANIFEST = "manifest.json"


@dataclass
class WorkloadBundle:
    requests: pd.DataFrame
    priors: pd.DataFrame
    week_load: pd.DataFrame | None
    models: list[str]
    meta: dict = field(default_factory=dict)

    @property
    def replayed(self) -> pd.DataFrame:
        """The part a run replays (``replay_s``, ``output_cap`` from ``meta``)."""
        return replay_slice(self.requests, self.meta["replay_s"], self.meta["output_cap"])


def recipe_defaults() -> DictConfig:
    cfg = OmegaConf.load(configs_dir() / "workload" / "_defaults.yaml")
    assert isinstance(cfg, DictConfig)
    return cfg


def _resolve(cfg) -> DictConfig:
    if not isinstance(cfg, DictConfig):
        cfg = OmegaConf.create(cfg)
    merged = OmegaConf.merge(recipe_defaults(), cfg)
    assert isinstance(merged, DictConfig)
    if merged.get("seed") is None:  # a preset's "the run's seed" outside a run: the recipe's own default
        merged.seed = recipe_defaults().seed
    return merged


def _service(base: str) -> tuple[float, float]:
    ck = model_checkpoint(base)
    return float(ck.prefill_ms), float(ck.decode_ms)


def _checked(cfg: DictConfig) -> tuple[list[dict], float, float, int, int]:
    models = cfg.models
    mix = model_mix(models if isinstance(models, str) else cast(list, OmegaConf.to_container(models)))  # inline list
    alpha, rps = float(cfg.alpha), float(cfg.rps)
    recipe.check_params(len(mix), alpha, rps)
    window_s = float(cfg.window_s)
    if window_s <= 0 or HOUR_S % window_s:
        raise InputError(f"window_s must divide an hour (3600 s), got {window_s}")
    if cfg.prior_scaling not in history.PRIOR_SCALINGS:
        raise InputError(f"prior_scaling must be one of {history.PRIOR_SCALINGS}, got '{cfg.prior_scaling}'")
    if cfg.cv is not None and float(cfg.cv) < 0:
        raise InputError(f"cv must be >= 0 or null, got {cfg.cv}")
    return mix, alpha, rps, int(cfg.seed), int(HOUR_S // window_s)


def build_workload(cfg) -> WorkloadBundle:
    """Build the workload described by ``cfg`` (see the module doc); raises ``InputError`` on bad input."""
    cfg = _resolve(cfg)
    mix, alpha, rps, seed, hour_windows = _checked(cfg)
    names = [e["name"] for e in mix]
    clock = time.perf_counter()
    src = open_source(cfg.source)
    if src.week is not None:
        src.week.info  # noqa: B018 -- load/parse (or read the cache) now, so the timing below is per stage
    timings = {"load_s": time.perf_counter() - clock}
    window_s = float(cfg.window_s)
    per_model: dict[str, dict] = {}
    week_parts: list[pd.DataFrame] = []
    prior_parts: list[pd.DataFrame] = []
    replay_day: dict[str, int | None] = {}

    if src.kind == "requests":
        requests, prior_parts = _from_requests(src, names, mix, window_s, hour_windows)
        prior_kind = "same-hour load of the given requests (no earlier days; sees the replayed hour)"
    else:
        n = recipe.counts(len(mix), alpha, rps)
        days: Sequence[int | None]
        if src.kind == "week":
            assert src.week is not None  # set for kind "week"
            days = recipe.replay_days(len(mix))
            have = [d for d in src.week.info["days_with_rows"] if d < recipe.DAYS_PER_WEEK]
            if len(have) < recipe.DAYS_PER_WEEK:
                raise InputError(
                    f"source trace has rows on {len(have)} of the {recipe.DAYS_PER_WEEK} week days "
                    f"(days {have}, Monday = 0); "
                    f"the recipe needs all {recipe.DAYS_PER_WEEK} (models replay days {days}, "
                    "priors use the days before)"
                )
            hours = [src.week.hour(d) for d in days]
            prior_kind = "published: same windows on earlier days of the source week, scaled"
        else:
            days = [None] * len(mix)
            hours = [src.hour] * len(mix)
            prior_kind = "same-hour load of the source hour (no earlier days; sees the replayed hour), scaled"
        draws = [recipe.draw(name, len(h), n_i, seed + i)
                 for i, (name, h, n_i) in enumerate(zip(names, hours, n, strict=True))]
        requests = recipe.assemble(hours, draws, int(cfg.input_cap), int(cfg.output_floor))
        timings["recipe_s"] = time.perf_counter() - clock - timings["load_s"]
        for e, d, day, h in zip(mix, draws, days, hours, strict=True):
            scale = history.scale_factor(d.n, d.rows, d.dup, str(cfg.prior_scaling))
            prefill, decode = _service(e["base"])
            replay_day[d.model] = day
            per_model[d.model] = {"n": d.n, "rows": d.rows, "dup": d.dup, "scale": scale, "replay_day": day,
                                  "base": e["base"]}
            if src.kind == "week":
                assert src.week is not None and day is not None  # both set for kind "week"
                mean, peak = src.week.load(prefill, decode, window_s)
                prior_parts.append(history.priors_from_week(d.model, mean, peak, scale, day, window_s, hour_windows))
                week_parts.append(history.week_frame(d.model, mean, peak, scale, window_s, day, hour_windows))
            else:
                mean, peak = history.inflight_load(
                    h["t_s"].to_numpy(), h["output_tokens"].to_numpy(), prefill, decode, window_s, hour_windows
                )
                prior_parts.append(history.priors_same_hour(d.model, mean, peak, scale))
    timings["total_s"] = time.perf_counter() - clock
    if "recipe_s" in timings:
        timings["history_s"] = timings["total_s"] - timings["load_s"] - timings["recipe_s"]
    if cfg.cv is not None:
        requests = recipe.reshape_cv(requests, float(cfg.cv), seed)
    requests = schema.as_requests(requests)
    priors = schema.as_priors(pd.concat(prior_parts, ignore_index=True))
    week_load = schema.as_week_load(pd.concat(week_parts, ignore_index=True)) if week_parts else None
    meta = _meta(cfg, src, names, per_model, replay_day, prior_kind, requests, alpha, rps, seed)
    meta["build_timings_s"] = timings
    return WorkloadBundle(requests=requests, priors=priors, week_load=week_load, models=names, meta=meta)


def _from_requests(src: Source, names: list[str], mix: list[dict], window_s: float, hour_windows: int):
    df = src.requests
    assert df is not None  # set for kind "requests"
    unknown = sorted(set(df["model"]) - set(names))
    if unknown:
        raise InputError(f"source.path: model name(s) {unknown} are not in models {names}")
    req = df.assign(request_id=np.arange(len(df), dtype=np.int64))
    priors = []
    for e in mix:
        sub = req[req["model"] == e["name"]]
        prefill, decode = _service(e["base"])
        mean, peak = history.inflight_load(
            sub["arrival_s"].to_numpy(), sub["output_tokens"].to_numpy(), prefill, decode, window_s, hour_windows
        )
        priors.append(history.priors_same_hour(e["name"], mean, peak, 1.0))
    return req, priors


def _meta(cfg, src: Source, names, per_model, replay_day, prior_kind, requests, alpha, rps, seed) -> dict:
    counts = {k: v for k, v in src.counts().items() if isinstance(v, int | float | str | bool) or v is None}
    source_cfg = OmegaConf.to_container(cfg.source, resolve=True) if isinstance(cfg.source, DictConfig) else cfg.source
    models_cfg = OmegaConf.to_container(cfg.models, resolve=True) if not isinstance(cfg.models, str) else cfg.models
    return {
        "source": source_cfg,
        "source_name": src.name,
        "source_kind": src.kind,
        "synthetic": bool(src.synthetic),
        "label": src.label,
        "alpha": alpha,
        "rps": rps,
        "seed": seed,
        "cv": None if cfg.cv is None else float(cfg.cv),
        "models": models_cfg,
        "model_names": names,
        "replay_day": replay_day,
        "per_model": per_model,
        "window_s": float(cfg.window_s),
        "prior_scaling": str(cfg.prior_scaling),
        "prior_kind": prior_kind,
        "replay_s": float(cfg.replay_s),
        "output_cap": int(cfg.output_cap),
        "input_cap": int(cfg.input_cap),
        "output_floor": int(cfg.output_floor),
        "n_requests": int(len(requests)),
        "n_replayed": int((requests["arrival_s"].to_numpy() < float(cfg.replay_s)).sum()),
        "source_counts": counts,
    }


def save_bundle(bundle: WorkloadBundle, out_dir, export_jsonl: bool = False) -> Path:
    """Write workload.parquet, history.parquet, week_load.parquet (if any), manifest.json and, with
    ``export_jsonl``, workload.jsonl (``warmserve.workload.export``), all or nothing."""
    with atomic_output_dir(out_dir) as stage:
        bundle.requests.to_parquet(stage / "workload.parquet", index=False)
        bundle.priors.to_parquet(stage / "history.parquet", index=False)
        files = ["workload.parquet", "history.parquet"]
        if bundle.week_load is not None:
            bundle.week_load.to_parquet(stage / "week_load.parquet", index=False)
            files.append("week_load.parquet")
        if export_jsonl:
            write_jsonl(bundle.requests, stage / "workload.jsonl")
            files.append("workload.jsonl")
        manifest = {
            **bundle.meta,
            "models": bundle.models,
            "models_config": bundle.meta.get("models"),
            "files": files + [MANIFEST],
            "rows": {
                "workload": int(len(bundle.requests)),
                "history": int(len(bundle.priors)),
                "week_load": None if bundle.week_load is None else int(len(bundle.week_load)),
            },
        }
        (stage / MANIFEST).write_text(json.dumps(manifest, indent=1, default=_json_default) + "\n")
    return Path(out_dir)


def _json_default(o):
    if isinstance(o, np.integer | np.floating):
        return o.item()
    return str(o)


def load_bundle(path) -> WorkloadBundle:
    """Read what ``save_bundle`` wrote (validated against ``schema``)."""
    d = Path(path)
    mpath = d / MANIFEST
    if not mpath.is_file():
        raise InputError(f"not a workload directory (no {MANIFEST}): {d}")
    manifest = json.loads(mpath.read_text())
    for f in ("workload.parquet", "history.parquet"):
        if not (d / f).is_file():
            raise InputError(f"workload directory {d} is missing {f}")
    requests = schema.as_requests(pd.read_parquet(d / "workload.parquet"))
    priors = schema.as_priors(pd.read_parquet(d / "history.parquet"))
    wl = d / "week_load.parquet"
    week_load = schema.as_week_load(pd.read_parquet(wl)) if wl.is_file() else None
    meta = dict(manifest)
    meta["models"] = manifest.get("models_config", manifest["models"])
    return WorkloadBundle(requests=requests, priors=priors, week_load=week_load, models=list(manifest["models"]),
                          meta=meta)
