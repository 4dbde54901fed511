"""Reading results back: provenance text, loud failure on empty experiments, sensitivity tidying."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from analysis_helpers import make_run, requests_frame

from warmserve.analysis import sensitivity as S
from warmserve.analysis.figures import provenance
from warmserve.analysis.results import MissingResults, load_runs, require_runs
from warmserve.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def test_provenance_names_simulation_profile_cluster_and_synthetic(tmp_path):
    make_run(tmp_path, "a", system="warmserve", rps=1, requests=requests_frame([0.1]))
    make_run(tmp_path, "b", system="warmserve", rps=2, requests=requests_frame([0.1]), hardware="h100-80gb",
             cluster=("small_1x8", 1, 8))
    text = provenance(load_runs(tmp_path).overall)
    assert text.startswith("simulated, a100-80gb/h100-80gb profile")
    assert "cluster paper_2x8/small_1x8" in text and "synthetic Azure-2024-like week" in text


def test_provenance_of_real_trace_does_not_say_synthetic(tmp_path):
    make_run(tmp_path, "a", system="warmserve", rps=1, requests=requests_frame([0.1]), source="azure2024")
    assert "synthetic" not in provenance(load_runs(tmp_path).overall)


def test_require_runs_fails_loudly_and_counts_unfinished(tmp_path, capsys):
    exp = tmp_path / "capacity"
    (exp / "half-done").mkdir(parents=True)
    with pytest.raises(MissingResults, match=r"no finished runs in .*capacity \(1 unfinished\).*run capacity"):
        require_runs(exp)
    with pytest.raises(MissingResults, match="no finished runs"):
        require_runs(tmp_path / "absent", what="main")
    make_run(exp, "done", system="warmserve", rps=1, requests=requests_frame([0.1]))
    runs = require_runs(exp)
    assert len(runs.overall) == 1 and runs.unfinished == ["half-done"]
    assert "1 unfinished" in capsys.readouterr().out


def test_sensitivity_tidy_and_error_reference(tmp_path):
    r = requests_frame([1.0] * 10)
    make_run(tmp_path, "alpha-2-ws", system="warmserve", rps=4, requests=r, tags={"dim": "alpha"})
    make_run(tmp_path, "alpha-2-sllm", system="serverlessllm", rps=4, requests=requests_frame([7.0] * 10),
             tags={"dim": "alpha"})
    make_run(tmp_path, "cluster-small-sllm", system="serverlessllm", rps=4, requests=r, tags={"dim": "cluster"},
             cluster=("small_1x8", 1, 8))
    for e in (0.0, 0.5):
        make_run(tmp_path, f"error-{e}-ws", system="warmserve", rps=4, requests=r, tags={"dim": "error"},
                 extra_cfg={"system.policy.forecaster": {"rel_error": e}})
    df = S.tidy(load_runs(tmp_path).overall)
    assert sorted(df[df.dim == "error"].x) == [0.0, 0.5]
    assert set(df[df.dim == "cluster"].x) == {8.0}
    assert set(df[df.dim == "alpha"].x) == {2.0}
    assert set(df.n_models) == {4}  # paper4
    ref, why = S.reference_for(df)
    assert ref is not None and ref["run"] == "alpha-2-sllm" and "'alpha' sweep" in why
    ref, why = S.reference_for(df[df.run != "alpha-2-sllm"])
    assert ref is None and "omitted" in why


def _run_notebooks_module():
    spec = importlib.util.spec_from_file_location("run_notebooks", REPO / "scripts" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_run_notebooks_name_resolution():
    mod = _run_notebooks_module()
    assert [p.name for p in mod.select(["03", "02_main", "10_forecast.ipynb"])] == [
        "03_capacity.ipynb", "02_main.ipynb", "10_forecast.ipynb"]
    assert len(mod.select([])) >= 8
    with pytest.raises(InputError, match="notebook 'nope': not found"):
        mod.select(["nope"])


@pytest.mark.parametrize("name", ["02_main", "03_capacity", "04_ablation", "05_sensitivity", "07_timeline",
                                  "08_coldstart", "09_compromise", "10_forecast"])
def test_notebooks_are_clean_and_runnable_headless(name):
    nb = json.loads((REPO / "notebooks" / f"{name}.ipynb").read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3" and "language_info" in nb["metadata"]
    first = nb["cells"][0]
    assert first["cell_type"] == "markdown" and "Claim tested" in "".join(first["source"])
    assert all(not c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"), (
        "commit notebooks without outputs")
