"""Seed aggregation: mean/range with every seed counted, bounded values combined, effects against seed noise,
capacity from searches.csv per seed, ablation 'exercised' flags and forecast-sensitivity verdicts."""

from __future__ import annotations

import pandas as pd
import pytest

from warmserve.analysis import ablation as A
from warmserve.analysis import capacity as C
from warmserve.analysis import sensitivity as S
from warmserve.analysis.seeds import Bounded, beyond_range, combine, divide, mean_range, spread


def test_spread_counts_every_seed_and_says_when_one_lacks_the_metric():
    df = pd.DataFrame({"setting": ["a"] * 3 + ["b"], "seed": [1, 2, 3, 1],
                       "p99": [1.0, 3.0, float("nan"), 5.0]})
    sp = spread(df, ["setting"], ["p99"]).set_index("setting")
    a = sp.loc["a"]
    assert (a.n_seeds, a.seeds, a.p99_n) == (3, "1,2,3", 2)
    assert (a.p99_mean, a.p99_min, a.p99_max) == (2.0, 1.0, 3.0)
    assert mean_range(a.p99_mean, a.p99_min, a.p99_max, a.p99_n, a.n_seeds) == "2 [1, 3] (2 of 3 seeds)"
    assert mean_range(5.0, 5.0, 5.0, 1, 1) == "5 (1 seed)"
    assert mean_range(float("nan"), float("nan"), float("nan"), 0, 2) == "n/a (0 of 2 seeds)"


@pytest.mark.parametrize(("num", "den", "value", "rel"), [
    (Bounded(8, "="), Bounded(4, "="), 2.0, "="),
    (Bounded(64, ">="), Bounded(4, "="), 16.0, ">="),
    (Bounded(8, "="), Bounded(0.5, "<="), 16.0, ">="),   # den below the floor: ratio at least 16
    (Bounded(0.5, "<="), Bounded(8, "="), 0.0625, "<="),
    (Bounded(4, "="), Bounded(64, ">="), 0.0625, "<="),
])
def test_divide_propagates_bounds(num, den, value, rel):
    r = divide(num, den, "W", "M")
    assert r.value == pytest.approx(value) and r.relation == rel


@pytest.mark.parametrize(("num", "den", "needle"), [
    (Bounded(64, ">="), Bounded(64, ">="), "same direction"),
    (Bounded(0.5, "<="), Bounded(0.5, "<="), "same direction"),
    (Bounded(None, None, "FAILED: boom"), Bounded(4, "="), "W: FAILED: boom"),
    (Bounded(4, "="), Bounded(None, None, "n/a: cannot hold the models (x)"), "M: n/a"),
])
def test_divide_without_a_number_says_why(num, den, needle):
    r = divide(num, den, "W", "M")
    assert not r.computable and needle in r.text() and r.text().startswith("cannot compute")


def test_combine_keeps_bounds_and_names_missing_seeds():
    c = combine([(1, Bounded(2.0, "=")), (2, Bounded(4.0, ">=")), (3, Bounded(None, None, "FAILED: x"))])
    assert c.mean.relation == ">=" and c.mean.value == pytest.approx(3.0) and (c.lo, c.hi) == (2.0, 4.0)
    assert c.text() == ">= 3.00x [2.00x, 4.00x] (2 of 3 seeds); seed 3: cannot compute: FAILED: x"
    mixed = combine([(1, Bounded(2.0, ">=")), (2, Bounded(1.0, "<="))])
    assert not mixed.mean.computable and "opposite directions" in mixed.text()
    assert combine([(1, Bounded(2.0, "="))]).text() == "2.00x (1 seed)"
    none = combine([(1, Bounded(None, None, "why"))])
    assert none.n == 0 and "seed 1: why" in none.text()


def test_beyond_range_needs_two_seeds_and_disjoint_ranges():
    assert beyond_range([1.0, 2.0], [3.0, 4.0]) == "beyond seed range"
    assert beyond_range([1.0, 3.5], [3.0, 4.0]) == "within seed range"
    assert beyond_range([1.0], [30.0]) == "one seed: cannot tell from noise"
    assert beyond_range([float("nan")], [1.0, 2.0]) == "no value"


def _searches(rows):
    cols = ["setting", "system", "seed", "capacity_rps", "bound", "upper_rps", "reason"]
    df = pd.DataFrame(rows, columns=cols).assign(variant="", probes=[[] for _ in rows], text="")
    return df


def test_capacity_ratio_per_seed_then_over_seeds_with_bounds():
    s = _searches([
        ("p", "warmserve", 1, 8.0, "exact", 9.0, ""), ("p", "muxserve", 1, 4.0, "exact", 5.0, ""),
        ("p", "warmserve", 2, 64.0, "at_least", None, ""), ("p", "muxserve", 2, 4.0, "exact", 5.0, ""),
        ("c", "warmserve", 1, None, "failed", None, "CapacityError: boom"), ("c", "muxserve", 1, 2.0, "exact", 3.0, ""),
        ("c", "static", 1, None, "not_applicable", None, "6 models need 8 GPUs"),
    ])
    per_seed = C.ratios_per_seed(s).set_index(["setting", "seed"])
    assert per_seed.loc[("p", 1), "ratio_text"] == "2.00x"
    assert per_seed.loc[("p", 2), "ratio_text"] == ">= 16.00x"
    assert "FAILED: CapacityError: boom" in per_seed.loc[("c", 1), "ratio_text"]
    summ = C.ratio_summary(C.ratios_per_seed(s)).set_index("setting")
    assert summ.loc["p", "ratio_text"] == ">= 9.00x [2.00x, 16.00x] (2 seeds)"
    assert summ.loc["c", "ratio_text"].startswith("cannot compute") and "seed 1" in summ.loc["c", "ratio_text"]
    probes = pd.DataFrame({"setting": ["p", "p"], "system": ["warmserve", "warmserve"], "seed": [1, 2],
                           "rps": [8.0, 64.0], "gpu_seconds": [3600.0, 7200.0]})
    t = C.capacity_table(s, probes).set_index(["setting", "system"])
    assert t.loc[("c", "static"), "capacity_text"] == "n/a: cannot hold the models (6 models need 8 GPUs) (1 seed)"
    assert t.loc[("c", "warmserve"), "capacity_text"] == "FAILED: CapacityError: boom (1 seed)"
    assert "FAILED: CapacityError: boom" in t.loc[("c", "warmserve"), "per_seed"]
    assert t.loc[("p", "warmserve"), "gpu_hours_text"] == "1.5 [1, 2] (2 seeds)"
    assert t.loc[("p", "warmserve"), "capacity_text"].startswith(">= 36")


