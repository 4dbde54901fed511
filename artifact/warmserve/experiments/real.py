"""``BACKEND=<testbed...> bash run_all.sh``: the experiment catalog on real engines, with the twin beside it.

``python -m warmserve.experiments.real --backend testbed-gpu [--quick] [--yes] [--preset NAME]``

1. reads the hardware (``hardware_probe``: GPUs and their memory through NVML
   or torch, usable cores, Ray nodes with ``--ray``) and picks the largest
   preset of ``configs/real/`` that fits (``real_plan.choose``);
2. refuses to start, with one line saying what to do, when a checkpoint is
   missing (the exact fetch command; ``--download`` runs it), when vLLM is not
   installed, or when the GPUs are busy (``configs/real/_limits.yaml``);
3. replays every point on the twin first -- cheap, and the twin's per-run
   end time is the plan's estimate (replay + drain + start-up + overhead) --
   prints the plan and asks before a long one (``--yes`` skips; without a
   terminal it refuses instead of waiting);
4. on GPUs without a profile of this machine, runs ``python -m
   warmserve.calibrate --mode gpu`` first and merges it into
   ``configs/hardware/local-<gpu>.yaml`` (git-ignored), used by both sides;
5. runs each point on the real backend, one at a time (finished runs are
   skipped: an interrupted reproduction resumes where it stopped; the testbed
   stops its engines on any exit), then the twin of every real point that
   has none yet, the side-by-side table and the catalog's notebooks with
   results, tables and figures under ``results/real/<backend>-<preset>/``
   and ``figures/real/<backend>-<preset>/``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf

from warmserve.config import REPO_ROOT, configs_dir
from warmserve.errors import InputError, cli_main
from warmserve.experiments import fmt_duration
from warmserve.experiments import hardware_probe as hp
from warmserve.experiments import real_plan as rp
from warmserve.experiments.__main__ import run_preset
from warmserve.experiments.points import compose_run, finished


def machine_for(backend: str, ray: str | None) -> hp.Machine:
    """The real machine, or the fake GPUs ``testbed-stub-gpu`` runs on (sized by its presets)."""
    if backend == "testbed-stub-gpu":
        n = max(int(p.doc.get("fake_gpus", 1)) for p in rp.presets().values() if backend in p["backends"])
        mem = int(compose_run(["hardware=h100-80gb"]).hardware.gpu_mem_bytes)
        return hp.fake_machine(n, mem)
    return hp.probe(ray_address=ray)


def local_profile(machine: hp.Machine) -> str:
    """The name of this machine's calibrated profile (configs/hardware/<name>.yaml, may not exist yet)."""
    return "local-" + rp.slug(machine.describe("cuda").replace("fake GPUs: ", "fake-"))


def checks(a: argparse.Namespace, preset: rp.Preset, machine: hp.Machine, bcfg, gpu_ids: list[int]) -> None:
    """Refuse to start (InputError, one line each) when something the real runs need is missing or busy."""
    if a.backend in ("testbed", "testbed-gpu") and importlib.util.find_spec("vllm") is None:
        raise InputError(f"BACKEND={a.backend} needs vLLM in .venv: "
                         + ("WITH_TESTBED=1 bash scripts/setup_env.sh" if a.backend == "testbed"
                            else ".venv/bin/pip install vllm nvidia-ml-py"))
    ckpt = Path(str(bcfg.checkpoint_dir))
    ckpt = ckpt if ckpt.is_absolute() else REPO_ROOT / ckpt
    missing = rp.missing_checkpoints(preset, ckpt, bool(bcfg.engine.get("needs_checkpoint", True)))
    if missing and a.download:
        for base, cmd in missing:
            print(f"fetching {base}: {cmd}", flush=True)
            if subprocess.call(shlex.split(cmd.replace("python ", f"{sys.executable} ", 1)), cwd=REPO_ROOT):
                raise InputError(f"fetching {base} failed: {cmd}")
        missing = rp.missing_checkpoints(preset, ckpt, True)
    if missing:
        raise InputError("missing checkpoints (nothing is downloaded without --download); fetch them with: "
                         + " && ".join(cmd for _, cmd in missing))
    if a.backend == "testbed-gpu":
        lim = rp.limits()["gpu_busy"]
        busy = hp.busy_gpus(machine, gpu_ids, max_used_fraction=float(lim["max_used_fraction"]),
                            max_processes=int(lim["max_processes"]))
        if busy:
            raise InputError("GPUs in use by another job (limits in configs/real/_limits.yaml): " + "; ".join(busy))


def run_side(steps: list[rp.Step], *, real: bool, force: bool, spec_dir: Path, preset: rp.Preset,
             quick: bool, root: str) -> int:
    """Run every step on one side; real runs one at a time (one set of engines per machine)."""
    from warmserve.experiments import capacity_search

    for s in steps:
        print(f"== {'measured' if real else 'twin'}: {s.experiment} / {s.preset}", flush=True)
        if s.preset == "capacity_search":
            spec = rp.capacity_spec(preset, quick, root, list(s.overrides),
                                    spec_dir / f"capacity-{Path(root).name}.yaml")
            rc = capacity_search.main(["--spec", str(spec), "--jobs", "1" if real else "2"]
                                      + (["--force"] if force else []))
        else:
            rc = run_preset(s.preset, quick=False, force=force, jobs=1 if real else 2, extra=list(s.overrides))
        if rc:
            return rc
    return 0


