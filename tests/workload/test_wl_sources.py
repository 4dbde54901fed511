"""Other sources give the same output format; export round-trips through the ``file`` source."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from warmserve.errors import InputError
from warmserve.workload.api import build_workload
from warmserve.workload.export import to_timed_trace, write_jsonl
from warmserve.workload.schema import PRIOR_COLUMNS, REQUEST_COLUMNS


def _check(b, names):
    assert list(b.requests.columns) == list(REQUEST_COLUMNS)
    assert list(b.priors.columns) == list(PRIOR_COLUMNS)
    assert b.models == names and set(b.requests["model"]) <= set(names)
    assert (np.diff(b.requests["arrival_s"].to_numpy()) >= 0).all()
    assert b.priors.groupby("model").size().to_dict() == dict.fromkeys(names, 12)


@pytest.mark.parametrize("name", ["azure2023", "mooncake"])
def test_one_hour_sources(name):
    b = build_workload({"source": {"name": name}, "models": "paper4", "rps": 1})
    _check(b, ["llama2-7b-0", "llama2-7b-1", "llama2-13b-0", "llama2-70b-0"])
    assert b.week_load is None and b.meta["synthetic"] is False and "one hour" in b.meta["label"]
    assert "sees the replayed hour" in b.meta["prior_kind"]
    assert len(b.requests) == sum(v["n"] for v in b.meta["per_model"].values())


def test_servegen_week():
    src = {"name": "servegen", "clients": [25, 97], "scale": 0.05}  # two bundled m-large clients active on days 5-6
    b = build_workload({"source": src, "models": "small2", "rps": 0.2})
    _check(b, ["llama2-7b-0", "llama2-13b-0"])
    assert b.meta["synthetic"] is True and "ServeGen" in b.meta["label"]
    assert len(b.week_load) == 2 * 2016


def test_export_and_file_round_trip(tmp_path):
    b = build_workload({"source": {"name": "synthetic", "scale": 0.02}, "models": "small2", "rps": 0.5})
    path = tmp_path / "w.jsonl"
    write_jsonl(b.requests, path)
    lines = pd.read_json(path, lines=True)
    assert list(lines.columns) == ["timestamp", "input_length", "output_length", "model"]
    assert lines["timestamp"].tolist() == np.rint(b.requests["arrival_s"] * 1000).astype(int).tolist()
    back = build_workload({"source": {"name": "file", "path": str(path)}, "models": "small2"})
    assert back.meta["source_kind"] == "requests"
    assert back.requests["model"].tolist() == b.requests["model"].tolist()
    assert back.requests["input_tokens"].tolist() == b.requests["input_tokens"].tolist()
    # a per-model request file keeps its arrival times as given (ms resolution): a true round trip
    exp = to_timed_trace(b.requests)["timestamp"].to_numpy() / 1000.0
    assert back.requests["arrival_s"].to_numpy() == pytest.approx(exp, abs=1e-9)


def test_user_csv_without_model_column_is_sampled(tmp_path):
    p = tmp_path / "u.csv"
    pd.DataFrame({"arrival_s": np.arange(500) * 2.0, "input_tokens": 100, "output_tokens": 50}).to_csv(p, index=False)
    b = build_workload({"source": {"name": "file", "path": str(p)}, "models": "small2", "rps": 0.1})
    assert b.meta["source_kind"] == "hour" and len(b.requests) == 288 + 72


def test_user_file_unknown_model(tmp_path):
    p = tmp_path / "u.csv"
    pd.DataFrame({"arrival_s": [0.0], "model": ["gpt"], "input_tokens": [1], "output_tokens": [1]}).to_csv(
        p, index=False)
    with pytest.raises(InputError, match=r"model name\(s\) \['gpt'\]"):
        build_workload({"source": {"name": "file", "path": str(p)}, "models": "small2"})
