"""The twin-vs-real comparison on the committed runs (results/sim_vs_real/) and its edge rules.

The committed runs may predate the provenance records (one revision, one machine, a calibration
with the runs): the table is then built only with allow_mixed, and says so."""

from __future__ import annotations

import numpy as np
import pytest

from warmserve.analysis import sim_vs_real as SVR
from warmserve.config import REPO_ROOT

ROOT = REPO_ROOT / "results" / "sim_vs_real"


def test_compare_means_the_real_runs_and_checks_the_goal() -> None:
    table = SVR.compare(ROOT, 0.10, 0.05)
    assert SVR.systems(ROOT) == ["reactive", "warmserve"]
    goal = table[(table.part == "goal") & table["diff"].notna()]
    assert {"TTFT p50 (s)", "TTFT p99 (s)", "TPOT mean (ms)", "start time cold (s)"} <= set(goal.metric)
    for r in goal.itertuples():
        runs = [v for v in r.runs if not np.isnan(v)]
        assert r.real == pytest.approx(np.mean(runs))
        assert r.diff == pytest.approx((r.sim - r.real) / r.real)
        assert r.inside == (min(runs) <= r.sim <= max(runs))
        assert r.ok == (abs(r.diff) <= 0.10 or (r.metric.startswith("start time") and abs(r.sim - r.real) <= 0.05))
        assert r.rule == ("mean" if r.spread < 0.10 else "range")
        assert r.met == (r.ok if r.rule == "mean" else r.inside or (r.metric.startswith("start time")
                                                                   and abs(r.sim - r.real) <= 0.05))
    prov, found = SVR.provenance(ROOT, allow_mixed=True)
    if found:
        with pytest.raises(SVR.PROV.MixedProvenance):
            SVR.render(table, ROOT, 0.10, 0.05)
    text = SVR.render(table, ROOT, 0.10, 0.05, allow_mixed=True)
    assert f"**{int(goal.met.sum())} of {len(goal)} goal metrics are met**" in text
    assert f"within 10% of the real mean on **{int(goal.ok.sum())} of {len(goal)}**" in text
    assert "(simulated)" in text and f"revision `{prov.revision()}`" in text
    assert ("Mixed provenance" in text) == bool(found)


def test_close_compares_sub_second_starts_in_absolute_terms() -> None:
    assert SVR.close("start time prewarmed (s)", 0.0004, 0.0005, -0.2, 0.10, 0.05)
    assert not SVR.close("TTFT p50 (s)", 0.0004, 0.0005, -0.2, 0.10, 0.05)
    assert SVR.close("TTFT p50 (s)", 1.0, 1.0, np.nan, 0.10, 0.05) is None


def test_no_runs_gives_an_empty_table(tmp_path) -> None:
    table = SVR.compare(tmp_path, 0.10, 0.05)
    assert table.empty and list(table.columns) == SVR.COLUMNS
