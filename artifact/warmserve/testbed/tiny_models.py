"""Random-weight Llama checkpoints made locally (no downloads, no tokenizer).

The testbed needs real checkpoints vLLM can load, of chosen sizes, so that
engine start and weight loading are real work; their outputs are meaningless
(random weights), which is fine: the replay sends token ids and forces
``ignore_eos``, so only timing matters. Sizes are named in
``configs/model/tiny-*.yaml`` (architecture fields ``layers, hidden, heads,
kv_heads, intermediate, vocab``); a checkpoint is written to
``<out>/<name>/`` with ``config.json`` and ``model.safetensors``. Weights are
seeded, so the same command writes the same bytes. Existing checkpoints whose
config matches are kept (idempotent).

Run: ``python -m warmserve.testbed.tiny_models --out .cache/models --sizes tiny-s tiny-m``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from warmserve.config import model_checkpoint
from warmserve.errors import InputError, cli_main

ARCH_FIELDS = ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "max_position", "dtype")


def llama_config_dict(name: str) -> dict:
    """The HF ``LlamaConfig`` kwargs for ``configs/model/<name>.yaml``."""
    cfg = model_checkpoint(name)
    missing = [f for f in ARCH_FIELDS if f not in cfg]
    if missing:
        raise InputError(f"configs/model/{name}.yaml: missing architecture fields {missing}")
    return {
        "hidden_size": int(cfg.hidden),
        "intermediate_size": int(cfg.intermediate),
        "num_hidden_layers": int(cfg.layers),
        "num_attention_heads": int(cfg.heads),
        "num_key_value_heads": int(cfg.kv_heads),
        "vocab_size": int(cfg.vocab),
        "max_position_embeddings": int(cfg.max_position),
        "torch_dtype": str(cfg.dtype),
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
    }


def make_checkpoint(name: str, out: Path, seed: int = 0) -> tuple[Path, int]:
    """Write (or keep) ``out/name``; returns its path and the weight bytes on disk."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    kwargs = llama_config_dict(name)
    target = out / name
    stamp = target / "warmserve-tiny.json"
    want = {"name": name, "seed": seed, **kwargs}
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return target, _weight_bytes(target)
    torch.manual_seed(seed)
    dtype = getattr(torch, kwargs["torch_dtype"])
    config = LlamaConfig(**{k: v for k, v in kwargs.items() if k != "torch_dtype"})
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(dtype)
    for p in model.parameters():  # HF init is near-zero for some layers: make activations non-trivial
        torch.nn.init.normal_(p, std=0.02)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(target, safe_serialization=True)
    cfg_path = target / "config.json"
    cfg_json = json.loads(cfg_path.read_text())
    cfg_json["torch_dtype"] = kwargs["torch_dtype"]
    cfg_json["dtype"] = kwargs["torch_dtype"]
    cfg_path.write_text(json.dumps(cfg_json, indent=2))
    stamp.write_text(json.dumps(want, indent=2))
    return target, _weight_bytes(target)


def _weight_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.glob("*.safetensors"))


@cli_main
def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path(".cache/models"))
    p.add_argument("--sizes", nargs="+", default=["tiny-s", "tiny-m"], help="names in configs/model/")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for name in a.sizes:
        path, nbytes = make_checkpoint(name, a.out, a.seed)
        print(f"{name}: {path} ({nbytes / 2**20:.1f} MiB of weights)")


if __name__ == "__main__":
    main()
