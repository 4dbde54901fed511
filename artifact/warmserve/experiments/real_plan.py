"""Which real-engine preset fits this machine, and the Hydra overrides that run the catalog on it.

A preset (``configs/real/<name>.yaml``) names the backends it serves, what
hardware it needs (``fits``), the cluster, planning profile and model mix,
the checkpoints and the command that fetches each, and per mode (full /
quick) the points of every experiment as Hydra overrides. The catalog's
presets (``configs/experiment/``) stay what they are: a real run passes
``setting=real`` plus the preset's cluster, hardware and mix, and narrows
each sweep to points a real machine can run in hours rather than weeks.
Output paths are the presets' own with ``results/`` replaced by the real
run's root, so run names -- and with them resume and the twin pairing --
are the same as on the twin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from warmserve.config import REPO_ROOT, configs_dir, load_mapping, model_mix, plain_dict
from warmserve.errors import InputError
from warmserve.experiments.catalog import CATALOG
from warmserve.experiments.hardware_probe import GIB, Machine

REAL_BACKENDS = ("testbed", "testbed-gpu", "testbed-stub", "testbed-stub-gpu")
GPU_BACKENDS = ("testbed-gpu", "testbed-stub-gpu")


def limits() -> dict[str, Any]:
    return plain_dict(load_mapping(configs_dir() / "real" / "_limits.yaml"))


@dataclass(frozen=True)
class Preset:
    name: str
    doc: dict[str, Any]

    def __getitem__(self, key: str) -> Any:
        return self.doc[key]

    @property
    def device(self) -> str:
        return str(self.doc["fits"]["device"])

    def mode(self, quick: bool) -> dict[str, Any]:
        return self.doc["modes"]["quick" if quick else "full"]

    def bases(self) -> list[str]:
        """Checkpoint bases of the mix and the probe mix, in order, once each."""
        names = [e["base"] for mix in (self["models"], self["probe_models"]) for e in model_mix(mix)]
        return list(dict.fromkeys(names))


def presets() -> dict[str, Preset]:
    out = {}
    for p in sorted((configs_dir() / "real").glob("[!_]*.yaml")):
        out[p.stem] = Preset(p.stem, plain_dict(load_mapping(p)))
    return out


def misfit(preset: Preset, machine: Machine) -> str | None:
    """Why ``preset`` does not fit ``machine`` (None when it does)."""
    f = preset["fits"]
    if f["device"] == "cpu":
        return None if machine.cores >= int(f["cores"]) else f"needs {f['cores']} cores, {machine.cores} usable"
    if machine.nodes < int(f["nodes"]):
        return f"needs {f['nodes']} nodes, {machine.nodes} found (pass --ray ADDRESS for a Ray cluster)"
    if machine.gpus_per_node < int(f["gpus"]):
        return f"needs {f['gpus']} GPUs per node, {machine.gpus_per_node} found"
    if machine.gpu_mem_bytes < int(f["gpu_mem_bytes"]):
        return f"needs {int(f['gpu_mem_bytes']) / GIB:.0f} GiB per GPU, {machine.gpu_mem_bytes / GIB:.0f} GiB found"
    return None


def choose(backend: str, machine: Machine, name: str | None = None) -> Preset:
    """The named preset (checked), else the largest preset of ``backend`` that fits ``machine``."""
    every = presets()
    mine = [p for p in every.values() if backend in p["backends"]]
    if name is not None:
        if name not in every:
            raise InputError(f"--preset: unknown '{name}'; choose from {sorted(every)}")
        p = every[name]
        if backend not in p["backends"]:
            raise InputError(f"--preset {name} runs on {p['backends']}, not BACKEND={backend}")
        if why := misfit(p, machine):
            raise InputError(f"--preset {name} does not fit this machine ({machine.describe(p.device)}): {why}")
        return p
    size = {p.name: (int(p["fits"]["nodes"]) * int(p["fits"]["gpus"]), int(p["fits"]["gpu_mem_bytes"])) for p in mine}
    fitting = [p for p in sorted(mine, key=lambda p: size[p.name], reverse=True) if misfit(p, machine) is None]
    if not fitting:
        whys = "; ".join(f"{p.name}: {misfit(p, machine)}" for p in mine) or "no preset for this backend"
        raise InputError(f"BACKEND={backend}: no preset of configs/real/ fits this machine "
                         f"({machine.describe('cuda' if backend in GPU_BACKENDS else 'cpu')}): {whys}")
    return fitting[0]


def missing_checkpoints(preset: Preset, checkpoint_dir: Path, needs_checkpoint: bool) -> list[tuple[str, str]]:
    """(base, the command that fetches it) for every checkpoint of the preset not under ``checkpoint_dir``."""
    if not needs_checkpoint:
        return []
    cmds = preset["checkpoints"] or {}
    out = []
    for base in preset.bases():
        if not (checkpoint_dir / base / "config.json").is_file():
            out.append((base, str(cmds.get(
                base, f"(no fetch command known: put a HF checkpoint in {checkpoint_dir / base})"))))
    return out


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def merged(*groups: list[str]) -> list[str]:
    """Overrides with later ones replacing earlier ones of the same key (order kept by first appearance)."""
    out: dict[str, str] = {}
    for g in groups:
        for o in g:
            out[_key(o)] = o
    return list(out.values())


def preset_out(preset: str, root: str) -> tuple[str, str]:
    """(``out=...``, ``hydra.sweep.dir=...``) of a catalog preset, rooted at ``root`` instead of ``results``."""
    raw = OmegaConf.load(configs_dir() / "experiment" / f"{preset}.yaml")
    doc = OmegaConf.to_container(raw, resolve=False)
    out = doc.get("out") if isinstance(doc, dict) else None  # the unresolved pattern
    if not isinstance(out, str) or not out.startswith("results/"):
        raise InputError(f"configs/experiment/{preset}.yaml: out must start with results/, got {out!r}")
    return f"out='{root}/{out.removeprefix('results/')}'", f"hydra.sweep.dir='{root}/${{experiment}}/.hydra'"


@dataclass(frozen=True)
class Step:
    """One catalog preset (or the capacity search) with the overrides of one side (measured or twin)."""

    experiment: str
    preset: str  # a configs/experiment name, or "capacity_search"
    overrides: tuple[str, ...]


def base_overrides(preset: Preset, backend: str, hardware: str, machine: Machine, quick: bool,
                   gpu_ids: list[int]) -> list[str]:
    """What every run of the preset gets: setting, cluster, hardware, mix, backend and its slots."""
    out = ["setting=real", f"cluster={preset['cluster']}", f"hardware={hardware}",
           f"workload.models={preset['models']}", f"backend={backend}", "progress=false"]
    if backend != "sim":
        if preset.device == "cuda":
            out.append(f"backend.slots.cores=[{','.join(str(i) for i in gpu_ids)}]")
        else:
            out.append(f"backend.slots.cores=[{','.join(str(c) for c in preset['slot_cores'])}]")
    if preset.device == "cuda" and machine.gpu_mem_bytes:
        out.append(f"hardware.gpu_mem_bytes={machine.gpu_mem_bytes}")  # the GPUs found, not the profile's
    return out


def steps(preset: Preset, base: list[str], root: str, quick: bool, probe_csv: str) -> list[Step]:
    """Every catalog experiment the preset runs, in catalog order, with its overrides under ``root``."""
    mode = preset.mode(quick)
    common = [str(o) for o in mode.get("common", [])]
    wl = [str(o) for o in preset["workload"]]
    out: list[Step] = []
    for name in CATALOG:
        points = mode["points"].get(name)
        if not points:
            continue
        if name == "capacity":  # the search adds +setting= and workload=conv itself
            ovs = [o for o in merged(base, wl, common) if _key(o) not in ("setting", "workload")]
            out.append(Step(name, "capacity_search", tuple(ovs)))
            continue
        for cat_preset, ovs in points.items():
            if cat_preset not in CATALOG[name].presets:
                raise InputError(f"configs/real/{preset.name}.yaml: '{cat_preset}' is not a preset of {name}")
            if cat_preset == "coldstart":
                extra = [f"workload.models={preset['probe_models']}", f"workload.source.path={probe_csv}",
                         "hardware.lifecycle.prewarm_mechanism="
                         + ("sleep" if preset.device == "cuda" else "vmm"), *common,
                         f"replay_s={probe_replay_s(preset)}"]
                ovs_all = merged(base, extra, [str(o) for o in ovs])
            else:
                ovs_all = merged(base, wl, common, [str(o) for o in ovs])
            out.append(Step(name, cat_preset, tuple([*ovs_all, *preset_out(cat_preset, root)])))
    return out


def probe_replay_s(preset: Preset) -> float:
    n = len(model_mix(preset["probe_models"]))
    return float(preset["probe_gap_s"]) * (n + 1)


def write_probe_csv(preset: Preset, path: Path) -> Path:
    """The cold-start probe workload: one short request per probe model, ``probe_gap_s`` apart (as the
    bundled data/workloads/coldstart_probe.csv does for the paper's models, 300 s apart)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    gap = float(preset["probe_gap_s"])
    rows = [f"{gap * (i + 1):g},{e['name']},16,100" for i, e in enumerate(model_mix(preset["probe_models"]))]
    path.write_text("arrival_s,model,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    return path


def capacity_spec(preset: Preset, quick: bool, root: str, overrides: list[str], path: Path) -> Path:
    """A configs/capacity_search.yaml-shaped file holding the preset's search (block ``capacity``): its
    systems, seeds and rate bounds, every probe run with ``overrides``, probes under ``<root>/capacity``."""
    pts = dict(preset.mode(quick)["points"]["capacity"])
    mode = {"settings": ["real"], "systems": pts["systems"], "seeds": pts["seeds"], "start_rps": pts["start_rps"],
            "floor_rps": pts["floor_rps"], "ceiling_rps": pts["ceiling_rps"], "resolution": pts["resolution"],
            "overrides": list(overrides)}
    raw = OmegaConf.load(configs_dir() / "capacity_search.yaml")
    doc = {"rps_decimals": int(raw.rps_decimals),
           "blocks": {"capacity": {"out": f"{root}/capacity", "full": mode, "quick": mode}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OmegaConf.to_yaml(OmegaConf.create(doc)))
    return path


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
