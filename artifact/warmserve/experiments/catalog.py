"""The paper's experiments: what each runs, which claim it tests, which notebook draws it.

An experiment runs one or more Hydra multirun presets in
``configs/experiment/`` over ``python -m warmserve.run``, a Python function
writing ``results/<name>/`` (the capacity searches, the forecast study), or
both (presets first). ``run_all.sh``
runs them in catalog order, then the notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Synthetic-week volume in quick mode (QUICK=1; full = 1.0, the real week's 27.3 M / 16.8 M rows).
# The presets' quick_overrides set workload.source.scale to the same value, so the cache is shared.
QUICK_SCALE = 0.1


@dataclass(frozen=True)
class Experiment:
    name: str
    claim: str  # which claim of the paper it tests
    notebook: str
    presets: tuple[str, ...] = ()  # configs/experiment/<preset>.yaml (Hydra multirun), run first
    script: str | None = None  # "module:function" (argv -> exit code), run after the presets
    notes: tuple[str, ...] = field(default_factory=tuple)


CATALOG: dict[str, Experiment] = {
    e.name: e
    for e in (
        Experiment(
            "main",
            "up to 50.8x lower tail (P99) TTFT than an autoscaling system (ServerlessLLM)",
            "02_main.ipynb",
            presets=("main", "main_contended", "main_keepalive", "main_sleep"),
        ),
        Experiment(
            "capacity",
            "up to 2.5x more requests served under an SLO than a GPU-sharing system (MuxServe)",
            "03_capacity.ipynb",
            script="warmserve.experiments.capacity_search:main",
        ),
        Experiment(
            "ablation",
            "each mechanism (worker prewarm, forecast prewarm, evict-aware placement, KV reservation) contributes",
            "04_ablation.ipynb",
            presets=("ablation",),
        ),
        Experiment(
            "sensitivity",
            "the advantage holds across popularity skew, burstiness, forecast window and error, #models, cluster size",
            "05_sensitivity.ipynb",
            presets=("sens_alpha", "sens_cv", "sens_window", "sens_error", "sens_models", "sens_cluster"),
        ),
        Experiment(
            "lifecycle",
            "the two claims hold across engine start-up costs (x0.5 to x2 of the published ones) and both prewarm "
            "mechanisms (the paper's memory switching, upstream vLLM sleep mode)",
            "05_sensitivity.ipynb",
            presets=("sens_lifecycle",),
            script="warmserve.experiments.capacity_search:lifecycle",
        ),
        Experiment(
            "timeline",
            "prewarming follows the forecast load: replicas are in place before bursts",
            "07_timeline.ipynb",
            presets=("timeline",),
        ),
        Experiment(
            "coldstart",
            "prewarmed starts take well under a second instead of tens of seconds",
            "08_coldstart.ipynb",
            presets=("coldstart",),
        ),
        Experiment(
            "forecast",
            "5-minute load is predictable (the paper reports 7.3 % mean relative error for peaks)",
            "10_forecast.ipynb",
            script="warmserve.experiments.forecast_study:main",
        ),
    )
}
# The compromise figure (TTFT vs GPU-seconds; notebook 09_compromise) reads results/main: no runs of its own.
