"""The headline: both claims per setting at the declared SLO with seeds and GPU-hours; maxima only after;
a generated 'why ours differs'."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from analysis_helpers import attained_requests, make_run, requests_frame

from warmserve.analysis import headline as H
from warmserve.analysis.results import load_runs


def _main(tmp_path, p99s: dict[tuple[str, float, str, int], float], replay_s: float = 300.0,
          keep_alive: dict[str, float] | None = None):
    """Main runs whose P99 TTFT is the given value: 100 requests at that TTFT, per (setting, rps, system, seed)."""
    for (setting, rps, system, seed), v in p99s.items():
        extra = {"setting": setting, "seed": seed, "slo.attainment": 0.99}
        if system.startswith("serverlessllm"):
            extra["system.policy.keep_alive_s"] = (keep_alive or {}).get(system, 0.0)
        make_run(tmp_path, f"{setting}-conv-{system}-rps{rps:g}-s{seed}", system=system, rps=rps,
                 requests=requests_frame([v] * 100), replay_s=replay_s, extra_cfg=extra)
    return load_runs(tmp_path).overall


def test_tail_ratio_per_seed_then_mean_and_range_per_setting(tmp_path):
    df = _main(tmp_path, {("paper4", 2, "warmserve", 1): 0.5, ("paper4", 2, "serverlessllm", 1): 5.0,
                          ("paper4", 2, "warmserve", 2): 1.0, ("paper4", 2, "serverlessllm", 2): 20.0,
                          ("contended", 2, "warmserve", 1): 2.0, ("contended", 2, "serverlessllm", 1): 1.0})
    t = H.tail_ratios(df)
    assert len(t) == 3 and set(t.setting) == {"paper4", "contended"}
    s = H.tail_summary(t).set_index("setting")
    assert s.loc["paper4", "ratio_text"] == "15.00x [10.00x, 20.00x] (2 seeds)"
    assert s.loc["contended", "ratio_text"] == "0.50x (1 seed)"
    assert s.loc["paper4", "seeds"] == "1,2"
    assert "[" in s.loc["paper4", "den_gpu_h"]  # GPU-hours beside the latency, with the range


def test_a_seed_missing_one_system_is_named_not_dropped(tmp_path):
    df = _main(tmp_path, {("paper4", 2, "warmserve", 1): 0.5, ("paper4", 2, "serverlessllm", 1): 5.0,
                          ("paper4", 2, "warmserve", 2): 0.5})
    s = H.tail_summary(H.tail_ratios(df)).iloc[0]
    assert s["ratio_text"].startswith("10.00x (1 of 2 seeds); seed 2: cannot compute")
    assert "ServerlessLLM-style (no run)" in s["ratio_text"]


def test_keepalive_curve_pairs_each_variant_with_warmserve_at_its_own_seeds(tmp_path):
    df = _main(tmp_path, {("paper4", 2, "warmserve", 1): 1.0, ("paper4", 2, "serverlessllm", 1): 8.0,
                          ("paper4", 2, "warmserve", 2): 1.0, ("paper4", 2, "serverlessllm", 2): 12.0,
                          ("paper4", 2, "serverlessllm-ka60", 1): 4.0},
               keep_alive={"serverlessllm-ka60": 60.0})
    c = H.keepalive_curve(df).set_index("keep_alive_s")
    assert c.loc[0.0, "mean"] == pytest.approx(10.0) and c.loc[60.0, "mean"] == pytest.approx(4.0)
    assert c.loc[60.0, "ratio_text"] == "4.00x (1 seed)"  # its own seed only, no "missing seed 2"


def _searches(rows):
    cols = ["setting", "system", "seed", "capacity_rps", "bound", "upper_rps", "reason"]
    return pd.DataFrame(rows, columns=cols).assign(variant="", probes=[[] for _ in rows], text="")


def test_headline_leads_with_the_declared_slo_both_settings_and_maxima_after(tmp_path):
    main = _main(tmp_path / "main", {
        ("paper4", 2, "warmserve", 1): 0.5, ("paper4", 2, "serverlessllm", 1): 5.0,
        ("contended", 2, "warmserve", 1): 2.0, ("contended", 2, "serverlessllm", 1): 4.0})
    for st, sy, r in (("paper4", "warmserve", 8.0), ("paper4", "muxserve", 4.0), ("contended", "muxserve", 2.0)):
        make_run(tmp_path / "cap", f"{st}-{sy}-s1-rps{r:g}", system=sy, rps=r, requests=attained_requests(10, 10),
                 extra_cfg={"setting": st, "seed": 1, "slo.attainment": 0.99})
    probes = load_runs(tmp_path / "cap").overall
    searches = _searches([("paper4", "warmserve", 1, 8.0, "exact", 9.0, ""), ("paper4", "muxserve", 1, 4.0, "exact",
                                                                              5.0, ""),
                          ("contended", "warmserve", 1, None, "below", 0.5, ""),
                          ("contended", "muxserve", 1, 2.0, "exact", 3.0, "")])
    md = H.headline_markdown(main, searches, probes, "simulated, a100-80gb profile")
    assert md.index("Declared SLO") < md.index("## Claim 1") < md.index("## Claim 2") < md.index("## Largest")
    assert md.index("## Largest") < md.index("## Why ours differs")
    assert "TTFT <= 5 s and TPOT <= 0.15 s for >= 99% of all requests" in md
    claim1 = md[md.index("## Claim 1"):md.index("## Claim 2")]
    assert "| paper4" in claim1 and "| contended" in claim1 and "10.00x (1 seed)" in claim1 and "2.00x" in claim1
    claim2 = md[md.index("## Claim 2"):md.index("## Largest")]
    assert "2.00x (1 seed)" in claim2  # paper4: 8 / 4
    assert "<= 0.25x (1 seed)" in claim2  # contended: WarmServe < 0.5 rps (floor) over 2 rps
    assert "GPU-hours at capacity" in claim2
    largest = md[md.index("## Largest"):md.index("## Why")]
    assert "10.00x" in largest and "paper4" in largest and "50.8x" in largest
    why = md[md.index("## Why"):]
    assert "quick-mode" in why.lower() and "synthetic" in why
    assert "target=32" in why  # the baselines' parameters come from run.json
    assert "paper4:" in why and "of 16 GPUs" in why  # GPUs held, from the runs
    assert not re.search(r"neither colocates nor replicates", md)  # no stale MuxServe prose


def test_declared_slo_must_be_one(tmp_path):
    a = pd.DataFrame({"slo.ttft_s": [5.0], "slo.tpot_s": [0.15], "slo_target": [0.99]})
    b = pd.DataFrame({"slo.ttft_s": [2.0], "slo.tpot_s": [0.15], "slo_target": [0.99]})
    assert H.declared_slo(a)["ttft_s"] == 5.0
    with pytest.raises(AssertionError, match="disagree on the SLO"):
        H.declared_slo(a, b)


def test_muxserve_parameters_name_its_compute_sharing(tmp_path):
    make_run(tmp_path, "conv-muxserve-rps2", system="muxserve", rps=2, requests=attained_requests(10, 10),
             extra_cfg={"system.policy.mesh_sizes": [8, 4], "system.policy.size_classes": [{"scale": 1}]})
    got = H.system_parameters(load_runs(tmp_path).overall, "muxserve")
    assert got["hardware.compute_sharing.prefill_exponent"] == "tp1=0.7"
    assert got["hardware.compute_sharing.decode_exponent"] == "tp1=0.3"
    assert got["mesh_sizes"] == [8, 4] and "size_classes" not in got
