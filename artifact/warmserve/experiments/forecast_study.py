"""Forecast-error study: every forecaster, as the system uses it, on the replayed hours.

For each workload (conv and code week, models=paper4, alpha=2, seeds below)
each forecaster is fit on what it may see (priors / the week before the
replayed hour) and then walked through the replayed hour one window at a time
exactly as a system does: predict the next window's mean and peak in-flight
requests, then observe the true window. The truth is the replayed workload's
per-window concurrency under the published service-time proxy (prefill +
output x decode; docs/reference.md §2.4), the same quantity the priors
measure. Output: ``results/forecast/errors.parquet`` (one row per model,
window, forecaster) and ``fit_cost.parquet`` (seconds to fit). The notebook
10_forecast turns it into the error table next to the paper's 7.3 %.

``oracle`` is included as a check of the harness: its error must be 0.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from hydra.utils import instantiate
from omegaconf import OmegaConf

from warmserve.atomic import atomic_output_dir
from warmserve.config import REPO_ROOT, configs_dir, model_specs
from warmserve.control.features import BackendFeatures
from warmserve.control.policy import PolicyInputs
from warmserve.experiments.catalog import QUICK_SCALE
from warmserve.forecast.history import workload_concurrency
from warmserve.workload.api import build_workload

FORECASTERS_FULL = ("paper", "naive", "holt_winters", "sarimax", "oracle")
FORECASTERS_QUICK = ("paper", "naive", "oracle")
TRACES_FULL = ("conv", "code")
SEEDS_FULL = (42,)


def _forecaster(name: str):
    return instantiate(OmegaConf.load(configs_dir() / "forecaster" / f"{name}.yaml"))


def study(traces: tuple[str, ...], seeds: tuple[int, ...], forecasters: tuple[str, ...],
          scale: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    rows, costs = [], []
    for trace in traces:
        for seed in seeds:
            cfg = OmegaConf.load(configs_dir() / "workload" / f"{trace}.yaml")
            cfg.seed = seed
            if scale is not None:
                cfg.source.scale = scale
            bundle = build_workload(cfg)
            specs = model_specs(cfg.models)
            window_s = float(cfg.window_s)
            requests = bundle.requests
            truth = workload_concurrency(requests, specs, window_s)
            n_win = min(len(v[0]) for v in truth.values())
            n_win = min(n_win, int(bundle.priors["window"].max()) + 1)
            # no system here, only forecasters: no hardware, no backend features
            inputs = PolicyInputs(models=specs, nodes=1, gpus_per_node=8, hardware=None, features=BackendFeatures(),
                                  window_s=window_s, seed=seed, priors=bundle.priors, week_load=bundle.week_load,
                                  workload=requests)
            for fname in forecasters:
                f = _forecaster(fname)
                t0 = time.perf_counter()
                f.fit(inputs)
                costs.append({"trace": trace, "seed": seed, "forecaster": fname, "fit_s": time.perf_counter() - t0})
                for w in range(n_win):
                    pred = f.predict()
                    obs = {m: (float(truth[m][0][w]), float(truth[m][1][w])) for m in specs}
                    for m in specs:
                        rows.append({"trace": trace, "seed": seed, "forecaster": fname, "model": m, "window": w,
                                     "pred_mean": pred[m].mean, "pred_peak": pred[m].peak,
                                     "true_mean": obs[m][0], "true_peak": obs[m][1],
                                     "synthetic": bool(bundle.meta.get("synthetic", False))})
                    f.observe(obs)
    errors = pd.DataFrame(rows)
    for s in ("mean", "peak"):
        true = errors[f"true_{s}"].to_numpy(float)
        pred = errors[f"pred_{s}"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            errors[f"rel_err_{s}"] = np.where(true > 0, np.abs(pred - true) / true, np.nan)
    return errors, pd.DataFrame(costs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m warmserve.experiments.forecast_study")
    p.add_argument("--quick", action="store_true", help="conv only, one seed, cheap forecasters")
    p.add_argument("--force", action="store_true")
    p.add_argument("--out", default=str(REPO_ROOT / "results" / "forecast"))
    a = p.parse_args(argv)
    out = Path(a.out)
    if (out / "errors.parquet").is_file() and not a.force:
        print(f"skip {out}")
        return 0
    if a.quick:
        errors, costs = study(("conv",), (42,), FORECASTERS_QUICK, scale=QUICK_SCALE)
    else:
        errors, costs = study(TRACES_FULL, SEEDS_FULL, FORECASTERS_FULL)
    with atomic_output_dir(out) as stage:
        errors.to_parquet(stage / "errors.parquet", index=False)
        costs.to_parquet(stage / "fit_cost.parquet", index=False)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
