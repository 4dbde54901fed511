"""The spread-aware goal rule and the provenance check of the twin-vs-real table, on hand-made numbers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from warmserve.analysis import sim_vs_real as SVR
from warmserve.analysis import svr_provenance as PROV

J = SVR.judge


def test_quiet_runs_use_the_mean_rule() -> None:
    r = J("TTFT p50 (s)", 10.9, [10.0, 10.2, 9.8], 0.10, 0.05)  # spread 4 %: within 10 % of the mean (+9 %)
    assert r["rule"] == "mean" and r["met"] and r["ok"] and r["inside"] is False
    assert r["real"] == pytest.approx(10.0) and r["spread"] == pytest.approx(0.04)
    r = J("TTFT p50 (s)", 11.2, [10.0, 10.2, 9.8], 0.10, 0.05)  # +12 %: not met, although 10 % is close
    assert r["rule"] == "mean" and not r["met"]


def test_noisy_runs_use_the_range_rule() -> None:
    r = J("TTFT p50 (s)", 28.0, [29.9, 17.6, 20.0], 0.10, 0.05)  # spread ~55 %: inside the range, +24 % of mean
    assert r["rule"] == "range" and r["met"] and not r["ok"]
    r = J("TTFT p50 (s)", 30.0, [29.9, 17.6, 20.0], 0.10, 0.05)  # just above the range
    assert r["rule"] == "range" and not r["met"] and r["inside"] is False
    # a spread just over 10 % makes the range narrower than +-10 %: the range rule can fail where the mean rule passes
    r = J("TPOT mean (ms)", 106.0, [94.0, 106.0, 100.0], 0.10, 0.05)  # spread 12 %, twin at the top of the range
    assert r["rule"] == "range" and r["met"]
    r = J("TPOT mean (ms)", 107.0, [94.0, 106.0, 100.0], 0.10, 0.05)
    assert r["rule"] == "range" and r["ok"] and not r["met"]


def test_twin_exactly_at_the_range_edge_is_inside() -> None:
    for edge in (17.6, 29.9):
        r = J("TTFT p50 (s)", edge, [29.9, 17.6], 0.10, 0.05)
        assert r["rule"] == "range" and r["inside"] and r["met"]


def test_two_runs_and_the_spread_boundary() -> None:
    r = J("TTFT p90 (s)", 81.0, [77.8, 78.1], 0.10, 0.05)  # 2 runs, spread 0.4 %: mean rule, +4 %
    assert r["rule"] == "mean" and r["met"] and r["inside"] is False
    r = J("TTFT p90 (s)", 100.0, [95.0, 105.0], 0.10, 0.05)  # spread exactly 10 %: not "less than", range rule
    assert r["spread"] == pytest.approx(0.10) and r["rule"] == "range" and r["met"]


def test_identical_runs_and_a_single_run() -> None:
    r = J("TTFT p50 (s)", 11.0, [10.0, 10.0, 10.0], 0.10, 0.05)  # spread 0, +10 % exactly: met (<=)
    assert r["spread"] == 0 and r["rule"] == "mean" and r["met"]
    r = J("TTFT p50 (s)", 11.01, [10.0, 10.0, 10.0], 0.10, 0.05)
    assert not r["met"] and r["inside"] is False
    r = J("TTFT p50 (s)", 10.5, [10.0], 0.10, 0.05)  # one run: no range, the mean rule
    assert r["rule"] == "mean" and r["met"] and r["inside"] is None and math.isnan(r["spread"])


def test_sub_millisecond_starts_and_missing_values() -> None:
    r = J("start time prewarmed (s)", 0.004, [0.0007, 0.0002], 0.10, 0.05)  # outside the range, but 3 ms off
    assert r["rule"] == "range" and r["met"]
    r = J("TTFT p50 (s)", 0.004, [0.0007, 0.0002], 0.10, 0.05)
    assert not r["met"]
    r = J("TTFT p50 (s)", np.nan, [1.0, 2.0], 0.10, 0.05)  # only the real side has it: not counted
    assert r["met"] is None and r["rule"] is None and r["real"] == 1.5
    r = J("start time worker (s)", 30.0, [np.nan, np.nan], 0.10, 0.05)
    assert r["met"] is None and math.isnan(r["real"])
    r = J("TTFT p50 (s)", 12.0, [10.0, np.nan, 10.4], 0.10, 0.05)  # a run without the metric: the others count
    assert r["real"] == pytest.approx(10.2) and r["rule"] == "mean" and not r["met"]


# ---- provenance: one revision, one machine, one calibration -------------------------------------------------------
MACHINE = {"cpu_model": "AMD EPYC", "cores": 2, "cores_usable": 2, "mem_gib": 7.8, "os": "Linux 6", "arch": "x86_64",
           "python": "3.11.7"}
PROFILE = {"name": "cpu-testbed-local", "lifecycle": {"process_start_s": 8.0}}


def _comparison(root: Path, rev: str = "a" * 40, real_rev: str | None = None, real_machine: dict | None = None,
                sim_hw: dict | None = None) -> None:
    (root / "calibration" / "hardware").mkdir(parents=True)
    (root / "calibration" / "hardware" / "cpu-testbed-local.yaml").write_text(OmegaConf.to_yaml(PROFILE))
    (root / "calibration" / "raw.json").write_text(json.dumps(
        {"_machine": MACHINE, "_git_revision": rev, "_measured_at": "2026-11-29T09:00:00+00:00", "_quick": True,
         "_loadavg": [2.1, 2.0, 1.9], "_loadavg_end": [2.3, 2.1, 2.0]}))
    for name in ("sim-x", "testbed-x", "testbed-x-repeat"):
        (root / name).mkdir()
        real = name.startswith("testbed")
        (root / name / "run.json").write_text(json.dumps(
            {"git_revision": (real_rev or rev) if real else rev, "config": {"hardware": sim_hw or PROFILE}}))
        if real:
            (root / name / "host.json").write_text(json.dumps(
                {"machine": real_machine or MACHINE, "git_revision": (real_rev or rev) + "+dirty",
                 "loadavg_1m": {"mean": 2.4, "max": 3.0}}))


def _prov(root: Path) -> PROV.Provenance:
    return PROV.collect(root, [root / "sim-x"], [root / "testbed-x", root / "testbed-x-repeat"])


def test_one_revision_one_machine_passes(tmp_path) -> None:
    _comparison(tmp_path)
    p = _prov(tmp_path)
    assert PROV.check(p, allow_mixed=False) == []
    assert p.revision() == "a" * 40 and p.machine() == "AMD EPYC, 2 cores, 7.8 GiB"
    assert p.loads["testbed-x"]["mean"] == 2.4 and p.calibration["_quick"]


@pytest.mark.parametrize("kw, says", [
    ({"real_rev": "b" * 40}, "mixed revisions"),
    ({"real_machine": {**MACHINE, "cores": 4}}, "mixed machines"),
    ({"sim_hw": {**PROFILE, "lifecycle": {"process_start_s": 9.0}}}, "calibrated profile"),
])
def test_mixed_provenance_is_refused_unless_allowed(tmp_path, kw, says) -> None:
    _comparison(tmp_path, **kw)
    p = _prov(tmp_path)
    with pytest.raises(PROV.MixedProvenance, match=says):
        PROV.check(p, allow_mixed=False)
    assert any(says in x for x in PROV.check(p, allow_mixed=True))


def test_runs_without_records_are_refused(tmp_path) -> None:
    (tmp_path / "testbed-x").mkdir()
    (tmp_path / "testbed-x" / "run.json").write_text(json.dumps({"git_revision": "a" * 40}))
    found = PROV.problems(PROV.collect(tmp_path, [], [tmp_path / "testbed-x"]))
    assert any("calibration/raw.json" in x for x in found) and any("host.json" in x for x in found)