def test_capacity_tables_refuse_to_mix_variants():
    s = _searches([("p", "warmserve", 1, 8.0, "exact", 9.0, "")] * 2)
    s["variant"] = ["x0.5", "x2"]
    with pytest.raises(AssertionError, match="several variants"):
        C.capacity_table(s, pd.DataFrame())


def _abl(system, seed, **counters):
    base = {"setting": "p", "rps": 4.0, "system": system, "seed": seed, "ttft_p99": 1.0, "ttft_mean": 0.1,
            "gpu_seconds": 3600.0, "prewarms": 0, "evictions": 0, "instances": 5, "kv_lends": 0,
            "starts_by_kind.worker": 0, "starts_by_kind.prewarmed": 0}
    return base | counters


def test_ablation_says_when_a_mechanism_was_not_exercised_and_why():
    rows = []
    for seed in (1, 2):
        rows += [_abl("reactive", seed, ttft_p99=30.0 + seed), _abl("worker_prewarm", seed, ttft_p99=10.0 + seed,
                                                                      **{"starts_by_kind.worker": 3}),
                 _abl("ablation_forecast_rr", seed, prewarms=4), _abl("warmserve_no_kv", seed, prewarms=4),
                 _abl("warmserve", seed, prewarms=4, kv_lends=0), _abl("oracle", seed, prewarms=4)]
    t = A.ablation_rows(pd.DataFrame(rows)).set_index("system config")
    assert t.loc["worker_prewarm", "mechanism exercised"].startswith("yes (starts_by_kind.worker > 0 in 2 of 2")
    assert t.loc["worker_prewarm", "P99 vs previous step"] == "31.5 -> 11.5 s: beyond seed range"
    kv = t.loc["warmserve", "mechanism exercised"]
    assert kv.startswith("not exercised in this setting") and "no KV block was lent" in kv
    assert t.loc["warmserve_no_kv", "mechanism exercised"].startswith("not exercised")  # no eviction either side
    assert t.loc["oracle", "mechanism exercised"].startswith("not exercised")  # same plan as WarmServe
    rows[-1]["instances"] = 7  # seed 2's oracle plan differs
    t = A.ablation_rows(pd.DataFrame(rows)).set_index("system config")
    assert t.loc["oracle", "mechanism exercised"].startswith("partly (")
    no_counter = pd.DataFrame(rows).drop(columns="kv_lends")
    assert A.ablation_rows(no_counter).set_index("system config").loc["warmserve", "mechanism exercised"].startswith(
        "unknown")


def test_forecast_sensitivity_verdicts():
    def runs(prewarms_at_e1: int, p99_at_e1: list[float]) -> pd.DataFrame:
        rows = []
        for seed, (p_lo, p_hi) in zip((1, 2), zip([1.0, 1.2], p99_at_e1, strict=True), strict=True):
            rows.append({"setting": "c", "dim": "error", "system": "warmserve", "x": 0.0, "seed": seed,
                         "ttft_p99": p_lo, "ttft_mean": 0.1, "gpu_seconds": 3600.0, "prewarms": 10, "instances": 5})
            rows.append({"setting": "c", "dim": "error", "system": "warmserve", "x": 1.0, "seed": seed,
                         "ttft_p99": p_hi, "ttft_mean": 0.1, "gpu_seconds": 3600.0,
                         "prewarms": prewarms_at_e1 if seed == 1 else 10, "instances": 5})
        return pd.DataFrame(rows)
    _, v = S.forecast_rows(runs(10, [1.0, 1.2]))
    assert v.iloc[0]["did the forecast change anything?"].startswith("not exercised in this setting")
    _, v = S.forecast_rows(runs(12, [1.0, 1.2]))
    assert "prewarms differ across levels at 1 of 2 seeds" in v.iloc[0]["did the forecast change anything?"]
    _, v = S.forecast_rows(runs(10, [5.0, 6.0]))
    assert "beyond seed range" in v.iloc[0]["did the forecast change anything?"]


def test_variant_labels_and_order():
    from warmserve.analysis import labels as L

    assert L.label("warmserve-sleep") == "WarmServe, vLLM sleep mode"
    assert L.label("serverlessllm-ka60") == "ServerlessLLM-style, keep-alive 60 s"
    assert L.base_system("warmserve-sleep") == "warmserve" and L.base_system("serverlessllm-ka10") == "serverlessllm"
    assert L.ordered(["muxserve", "serverlessllm-ka60", "warmserve-sleep", "warmserve", "serverlessllm"]) == [
        "warmserve", "serverlessllm", "muxserve", "warmserve-sleep", "serverlessllm-ka60"]
