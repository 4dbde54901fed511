"""Readable names, a fixed order and a fixed colour per system, shared by every figure.

A system keeps one colour across all notebooks so a reader can compare
figures at a glance; orders follow the paper's story (WarmServe first, then the
baselines; the ablation chain in the order mechanisms are added).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TypedDict

import pandas as pd
import seaborn as sns

from warmserve.control.probe import KINDS as PROBE_KIND_ORDER

SYSTEM_LABELS: dict[str, str] = {
    "warmserve": "WarmServe",
    "serverlessllm": "ServerlessLLM-style",
    "muxserve": "MuxServe-style",
    "reactive": "reactive autoscaling",
    "static": "static (dedicated)",
    "oracle": "WarmServe + oracle forecast",
    "worker_prewarm": "+ worker/engine prewarm",
    "warmserve_no_prediction": "+ keep weights (no forecast)",
    "ablation_forecast_rr": "+ forecast prewarm (round-robin)",
    "warmserve_no_kv": "+ evict-aware placement",
    "warmserve_round_robin": "WarmServe, round-robin placement",
    "probe_cold": "cold",
    "probe_worker": "worker prewarmed",
    "probe_prewarmed": "weights prewarmed",
    "probe_warm": "warm",
}

# The main comparison, WarmServe first.
MAIN_ORDER: tuple[str, ...] = ("warmserve", "serverlessllm", "muxserve", "reactive", "static")

# The cumulative ablation chain (configs/experiment/ablation.yaml), labels say what each step adds.
ABLATION_ORDER: tuple[str, ...] = (
    "reactive",
    "worker_prewarm",
    "warmserve_no_prediction",
    "ablation_forecast_rr",
    "warmserve_no_kv",
    "warmserve",
    "oracle",
)
ABLATION_LABELS: dict[str, str] = {
    "reactive": "vanilla reactive",
    "worker_prewarm": "+ worker/engine prewarm",
    "warmserve_no_prediction": "+ keep weights (no forecast)",
    "ablation_forecast_rr": "+ forecast prewarm (RR placement)",
    "warmserve_no_kv": "+ evict-aware placement",
    "warmserve": "+ KV reservation (= WarmServe)",
    "oracle": "+ oracle forecast",
}

# The paper's motivation: the design space existing systems sit in.
SYSTEM_CATEGORY: dict[str, str] = {
    "static": "dedicated",
    "reactive": "autoscaling",
    "serverlessllm": "autoscaling",
    "muxserve": "GPU sharing",
    "warmserve": "WarmServe",
}

# Cold-start probes: system name -> start kind it stages (warmserve.control.probe), in cost order.
PROBE_KINDS: dict[str, str] = {f"probe_{k}": k for k in reversed(PROBE_KIND_ORDER)}  # systems probe_<kind>


_VARIANT = re.compile(r"^(?P<base>[a-z_]+)-ka(?P<ka>[0-9.]+)$")
SLEEP_SUFFIX = "-sleep"  # <base>-sleep: <base>'s prewarming through upstream vLLM sleep mode instead of our VMM design


def base_system(system: str) -> str:
    """The system a variant belongs to: ``serverlessllm-ka60`` -> ``serverlessllm``, ``warmserve-sleep`` ->
    ``warmserve``; a plain name is its own base."""
    if (m := _VARIANT.match(system)) is not None:
        return m["base"]
    return system.removesuffix(SLEEP_SUFFIX)


def label(system: str) -> str:
    """Readable name of a system (its config name when unknown); ``serverlessllm-ka60`` (a
    keep-alive variant, experiment ``main_keepalive``) reads "ServerlessLLM-style, keep-alive 60 s",
    ``warmserve-sleep`` reads "WarmServe, vLLM sleep mode"."""
    if (m := _VARIANT.match(system)) is not None:
        return f"{SYSTEM_LABELS.get(m['base'], m['base'])}, keep-alive {float(m['ka']):g} s"
    if system.endswith(SLEEP_SUFFIX):
        return f"{label(system.removesuffix(SLEEP_SUFFIX))}, vLLM sleep mode"
    return SYSTEM_LABELS.get(system, system)


def ordered(systems: Iterable[object], order: tuple[str, ...] = MAIN_ORDER) -> list[str]:
    """The systems present, in ``order`` first, unknown ones after (alphabetically)."""
    present = {str(s) for s in systems}
    rank = {s: i for i, s in enumerate(order)}
    # variants (serverlessllm-ka60, warmserve-sleep) right after their base system, unknown ones last
    rest = sorted(present - set(order), key=lambda s: (rank.get(base_system(s), len(order)), natural_key(s)))
    return [s for s in order if s in present] + rest


def palette(systems: list[str]) -> dict[str, tuple[float, float, float]]:
    """A stable colour per system name: its position in the union of all known orders."""
    known = list(dict.fromkeys(MAIN_ORDER + ABLATION_ORDER + tuple(PROBE_KINDS)))
    colours = sns.color_palette("tab10", 10) + sns.color_palette("Set2", 8)
    out = {}
    for s in systems:
        i = known.index(s) if s in known else len(known) + sorted(systems).index(s)
        out[s] = colours[i % len(colours)]
    return out


class HueArgs(TypedDict):
    hue_order: list[str]
    palette: dict[str, tuple[float, float, float]]


def hue_args(systems: Iterable[object], order: tuple[str, ...] = MAIN_ORDER,
             labels: dict[str, str] | None = None) -> HueArgs:
    """``hue_order`` and ``palette`` for seaborn when ``hue`` is the readable label column."""
    names = ordered(systems, order)
    pal = palette(names)

    def name(s: str) -> str:
        return labels.get(s, s) if labels else label(s)

    return {"hue_order": [name(s) for s in names], "palette": {name(s): pal[s] for s in names}}


def sort_systems(df: pd.DataFrame, before: tuple[str, ...] = (), after: tuple[str, ...] = (),
                 order: tuple[str, ...] = MAIN_ORDER) -> pd.DataFrame:
    """Rows sorted by ``before`` columns, then the system order, then ``after`` columns."""
    rank = {s: i for i, s in enumerate(ordered(df["system"], order))}
    out = df.assign(_rank=df["system"].map(rank))
    return out.sort_values([*before, "_rank", *after], kind="stable").drop(columns="_rank").reset_index(drop=True)


def natural_key(v: object) -> list[object]:
    """Sort 'llama2-7b' before 'llama2-13b' before 'llama2-70b' (numbers compared as numbers)."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(v))]
