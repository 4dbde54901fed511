"""Locating ``configs/`` and ``data/``, and loading model specs from ``configs/``.

Every hardware or model constant lives in ``configs/`` with its source; code
reads them from there. ``WARMSERVE_CONFIGS`` overrides the location (for an
installed, non-editable package). The input files the code reads (trace slices,
public latency profiles) are bundled under ``data/`` with their provenance
(``data/SOURCES.md``), so a clone needs nothing beside it; ``WARMSERVE_DATA``
overrides that location the same way.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

from omegaconf import DictConfig, ListConfig, OmegaConf

from warmserve.control.seam import ModelSpec
from warmserve.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]


def configs_dir() -> Path:
    return Path(os.environ.get("WARMSERVE_CONFIGS", REPO_ROOT / "configs")).resolve()


def data_dir() -> Path:
    """``data/`` of the checkout: the bundled inputs (``data/SOURCES.md``)."""
    return Path(os.environ.get("WARMSERVE_DATA", REPO_ROOT / "data")).resolve()


# Every bundled file this process resolved, so a test can check that each file under data/ is
# read by some code path (the repository keeps only what something reads).
BUNDLED_READS: set[Path] = set()


def bundled(rel: str | os.PathLike[str]) -> Path:
    """The bundled file ``data/<rel>``; an :class:`InputError` naming it when it is missing."""
    path = data_dir() / rel
    if not path.is_file():
        raise InputError(f"bundled data file not found: {path} (see data/SOURCES.md)")
    BUNDLED_READS.add(path)
    return path


def shown_path(path: Path) -> str:
    """``path`` relative to the checkout when it lies inside it (manifests hold no absolute paths
    of ours), else as given."""
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)


def load_yaml(group: str, name: str) -> DictConfig | ListConfig:
    path = configs_dir() / group / f"{name}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (configs_dir() / group).glob("*.yaml"))
        raise InputError(f"unknown {group} '{name}' (no {path}); choose one of {choices}")
    return OmegaConf.load(path)


def load_mapping(path: Path) -> DictConfig:
    """The YAML file ``path``, which holds a mapping (as every file under ``configs/`` but the
    model mixes does)."""
    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig), f"{path}: expected a mapping"
    return cfg


def plain_dict(cfg: DictConfig) -> dict[str, Any]:
    """``cfg`` as a plain dict, interpolations resolved (its keys are strings: it came from YAML)."""
    return cast(dict[str, Any], OmegaConf.to_container(cfg, resolve=True))


MODEL_FIELDS = ("tp", "weight_bytes", "kv_bytes_per_token", "prefill_ms", "decode_ms")


def model_checkpoint(base: str) -> DictConfig:
    """The checkpoint config ``configs/model/<base>.yaml``, validated."""
    cfg = load_yaml("model", base)
    assert isinstance(cfg, DictConfig)
    for f in MODEL_FIELDS:
        if f not in cfg:
            raise InputError(f"configs/model/{base}.yaml: missing field '{f}'")
        if float(cfg[f]) <= 0:
            raise InputError(f"configs/model/{base}.yaml: field '{f}' must be > 0, got {cfg[f]}")
    return cfg


def model_mix(mix: str | list) -> list[dict]:
    """Resolve ``models=<mix>`` (a name in ``configs/models/`` or an inline list) to
    ``[{name, base}, ...]`` in config order."""
    entries = load_yaml("models", mix) if isinstance(mix, str) else mix
    out = []
    for i, e in enumerate(entries):
        if "name" not in e or "base" not in e:
            raise InputError(f"models entry {i} needs 'name' and 'base', got {dict(e)}")
        out.append({"name": str(e["name"]), "base": str(e["base"])})
    names = [e["name"] for e in out]
    if len(set(names)) != len(names):
        raise InputError(f"models: duplicate model names in {names}")
    return out


def model_specs(mix: str | list) -> dict[str, ModelSpec]:
    """Served model name -> ``ModelSpec`` for a mix, in config order."""
    specs: dict[str, ModelSpec] = {}
    for e in model_mix(mix):
        ck = model_checkpoint(e["base"])
        specs[e["name"]] = ModelSpec(
            name=e["name"],
            base=e["base"],
            tp=int(ck.tp),
            weight_bytes=int(ck.weight_bytes),
            kv_bytes_per_token=int(ck.kv_bytes_per_token),
        )
    return specs
