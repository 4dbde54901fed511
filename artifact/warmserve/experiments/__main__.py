"""``python -m warmserve.experiments {list,run} ...``: run the paper's experiments with progress.

``run NAME... [--quick] [--force] [--jobs N] [-- HYDRA_OVERRIDES...]`` runs each
experiment of ``warmserve.experiments.catalog``: its presets as Hydra multiruns
of ``python -m warmserve.run +experiment=<preset>`` (joblib launcher), or its
script. Finished runs are skipped (``warmserve.rundir.is_finished``)
unless ``--force``; because every run writes atomically, an interrupted sweep
resumes where it stopped. ``--quick`` adds each preset's ``quick_overrides``
(fewer points, 5-minute replays). Extra overrides after ``--`` go to every run,
e.g. ``-- backend=testbed`` or ``-- hydra/launcher=ray``. A failed point or
preset does not stop the others; the failures are listed at the end, exit 1.
"""

from __future__ import annotations

import argparse
import importlib
import re
import subprocess
import sys
import time

from warmserve.config import REPO_ROOT, configs_dir, load_mapping
from warmserve.errors import InputError, cli_main
from warmserve.experiments import fmt_duration, record_timing
from warmserve.experiments.catalog import CATALOG
from warmserve.validation.overrides import check_overrides

_LAUNCH = re.compile(r"launching (\d+) jobs")


def _quick_overrides(preset: str) -> list[str]:
    raw = load_mapping(configs_dir() / "experiment" / f"{preset}.yaml")
    return [str(o) for o in raw.get("quick_overrides", [])]


def run_preset(preset: str, *, quick: bool, force: bool, jobs: int, extra: list[str]) -> int:
    """Run one multirun preset; stream a one-line progress report per finished run."""
    cmd = [sys.executable, "-m", "warmserve.run", f"+experiment={preset}"]
    if not any(o.startswith("hydra/launcher=") for o in extra):  # n_jobs is the joblib launcher's key
        cmd.append(f"hydra.launcher.n_jobs={jobs}")
    if force:
        cmd.append("force=true")
    if quick:
        cmd += _quick_overrides(preset)
    cmd += extra
    t0 = time.perf_counter()
    total, done = 0, 0
    proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-30:]
        if m := _LAUNCH.search(line):
            total = int(m.group(1))
        elif line.startswith(("wrote ", "skip ", "failed ")):  # one line per point (warmserve.run.__main__)
            done += 1
            el = time.perf_counter() - t0
            eta = el / done * (total - done) if total else 0.0
            status, where = line.split()[0], line.split()[1].rstrip(":")
            print(f"  [{preset}] {done}/{total or '?'} {status:6s} {where}  "
                  f"elapsed {fmt_duration(el)}  eta {fmt_duration(eta)}", flush=True)
    rc = proc.wait()
    if rc != 0:
        print("\n".join(tail), file=sys.stderr)
    return rc


def run(names: list[str], *, quick: bool, force: bool, jobs: int, extra: list[str]) -> int:
    for name in names:
        if name not in CATALOG:
            raise InputError(f"unknown experiment '{name}'; choose from {sorted(CATALOG)}")
    if jobs < 1:
        raise InputError(f"--jobs: must be >= 1, got {jobs}")
    for name in names:  # a typo in the overrides is one line before any preset starts
        for preset in CATALOG[name].presets:
            check_overrides([f"+experiment={preset}", *extra], "run")
    failed: list[str] = []
    for name in names:
        exp = CATALOG[name]
        print(f"== experiment {name}: {exp.claim}", flush=True)
        t0 = time.perf_counter()
        rc = 0
        for preset in exp.presets:  # a preset with failed points does not stop the next one
            rc = run_preset(preset, quick=quick, force=force, jobs=jobs, extra=extra) or rc
        if exp.script and not rc:
            mod, fn = exp.script.split(":")
            args = (["--quick"] if quick else []) + (["--force"] if force else [])
            rc = int(getattr(importlib.import_module(mod), fn)(args) or 0)
        took = time.perf_counter() - t0
        if rc:
            print(f"== experiment {name} FAILED (exit {rc}) after {fmt_duration(took)}", file=sys.stderr)
            failed.append(name)
            continue
        record_timing(f"{name}{'@quick' if quick else ''}", took)
        print(f"== experiment {name} done in {fmt_duration(took)}", flush=True)
    if failed:
        print(f"== failed: {', '.join(failed)} (finished runs are kept; rerun the same command to retry)",
              file=sys.stderr)
        return 1
    return 0


@cli_main
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra: list[str] = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1 :]
    p = argparse.ArgumentParser(prog="python -m warmserve.experiments", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="list the experiments and the claims they test")
    r = sub.add_parser("run", help="run experiments (skips finished runs)")
    r.add_argument("names", nargs="+", help=f"experiment names: {', '.join(CATALOG)} or 'all'")
    r.add_argument("--quick", action="store_true", help="reduced sweep: few points, 5-minute replays")
    r.add_argument("--force", action="store_true", help="rerun finished runs")
    r.add_argument("--jobs", type=int, default=2, help="parallel runs (joblib workers)")
    a = p.parse_args(argv)
    if a.cmd == "list":
        for e in CATALOG.values():
            src = ", ".join(e.presets) if e.presets else e.script
            print(f"{e.name:12s} {e.notebook:22s} {src}\n{'':12s} claim: {e.claim}")
        return 0
    names = list(CATALOG) if a.names == ["all"] else a.names
    rc = run(names, quick=a.quick, force=a.force, jobs=a.jobs, extra=extra)
    if rc:
        raise SystemExit(rc)
    return 0


if __name__ == "__main__":
    main()
