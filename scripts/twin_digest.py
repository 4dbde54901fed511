"""Digest of the twin's outputs over a fixed grid of runs: a refactor that must not change behaviour
must not change these digests (docs: issue "outputs of run_all.sh are unchanged by the refactor").

    .venv/bin/python scripts/twin_digest.py OUT_DIR            # runs the grid, prints one digest per run
    .venv/bin/python scripts/twin_digest.py OUT_DIR --compare BASELINE.json

Each digest hashes the request log, timeline, utilisation and summary (the summary without wall time).
The grid covers every system, both settings, two rates and both prewarm mechanisms; each run replays
300 s (about 2 s each on the 2-core reference machine).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

SYSTEMS = ["warmserve", "serverlessllm", "muxserve", "static", "reactive", "oracle", "warmserve_no_kv",
           "warmserve_no_prediction", "warmserve_round_robin", "worker_prewarm"]
GRID: list[tuple[str, str, int, tuple[str, ...]]] = [
    (s, setting, rps, ()) for s in SYSTEMS for setting in ("paper4", "contended") for rps in (2, 8)] + [
    ("warmserve", "paper4", 8, ("hardware.lifecycle.prewarm_mechanism=sleep",)),
    ("serverlessllm", "paper4", 4, ("system.policy.keep_alive_s=60",)),
]


def frame_digest(df: pd.DataFrame) -> str:
    return hashlib.sha256(pd.util.hash_pandas_object(df, index=False).values.tobytes()
                          + ",".join(map(str, df.columns)).encode()).hexdigest()[:16]


def run_digest(d: Path) -> str:
    h = hashlib.sha256()
    for name in ("requests.parquet", "timeline.parquet", "utilization.parquet"):
        h.update(frame_digest(pd.read_parquet(d / name)).encode())
    summary = json.loads((d / "summary.json").read_text())
    summary.pop("wall_s", None)
    h.update(json.dumps(summary, sort_keys=True).encode())
    return h.hexdigest()[:16]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out", type=Path)
    ap.add_argument("--compare", type=Path)
    args = ap.parse_args()
    digests: dict[str, str] = {}
    for system, setting, rps, extra in GRID:
        key = "-".join([system, setting, str(rps), *extra])
        d = args.out / key.replace("=", "_").replace(".", "_")
        cmd = [sys.executable, "-m", "warmserve.run", f"system={system}", "workload=conv", f"workload.rps={rps}",
               f"+setting={setting}", "replay_s=300", "drain_s=300", "progress=false", "trace=false",
               f"out={d}", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True)
        digests[key] = run_digest(d) if r.returncode == 0 else f"FAILED: {r.stderr.strip().splitlines()[-1:]}"
        print(key, digests[key], flush=True)
    (args.out / "digests.json").write_text(json.dumps(digests, indent=1))
    if args.compare:
        base = json.loads(args.compare.read_text())
        diff = [k for k in base if base[k] != digests.get(k)]
        print(f"{len(diff)} of {len(base)} runs differ from {args.compare}: {diff}")
        return 1 if diff else 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
