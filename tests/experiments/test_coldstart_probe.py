"""The cold-start probe stages exactly the start kind it names, and the kinds order as they should."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from warmserve.config import configs_dir
from warmserve.run import execute


def _probe(kind: str, out: Path, *extra: str) -> pd.DataFrame:
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        cfg = compose(config_name="run", overrides=[
            f"system=probe_{kind}", "workload=coldstart", "cluster=paper_2x8", f"out={out}", "trace=false",
            "progress=false", *extra])
    execute(cfg)
    return pd.read_parquet(out / "requests.parquet")


def test_probe_kinds_are_staged_and_ordered(tmp_path: Path) -> None:
    ttft = {}
    for kind in ("cold", "worker", "prewarmed", "warm"):
        r = _probe(kind, tmp_path / kind)
        assert (r["status"] == "ok").all()
        assert set(r["start_kind"].astype(str)) == {kind}
        assert list(r["model"].astype(str)) == ["llama2-7b-0", "llama2-13b-0", "llama2-70b-0"]
        split = r[["queue_s", "load_s", "init_s", "prefill_s"]].sum(axis=1)
        assert split.to_numpy() == pytest.approx(r["ttft_s"].to_numpy())
        ttft[kind] = r.set_index("model")["ttft_s"]
    for m in ttft["cold"].index:
        assert ttft["warm"][m] < ttft["prewarmed"][m] < ttft["worker"][m] < ttft["cold"][m], m
    # the bigger the checkpoint, the longer its cold start (weights load over the same links)
    assert ttft["cold"].is_monotonic_increasing


def test_unknown_probe_kind_is_rejected() -> None:
    from warmserve.control.probe import ProbePolicy

    with pytest.raises(ValueError, match="probe kind"):
        ProbePolicy(inputs=None, kind="lukewarm", capacity=32, tick_interval_s=0.5)  # type: ignore[arg-type]


def test_sleep_mode_probe_wakes_by_the_fixed_part_and_a_copy(tmp_path: Path) -> None:
    """``hardware.lifecycle.prewarm_mechanism=sleep``: the prewarmed probe's init is the calibrated wake
    (0.40 s, docs/lifecycle.md §4) and its load the weights' copy over the node's links (7B: 13.48 GB at 25.7 GB/s)."""
    r = _probe("prewarmed", tmp_path / "sleep", "hardware.lifecycle.prewarm_mechanism=sleep").set_index("model")
    assert set(r["start_kind"].astype(str)) == {"prewarmed"}
    assert r["init_s"].to_numpy() == pytest.approx([0.40] * 3)
    assert r.loc["llama2-7b-0", "load_s"] == pytest.approx(13476831232 / 25.7e9)
    assert r["load_s"].is_monotonic_increasing  # bigger shards (and shared switches) take longer to copy
