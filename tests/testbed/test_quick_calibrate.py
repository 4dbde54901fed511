"""The short calibration end to end on stub engines (no vLLM), the machine record, and host pinning."""

from __future__ import annotations

import json
import os
import platform
import socket
import sys

import pytest
from omegaconf import OmegaConf

from warmserve.calibrate import cpu, machine
from warmserve.config import REPO_ROOT, configs_dir


def _stub_engine() -> dict:
    cfg = OmegaConf.load(configs_dir() / "backend" / "testbed-stub.yaml")
    base = OmegaConf.load(configs_dir() / "backend" / "testbed.yaml")
    merged = OmegaConf.merge(base, cfg)
    return OmegaConf.to_container(merged.engine, resolve=True)


HOST = "host-zq9xk7.example"  # a name that cannot occur by chance (the real one may be as short as "vm")


def _fake_hostname(monkeypatch) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: HOST)
    monkeypatch.setattr(socket, "getfqdn", lambda *a: HOST)
    monkeypatch.setattr(platform, "node", lambda: HOST)
    real = os.uname()
    monkeypatch.setattr(os, "uname", lambda: os.uname_result((real.sysname, HOST, *real[2:])))


def test_machine_description_has_no_hostname(monkeypatch) -> None:
    _fake_hostname(monkeypatch)
    desc = machine.describe()
    text = json.dumps(desc) + machine.fingerprint(desc)
    assert HOST not in text and "zq9xk7" not in text
    assert desc["cores"] == os.cpu_count() and desc["cpu_model"]
    assert {"cpu_model", "cores", "mem_gib"} <= set(desc)


def test_record_wraps_a_command_and_passes_its_status(tmp_path) -> None:
    out = tmp_path / "host.json"
    rc = machine.main(["--out", str(out), "--", sys.executable, "-c", "import sys; sys.exit(3)",
                       f"file://{REPO_ROOT}/results/x"])
    doc = json.loads(out.read_text())
    assert rc == 3 and doc["exit_status"] == 3
    assert doc["command"][-1] == "file://results/x"  # no absolute paths of ours in a committed record
    assert doc["machine"] == machine.describe() and doc["loadavg_1m"]["samples"] >= 1
    assert doc["started"] <= doc["finished"] and doc["git_revision"]


def test_quick_calibration_writes_a_profile_with_its_provenance(tmp_path, monkeypatch) -> None:
    """run_quick against stub engines (the real engine's HTTP API and the pre-spawn path, no vLLM), then
    the profile: loadable by the twin, named as asked, stating machine, time, revision and quick mode."""
    from warmserve.calibrate.profile import cpu_profile
    from warmserve.calibrate.quick import run_quick
    from warmserve.hardware import load_profile

    _fake_hostname(monkeypatch)
    monkeypatch.setattr(cpu, "LOAD_SETTLE_S", 0.2)
    monkeypatch.setattr(cpu, "PREFILL_POINTS", ((16, 1), (128, 1), (128, 2)))
    monkeypatch.setattr(cpu, "DECODE_POINTS", ((1, 64), (2, 64), (1, 128)))
    for b in ("tiny-s", "tiny-m"):
        (tmp_path / "ckpt" / b).mkdir(parents=True)
        (tmp_path / "ckpt" / b / "model.safetensors").write_bytes(b"\0" * 4096)
    engine = _stub_engine()
    log: list[str] = []
    raw = run_quick(engine, ["tiny-s", "tiny-m"], tmp_path / "ckpt", "0", 4096, tmp_path / "logs", 30,
                    log=log.append, load_cores="0", repeats=1)
    assert raw["_quick"] and raw["_machine"] == machine.describe() and raw["_page_cache_warmed_bytes"] == 8192
    assert raw["tiny-s"]["cold_loaded_s"] > 0 and "cold_loaded_s" not in raw["tiny-m"]  # loaded start: first only
    assert raw["tiny-s"]["cold_s_runs"] == [raw["tiny-s"]["cold_s"]] and len(raw["tiny-m"]["prefill"]) == 3
    assert any("worker start" in x for x in log)
    text = cpu_profile(json.loads(json.dumps(raw)), "python -m warmserve.calibrate --quick", "cpu-testbed-local",
                       {"args": ["--max-num-seqs", "32", "--max-model-len", "2048", "--max-num-batched-tokens",
                                 "4096", "--kv-cache-memory-bytes", "268435456"]}, 4 * 2**30)
    cfg = OmegaConf.create(text)
    assert load_profile(cfg) is not None and cfg.name == "cpu-testbed-local"
    assert f"MEASURED on {raw['_measured_at']}" in text and "quick mode" in text
    assert machine.fingerprint(raw["_machine"]) in text and raw["_git_revision"] in text
    assert "zq9xk7" not in text
    assert cfg.lifecycle.busy_start_slowdown >= 1.0


def test_host_cores_must_avoid_the_slots() -> None:
    from warmserve.testbed.hostpin import host_cpus, pin_host

    assert host_cpus(None, ["0", "1"]) is None
    with pytest.raises(ValueError, match="overlaps"):
        host_cpus("1", ["0", "1"])
    with pytest.raises(ValueError, match="no cores"):
        host_cpus("4096", ["0"])
    old = os.sched_getaffinity(0)
    restore = pin_host({min(old)})
    try:
        assert os.sched_getaffinity(0) == {min(old)}
    finally:
        restore()
    assert os.sched_getaffinity(0) == old


def test_page_cache_warming_reads_every_file(tmp_path) -> None:
    from warmserve.testbed.hostpin import warm_page_cache

    (tmp_path / "a" / "sub").mkdir(parents=True)
    (tmp_path / "a" / "x.bin").write_bytes(b"1" * 10)
    (tmp_path / "a" / "sub" / "y.bin").write_bytes(b"2" * 5)
    assert warm_page_cache([tmp_path / "a"]) == 15
