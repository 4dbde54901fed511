"""``python -m warmserve.run backend=sim system=static workload=tiny cluster=paper_2x8 hardware=a100-80gb out=<dir>``

The Hydra app over ``configs/run.yaml``. Before Hydra composes anything the
overrides are checked (``warmserve.validation.overrides``), then every point
is validated (``warmserve.validation.checks.check_run``) and its output path
checked before its workload is built. Bad input prints one ``error:`` line
and exits 2 with nothing written (``warmserve.errors.cli_main``).

A finished run (``warmserve.rundir.is_finished``) is skipped unless
``force=true``, so an interrupted sweep resumes where it stopped.

Sweeps (``-m`` or a preset in MULTIRUN mode) fail per point: a point whose
input is bad, or that crashes, prints ``failed <out>: <error>``, leaves
``<out>/FAILED.json`` (unless a finished run is there) and returns normally,
so the launcher keeps running the other points (raising ``SystemExit`` in a
joblib worker would kill its neighbours). The jobs append their outcome to a
log this process names in ``WARMSERVE_SWEEP_LOG``; at the end the failed
points are listed and the exit code is 1.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from warmserve.atomic import atomic_output_dir
from warmserve.config import configs_dir
from warmserve.errors import EXIT_INPUT, InputError, cli_main
from warmserve.metrics.writers import write_json
from warmserve.run.execute import execute
from warmserve.rundir import FAILED, failure_record, is_finished
from warmserve.validation.checks import check_run
from warmserve.validation.overrides import check_overrides

SWEEP_LOG = "WARMSERVE_SWEEP_LOG"
EXIT_SWEEP_FAILED = 1  # some points of a sweep failed (each is listed; the others finished)


def _log(status: str, out: str, error: str = "") -> None:
    path = os.environ.get(SWEEP_LOG)
    if path:
        with open(path, "a", encoding="utf-8") as fh:  # one short append per job: atomic on POSIX
            fh.write(json.dumps({"status": status, "out": out, "error": error}) + "\n")


def _record_failure(out: str, error: str, detail: str = "") -> None:
    """``<out>/FAILED.json`` for a failed sweep point, unless that would replace a finished run."""
    try:
        if not out or is_finished(out) or (Path(out).exists() and not Path(out).is_dir()):
            return
        with atomic_output_dir(out) as stage:
            write_json(stage / FAILED, failure_record(error, detail=detail))
    except OSError:
        pass  # the output path itself is the problem; the error line and the sweep log still name it


def _multirun() -> bool:
    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="run")
def _app(cfg: DictConfig) -> None:
    out = str(OmegaConf.select(cfg, "out", default="", throw_on_resolution_failure=False) or "")
    try:
        check_run(cfg)
        if is_finished(out) and not OmegaConf.select(cfg, "force", default=False):
            print(f"skip {out}", flush=True)
            _log("skip", out)
            return
        execute(cfg)
    except Exception as exc:
        line = str(exc) if isinstance(exc, InputError) else f"internal error: {type(exc).__name__}: {exc}"
        if not _multirun():
            if isinstance(exc, InputError):
                print(f"error: {line}", file=sys.stderr)
                raise SystemExit(EXIT_INPUT) from None
            raise
        _record_failure(out, line, "" if isinstance(exc, InputError) else traceback.format_exc())
        print(f"failed {out}: error: {line}", flush=True)
        _log("failed", out, line)
        return
    print(f"wrote {out}", flush=True)
    _log("wrote", out)


def _summary(log: Path) -> int:
    """Print the failed points of a sweep; the exit code for the whole command."""
    rows = [json.loads(s) for s in log.read_text().splitlines() if s.strip()] if log.is_file() else []
    failed = [r for r in rows if r["status"] == "failed"]
    if not failed:
        return 0
    print(f"sweep: {len(failed)} of {len(rows)} points failed (each left {FAILED} where its run would be; "
          "fix and rerun the same command to run only those):", file=sys.stderr)
    for r in failed:
        print(f"  {r['out']}: error: {r['error']}", file=sys.stderr)
    return EXIT_SWEEP_FAILED


@cli_main
def main() -> None:
    check_overrides(sys.argv[1:], "run")
    fd, name = tempfile.mkstemp(prefix="warmserve-sweep-", suffix=".jsonl")
    os.close(fd)
    os.environ[SWEEP_LOG] = name
    try:
        _app()
        rc = _summary(Path(name))
    finally:
        os.environ.pop(SWEEP_LOG, None)
        Path(name).unlink(missing_ok=True)
    if rc:
        raise SystemExit(rc)


if __name__ == "__main__":
    main()
