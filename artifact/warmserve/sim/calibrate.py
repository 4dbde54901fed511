"""Fit the twin's iteration-latency coefficients from the bundled Vidur profiles.

Run ``python -m warmserve.sim.calibrate`` to print the ``latency:`` blocks
that ``configs/hardware/{a100,h100}-80gb.yaml`` carry (the YAML comments quote
this command). Model:

* prefill (ms) = overhead + a_p + b_p * prompt_tokens_in_batch
* decode step (ms) = overhead + a_d + b_d * batch + c_d * context_tokens_in_batch

``a, b`` are least-squares lines through Vidur's per-layer operator medians
(all non-attention ops of one layer, ``mlp.csv``) times the layer count, plus
two all-reduces per layer of ``tokens x hidden x 2 B`` for TP > 1
(``all_reduce.csv``, interpolated), fitted over 1-256 tokens (decode) and
128-4096 tokens (prefill). ``c_d`` is the attention's KV read, memory-bound:
KV bytes per token per GPU / (HBM bandwidth x efficiency). Prefill attention
is omitted: at <=1024 tokens its FLOPs are <=4 % of the linear layers'
(ratio s / 6d). Llama-2-13B has no Vidur profile: its layer times are the 7B
layer times scaled by (5120/4096)^2 (matmul FLOPs per token ~ hidden^2).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from omegaconf import DictConfig

from warmserve.config import bundled, load_yaml

VIDUR_MODEL = {"llama2-7b": ("Llama-2-7b-hf", 1.0), "llama2-13b": ("Llama-2-7b-hf", (5120 / 4096) ** 2),
               "llama2-70b": ("Llama-2-70b-hf", 1.0)}


VIDUR = Path("profiles") / "vidur"  # under data/ (data/SOURCES.md), gzip of Vidur's CSVs


def _layer_table(gpu: str, vidur_name: str) -> pd.DataFrame:
    df = pd.read_csv(bundled(VIDUR / "compute" / gpu / "meta-llama" / vidur_name / "mlp.csv.gz"))
    ops = [c for c in df.columns if c.startswith("time_stats.") and c.endswith(".median") and ".emb." not in c]
    df = df.assign(layer_ms=df[ops].sum(axis=1))
    return df[["num_tokens", "num_tensor_parallel_workers", "layer_ms"]]


def _allreduce_ms(network: str, tp: int, nbytes: np.ndarray) -> np.ndarray:
    if tp == 1:
        return np.zeros_like(nbytes, dtype=float)
    ar = pd.read_csv(bundled(VIDUR / "network" / network / "all_reduce.csv.gz"))
    ar = ar[(ar.num_workers == tp) & (ar.devices_per_node == tp)].sort_values("size")
    return np.interp(nbytes, ar["size"].to_numpy(), ar["time_stats.all_reduce.median"].to_numpy())


def fit(gpu: str, network: str, hbm_GBps: float, attn_eff: float, overhead_ms: float) -> dict:
    out: dict = {}
    for base, (vname, scale) in VIDUR_MODEL.items():
        mc = load_yaml("model", base)
        table = _layer_table(gpu, vname)
        out[base] = {}
        for tp in (1, 2, 4, 8):
            t = table[table.num_tensor_parallel_workers == tp].sort_values("num_tokens")
            tok = t.num_tokens.to_numpy(float)
            it = mc.layers * (t.layer_ms.to_numpy() * scale + 2 * _allreduce_ms(network, tp, tok * mc.hidden * 2))
            dec = tok <= 256
            pre = (tok >= 128) & (tok <= 4096)
            b_d, a_d = np.polyfit(tok[dec], it[dec], 1)
            b_p, a_p = np.polyfit(tok[pre], it[pre], 1)
            c_d = mc.kv_bytes_per_token / tp / (hbm_GBps * 1e9 * attn_eff) * 1e3
            out[base][f"tp{tp}"] = {
                "prefill_base_ms": round(float(a_p) + overhead_ms, 3),
                "prefill_per_token_ms": round(float(b_p), 6),
                "decode_base_ms": round(float(a_d) + overhead_ms, 3),
                "decode_per_seq_ms": round(float(b_d), 6),
                "decode_per_ctx_token_ms": round(float(c_d), 8),
            }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpu", default="a100", choices=["a100", "h100"])
    ap.add_argument("--hbm-GBps", type=float, default=None,
                    help="HBM bandwidth (default: the profile's hbm_GBps, the spec sheet's, configs/hardware)")
    ap.add_argument("--attn-eff", type=float, default=0.7)
    ap.add_argument("--overhead-ms", type=float, default=3.0)
    a = ap.parse_args()
    profile = {"a100": "a100-80gb", "h100": "h100-80gb"}[a.gpu]
    hbm = a.hbm_GBps or float(cast(DictConfig, load_yaml("hardware", profile))["hbm_GBps"])  # a mapping
    net = {"a100": "a100_dgx", "h100": "h100_dgx"}[a.gpu]
    res = fit(a.gpu, net, hbm, a.attn_eff, a.overhead_ms)
    for base, per_tp in res.items():
        print(f"  {base}:")
        for tp, c in per_tp.items():
            print(f"    {tp}: {{{', '.join(f'{k}: {v}' for k, v in c.items())}}}")
    # sanity: compare with the published constants (1024-token prompt, batch 1, 512 context)
    for base, tp in (("llama2-7b", "tp1"), ("llama2-13b", "tp2"), ("llama2-70b", "tp4")):
        c = res[base][tp]
        pre = c["prefill_base_ms"] + 1024 * c["prefill_per_token_ms"]
        dec = c["decode_base_ms"] + c["decode_per_seq_ms"] + 1024 * c["decode_per_ctx_token_ms"]
        print(f"# {base} {tp}: prefill(1024) {pre:.1f} ms, decode(batch 1, ctx 1024) {dec:.1f} ms")


if __name__ == "__main__":
    main()
