"""Fit the compute-sharing exponents of configs/hardware/a100-80gb.yaml (docs/muxserve.md §2).

Input: MuxServe's published A100-80GB profile of Llama models under MPS,
``examples/placement/llama.json`` of github.com/hao-ai-lab/MuxServe (not bundled:
750 kB, fetch it yourself). Layout: model -> GPUs -> SM percentage -> batch size
-> sequence length -> {"prefill": ms, "decoding": ms}; -1 = not measured.

For each TP degree and phase, pooled over models, batch sizes and lengths, it
fits ``ratio = share ** -exponent`` by least squares on logs (through the
origin: ratio 1 at share 1), where ratio = latency at the share / latency at
100 %. It also prints the median ratio per share, the table in the doc.

    python scripts/fit_mps_exponents.py path/to/llama.json
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

PHASES = {"prefill": "prefill_exponent", "decoding": "decode_exponent"}


def ratios(cost: dict, phase: str, tp: str) -> dict[int, list[float]]:
    """Share percentage -> latency ratios against 100 % for one phase and TP degree."""
    out: dict[int, list[float]] = {}
    for per_gpus in cost.values():
        if tp not in per_gpus or "100" not in per_gpus[tp]:
            continue
        full = per_gpus[tp]["100"]
        for pct, per_bs in per_gpus[tp].items():
            if pct == "100":
                continue
            for bs, per_len in per_bs.items():
                for length, lat in per_len.items():
                    ref = full.get(bs, {}).get(length, {}).get(phase, -1)
                    if lat[phase] > 0 and ref > 0:
                        out.setdefault(int(pct), []).append(lat[phase] / ref)
    return out


def fit(by_share: dict[int, list[float]]) -> float:
    """Least-squares exponent of ``ratio = share ** -e`` on logs, through the origin."""
    xs = [(math.log(p / 100), math.log(r)) for p, rs in by_share.items() for r in rs]
    return -sum(x * y for x, y in xs) / sum(x * x for x, _ in xs)


def main(path: str) -> None:
    cost = json.loads(Path(path).read_text())
    for phase, key in PHASES.items():
        print(f"{key}:")
        for tp in ("1", "2", "4", "8"):
            by = ratios(cost, phase, tp)
            if not by:
                continue
            med = " ".join(f"{p}%:{statistics.median(by[p]):.2f}" for p in sorted(by))
            print(f"  tp{tp}: {fit(by):.3f}   (n={sum(map(len, by.values()))}; median ratio {med})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