def set_aside_partial(measured: Path) -> list[str]:
    """Move runs that Ctrl-C cut short (run.json ``backend.partial``) to ``<experiment>/.partial/``, so a
    resumed reproduction reruns them instead of skipping them as finished (and no table reads them)."""
    moved = []
    for r in sorted(measured.glob("*/*/run.json")):
        if not json.loads(r.read_text()).get("backend", {}).get("partial"):
            continue
        dst = r.parent.parent / ".partial" / f"{r.parent.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        r.parent.rename(dst)
        moved.append(rp.rel(dst))
    return moved


def twin_beside(measured: Path, twin: Path) -> int:
    """Replay on the twin every finished real run that has no twin of the same name (the capacity search
    probes rates of its own on each side): its run.json config with the backend swapped for the twin's."""
    from warmserve.run.execute import execute

    sim = compose_run(["backend=sim"]).backend
    n = 0
    for s in sorted(measured.glob("*/*/summary.json")):
        dst = twin / s.parent.parent.name / s.parent.name
        if finished(dst):
            continue
        cfg = OmegaConf.create(json.loads((s.parent / "run.json").read_text())["config"])
        cfg.backend = sim
        cfg.out = str(dst)
        cfg.progress = False
        execute(cfg)
        n += 1
    return n


def estimate(twin: Path, measured: Path, preset: rp.Preset, overhead_s: float) -> dict[str, tuple[int, int, float]]:
    """Per experiment: (points, already measured, estimated seconds left) from the twin's end times."""
    out: dict[str, tuple[int, int, float]] = {}
    for s in sorted(twin.glob("*/*/summary.json")):
        exp = s.parent.parent.name
        n, done, est = out.get(exp, (0, 0, 0.0))
        if finished(measured / exp / s.parent.name):
            out[exp] = (n + 1, done + 1, est)
            continue
        end = float(json.loads(s.read_text()).get("end_s") or 0.0)
        out[exp] = (n + 1, done, est + end + float(preset["startup_s"]) + overhead_s)
    return out


def confirm(total_s: float, limit_s: float, yes: bool) -> None:
    if total_s <= limit_s or yes:
        return
    msg = (f"the plan takes ~{fmt_duration(total_s)}, above the {fmt_duration(limit_s)} limit "
           "(configs/real/_limits.yaml)")
    if not sys.stdin.isatty():
        raise InputError(f"{msg}; not asking without a terminal: rerun with --yes (YES=1 bash run_all.sh)")
    if input(f"{msg}. Run it? [y/N] ").strip().lower() not in ("y", "yes"):
        raise InputError("not confirmed; nothing was run on real engines")


def calibrate(preset: rp.Preset, machine: hp.Machine, name: str) -> None:
    """``python -m warmserve.calibrate --mode gpu`` merged into the preset's profile -> configs/hardware/<name>."""
    frag = REPO_ROOT / "outputs" / f"{name}-calibration.yaml"
    cmd = [sys.executable, "-m", "warmserve.calibrate", "--mode", "gpu", "--models", *preset.bases(),
           "--out", str(frag)]
    print("calibrating this machine: " + " ".join(cmd[1:]), flush=True)
    if subprocess.call(cmd, cwd=REPO_ROOT):
        raise InputError("GPU calibration failed; see its output above")
    base = compose_run([f"hardware={preset['hardware']}"]).hardware  # composed: a profile may extend another
    prof = OmegaConf.merge(base, OmegaConf.load(frag), {"name": name})
    head = "".join(f"# {ln}\n" for ln in (f"{machine.describe('cuda')}: {preset['hardware']}.yaml with this machine's "
                                          "calibration merged in (warmserve.experiments.real)",
                                          frag.read_text().splitlines()[0].lstrip("# ")))
    (configs_dir() / "hardware" / f"{name}.yaml").write_text(head + OmegaConf.to_yaml(prof))


