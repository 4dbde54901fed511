#!/usr/bin/env python
"""Benchmark: load + recipe + history on a real-size (27.3 M-row) synthetic 2024 conv week.

    .venv/bin/python scripts/bench_workload.py [--rows 27303999] [--keep DIR]

1. Generates a synthetic conv week with as many rows as the real 2024 conv file
   (27,303,999; data/SOURCES.md) in the exact 2024 CSV schema, in a child process
   (not timed: generation is not part of the target).
2. In a fresh child process, builds the default workload (models=paper4,
   alpha=2, rps=1, seed=42) from that CSV with ``source=azure2024`` and the
   cache off, i.e. parse + re-base + recipe + per-window history for the three
   service-time constants, and prints wall time per stage and peak RSS.

Target (issue 2): <= 60 s and <= 8 GB peak RSS on the 2-core machine.
The machine may be shared: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL_CONV_ROWS = 27_303_999  # data/SOURCES.md (Azure 2024 conv week)


def generate(path: Path, rows: int) -> None:
    import numpy as np
    from omegaconf import OmegaConf

    from warmserve.config import configs_dir
    from warmserve.workload import synthetic

    cfg = OmegaConf.load(configs_dir() / "source" / "synthetic.yaml")
    env = synthetic.load_envelope(synthetic._data_path(cfg.envelope.conv))
    mid, _ = synthetic.envelope_per_minute(env)
    cfg.scale = rows / float(np.sum(mid))  # expected rows = target
    t = time.perf_counter()
    us, ctx, gen, info = synthetic.synthesize(cfg)
    synthetic.write_azure_csv(path, us, ctx, gen)
    print(json.dumps({"generated_rows": int(len(us)), "csv_bytes": path.stat().st_size,
                      "generate_s": round(time.perf_counter() - t, 1)}))


def build(path: Path) -> None:
    from warmserve.workload.api import build_workload

    cfg = {"source": {"name": "azure2024", "path": str(path), "cache": False}, "models": "paper4", "alpha": 2,
           "rps": 1, "seed": 42}
    t = time.perf_counter()
    bundle = build_workload(cfg)
    wall = time.perf_counter() - t
    ru = resource.getrusage(resource.RUSAGE_SELF)
    rss_gb = ru.ru_maxrss * 1024 / 1e9
    cpu_s = ru.ru_utime + ru.ru_stime  # less sensitive to other jobs on a shared machine than wall time
    print(
        json.dumps(
            {
                "rows_loaded": bundle.meta["source_counts"]["rows_kept"],
                "requests": len(bundle.requests),
                "wall_s": round(wall, 1),
                "stages_s": {k: round(v, 1) for k, v in bundle.meta["build_timings_s"].items()},
                "cpu_s": round(cpu_s, 1),
                "peak_rss_gb": round(rss_gb, 2),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    ap.add_argument("--rows", type=int, default=REAL_CONV_ROWS)
    ap.add_argument("--keep", type=Path, help="directory to keep the generated CSV in (default: a temp dir)")
    ap.add_argument("--child", choices=["generate", "build"], help=argparse.SUPPRESS)
    ap.add_argument("--csv", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "generate":
        return generate(a.csv, a.rows)
    if a.child == "build":
        return build(a.csv)
    tmp = Path(tempfile.mkdtemp(prefix="bench-workload-", dir=a.keep))
    csv = tmp / "synthetic_conv_1week.csv"
    try:
        for child in ("generate", "build"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", child, "--csv", str(csv), "--rows", str(a.rows)],
                check=True, capture_output=True, text=True,
            ).stdout.strip().splitlines()[-1]
            print(f"{child}: {out}")
        print(f"load average (1/5/15 min): {os.getloadavg()} on {os.cpu_count()} CPUs "
              "(shared machine: other work inflates wall time)")
        print("target: load + recipe + history <= 60 s, peak RSS <= 8 GB")
    finally:
        if a.keep is None:
            csv.unlink(missing_ok=True)
            tmp.rmdir()


if __name__ == "__main__":
    main()
