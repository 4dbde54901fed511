"""Run directories are all-or-nothing and resume sees only finished runs, whatever step a writer dies at.

A hard kill (SIGKILL, power loss) runs no clean-up, so it is simulated by
raising at a chosen step with the staging clean-up (``shutil.rmtree`` in
``warmserve.atomic``) disabled. After every such death: the run directory
is either absent, or the complete previous run, never a partial one that the
resume check (``warmserve.rundir.is_finished``) would skip; and the next
attempt removes the leftovers and publishes a finished run.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from err_harness import invoke, tree
from hydra import compose, initialize_config_dir

import warmserve.atomic as atomic
import warmserve.metrics.writers as writers
from warmserve.analysis.results import load_runs
from warmserve.config import configs_dir, model_specs
from warmserve.errors import EXIT_SIGINT, EXIT_SIGTERM, cli_main
from warmserve.run.execute import Workload, execute
from warmserve.rundir import RUN_FILES, is_finished
from warmserve.sim.synthetic import synthetic_workload


class Killed(BaseException):
    """Stands for SIGKILL: not an Exception, and (with rmtree disabled) nothing is cleaned up."""


def _cfg(out: Path, *extra: str):
    with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
        return compose("run", overrides=["~workload", f"out={out}", "cluster=tiny_1x4", "drain_s=120",
                                         "utilization_interval_s=5", *extra])


def _workload() -> Workload:
    specs = model_specs("small2")
    return Workload(requests=synthetic_workload(list(specs), rate_rps=1.0, duration_s=30.0, seed=1), models=specs)


def _hidden(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.name.startswith("."))


def _no_cleanup(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(atomic.shutil, "rmtree", lambda *a, **k: None)


# Writer steps in order: 3 parquet files, run.json, summary.json, trace.json.
STEPS = list(range(6))


@pytest.mark.parametrize("step", STEPS)
def test_killed_while_writing_leaves_no_run_and_the_next_attempt_finishes(step, tmp_path, monkeypatch) -> None:
    out = tmp_path / "r"
    calls = {"n": 0}
    real = {"write_parquet": writers.write_parquet, "write_json": writers.write_json,
            "write_chrome_trace": writers.write_chrome_trace}

    def dying(name):
        def f(*a, **k):
            if calls["n"] == step:
                raise Killed()
            calls["n"] += 1
            return real[name](*a, **k)
        return f

    with monkeypatch.context() as m:
        _no_cleanup(m)
        for name in real:
            m.setattr(writers, name, dying(name))
        with pytest.raises(Killed):
            execute(_cfg(out), workload=_workload())
    assert not out.exists() and not is_finished(out)
    assert _hidden(tmp_path), "a hard kill leaves its staging directory (this test simulates one)"
    execute(_cfg(out), workload=_workload())
    assert is_finished(out) and _hidden(tmp_path) == []


@pytest.mark.parametrize("replace_calls_before_death", [0, 1])
def test_killed_mid_publish_over_an_old_run(replace_calls_before_death, tmp_path, monkeypatch) -> None:
    """A rerun (force) dies before or after moving the old run aside: old run intact, or no run."""
    out = tmp_path / "r"
    execute(_cfg(out), workload=_workload())
    old_summary = (out / "summary.json").read_text()
    real_replace = os.replace
    calls = {"n": 0}

    def dying_replace(src, dst):
        if calls["n"] == replace_calls_before_death:
            raise Killed()
        calls["n"] += 1
        return real_replace(src, dst)

    with monkeypatch.context() as m:
        _no_cleanup(m)
        m.setattr(atomic.os, "replace", dying_replace)
        with pytest.raises(Killed):
            execute(_cfg(out, "seed=7"), workload=_workload())
    if out.exists():
        assert is_finished(out) and (out / "summary.json").read_text() == old_summary
    else:
        assert not is_finished(out)
    execute(_cfg(out, "seed=7"), workload=_workload())
    assert is_finished(out) and _hidden(tmp_path) == []
    assert json.loads((out / "run.json").read_text())["seed"] == 7


def test_interrupted_run_cleans_its_staging_directory(tmp_path, monkeypatch) -> None:
    """Ctrl-C (not a hard kill) runs the clean-up: nothing at all is left."""
    out = tmp_path / "r"
    monkeypatch.setattr(writers, "write_json", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        execute(_cfg(out), workload=_workload())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("damage", [*RUN_FILES, "summary-garbage", "run-listed-trace", "empty-requests"])
def test_resume_check_rejects_every_partial_directory(damage, tmp_path) -> None:
    out = tmp_path / "r"
    execute(_cfg(out), workload=_workload())
    assert is_finished(out)
    if damage in RUN_FILES:
        (out / damage).unlink()
    elif damage == "summary-garbage":
        (out / "summary.json").write_text('{"overall": ')
    elif damage == "run-listed-trace":
        (out / "trace.json").unlink()
    else:
        (out / "requests.parquet").write_bytes(b"")
    assert not is_finished(out)
    assert load_runs(tmp_path).unfinished == ["r"]


def test_stale_staging_of_a_killed_run_is_removed_at_start(tmp_path) -> None:
    out = tmp_path / "r"
    for junk in (".r.tmp-abc123", ".r.old-def456"):
        (tmp_path / junk).mkdir()
        (tmp_path / junk / "requests.parquet").write_text("half")
    (tmp_path / ".other.tmp-x").mkdir()  # another run's staging: not ours to remove
    execute(_cfg(out), workload=_workload())
    assert is_finished(out) and _hidden(tmp_path) == [".other.tmp-x"]


def test_run_cli_reruns_a_directory_with_summary_but_no_requests(tmp_path, capsys) -> None:
    """The bug this replaces: summary.json alone made resume skip the run."""
    out = tmp_path / "r"
    out.mkdir()
    (out / "summary.json").write_text("{}")
    code, err = invoke("run", ["system=static", "workload=tiny", "cluster=tiny_1x4", f"out={out}"], capsys)
    assert code == 0 and is_finished(out), err
    code, _ = invoke("run", ["system=static", "workload=tiny", "cluster=tiny_1x4", f"out={out}"], capsys)
    assert code == 0


# ---------------------------------------------------------------- Ctrl-C and SIGTERM
def test_ctrl_c_is_one_line_with_how_to_resume(capsys) -> None:
    @cli_main
    def busy() -> None:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exc:
        busy()
    assert exc.value.code == EXIT_SIGINT
    err = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
    assert len(err) == 1 and "Ctrl-C" in err[0] and "run the same command again to resume" in err[0]


def test_sigterm_is_one_line_with_how_to_resume(capsys) -> None:
    @cli_main
    def busy() -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # the handler interrupts this at once

    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exc:
        busy()
    assert exc.value.code == EXIT_SIGTERM
    err = [s for s in capsys.readouterr().err.splitlines() if s.strip()]
    assert len(err) == 1 and "SIGTERM" in err[0] and "resume" in err[0]
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is put back


def test_ctrl_c_during_a_run_cli_writes_nothing(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(writers, "write_json", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt()))
    before = tree(tmp_path)
    code, err = invoke("run", ["system=static", "workload=tiny", "cluster=tiny_1x4", f"out={tmp_path / 'r'}"],
                       capsys)
    assert code == EXIT_SIGINT and len(err) == 1 and "resume" in err[0], err
    assert tree(tmp_path) == before