def notebooks(preset_root: Path, figures: Path, names: list[str]) -> int:
    env = dict(os.environ, WARMSERVE_RESULTS=str(preset_root / "measured"),
               WARMSERVE_TABLES=str(preset_root / "tables"), WARMSERVE_FIGURES=str(figures))
    cmd = [sys.executable, str(REPO_ROOT / "scripts" / "run_notebooks.py"), *names,
           "--out", str(preset_root / "notebooks")]
    return subprocess.call(cmd, cwd=REPO_ROOT, env=env)


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m warmserve.experiments.real", description=__doc__.splitlines()[0])
    p.add_argument("--backend", required=True, choices=rp.REAL_BACKENDS)
    p.add_argument("--quick", action="store_true", help="the preset's quick points (one or two per experiment)")
    p.add_argument("--force", action="store_true", help="rerun finished runs")
    p.add_argument("--yes", action="store_true", help="do not ask before a plan above the time limit")
    p.add_argument("--preset", default=None, help="a configs/real/ preset (default: the largest that fits)")
    p.add_argument("--ray", default=None, metavar="ADDRESS", help="count GPU nodes of this Ray cluster ('auto')")
    p.add_argument("--download", action="store_true", help="fetch missing checkpoints with the preset's commands")
    p.add_argument("--only", nargs="*", default=None, help="only these experiments (catalog names)")
    p.add_argument("--plan", action="store_true", help="print the plan (after the twin's replay) and stop")
    p.add_argument("--no-notebooks", action="store_true")
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    lim = rp.limits()
    machine = machine_for(a.backend, a.ray)
    preset = rp.choose(a.backend, machine, a.preset)
    device = preset.device
    print(f"machine: {machine.describe(device)} (GPUs read via {machine.source}); "
          f"preset {preset.name}: {preset['about']}", flush=True)
    gpu_ids = [g.index for g in machine.gpus][: int(preset["fits"]["gpus"])]
    bcfg = compose_run([f"backend={a.backend}"]).backend
    checks(a, preset, machine, bcfg, gpu_ids)
    hw = str(preset["hardware"])
    calib = a.backend == "testbed-gpu" and not (configs_dir() / "hardware" / f"{local_profile(machine)}.yaml").is_file()
    if a.backend == "testbed-gpu" and not calib:
        hw = local_profile(machine)
    tag = f"{a.backend}-{preset.name}" + ("-quick" if a.quick else "")
    root = REPO_ROOT / "results" / "real" / tag
    probe_csv = rp.write_probe_csv(preset, root / "coldstart_probe.csv")
    for part in set_aside_partial(root / "measured"):
        print(f"interrupted run set aside, to be rerun: {part}", flush=True)

    def plan_steps(backend: str, side: str, hardware: str) -> list[rp.Step]:
        base = rp.base_overrides(preset, backend, hardware, machine, a.quick, gpu_ids)
        st = rp.steps(preset, base, rp.rel(root / side), a.quick, str(probe_csv))
        return [s for s in st if a.only is None or s.experiment in a.only]

    twin = root / f"twin-{hw}"
    print(f"\n-- the twin replays every point first ({twin.relative_to(REPO_ROOT)}): its end times are the estimate",
          flush=True)
    if rc := run_side(plan_steps("sim", twin.name, hw), real=False, force=a.force, spec_dir=root, preset=preset,
                      quick=a.quick, root=rp.rel(twin)):
        return rc
    est = estimate(twin, root / "measured", preset, float(lim["run_overhead_s"]))
    calib_s = float(lim["calibration_est_s"])  # configs/real/_limits.yaml
    total = sum(e for _, _, e in est.values()) + (calib_s if calib else 0)
    print(f"\nPLAN ({'quick' if a.quick else 'full'}) on {machine.describe(device)}, BACKEND={a.backend}, preset "
          f"{preset.name}, results in {root.relative_to(REPO_ROOT)}:")
    for exp, (n, done, e) in est.items():
        print(f"  {exp:12s} {n:3d} points ({done} already measured)  est {fmt_duration(e)}")
    for exp, why in lim["twin_only"].items():
        print(f"  {exp:12s} twin only: {why}")
    if calib:
        print(f"  calibration  python -m warmserve.calibrate --mode gpu  est {fmt_duration(calib_s)}")
    print(f"  estimated wall time {fmt_duration(total)} (twin replay + drain per point, + {preset['startup_s']} s "
          f"engine start-up and {lim['run_overhead_s']} s overhead per run)", flush=True)
    if a.plan:
        return 0
    confirm(total, float(lim["confirm_above_s"]), a.yes)
    if calib:
        calibrate(preset, machine, local_profile(machine))
        hw = local_profile(machine)
        twin = root / f"twin-{hw}"
    measured = root / "measured"
    print(f"\n-- real engines ({a.backend}): {measured.relative_to(REPO_ROOT)}", flush=True)
    if rc := run_side(plan_steps(a.backend, "measured", hw), real=True, force=a.force, spec_dir=root, preset=preset,
                      quick=a.quick, root=rp.rel(measured)):
        return rc
    n = twin_beside(measured, twin)
    print(f"\n-- twin beside: {n} more point(s) replayed on the twin ({hw})", flush=True)
    from warmserve.analysis import side_by_side

    what = "stub engines (no measurement)" if "stub" in a.backend else "measured"
    md = side_by_side.write(measured, twin, root / "tables", measured_label=f"{what}, {machine.describe(device)}",
                            twin_label=f"simulated, {hw} profile")
    print(f"wrote {md.relative_to(REPO_ROOT)}", flush=True)
    if not a.no_notebooks and (rc := notebooks(root, REPO_ROOT / "figures" / "real" / tag, list(lim["notebooks"]))):
        return rc
    print(f"\nreal-engine reproduction ({tag}) finished in {fmt_duration(time.perf_counter() - t0)}: "
          f"{root.relative_to(REPO_ROOT)}/tables, figures/real/{tag}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
