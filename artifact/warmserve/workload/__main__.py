"""``python -m warmserve.workload``: build a workload and write it to ``out=<dir>``.

    python -m warmserve.workload source=azure2024 source.path=<csv> models=paper4 alpha=2 rps=1 seed=42 out=<dir>

writes ``<dir>/workload.parquet`` (the whole sampled hour), ``history.parquet``
(priors), ``week_load.parquet`` (week sources), ``manifest.json`` and, with
``export_jsonl=true``, ``workload.jsonl``. Hydra is configured to write
nothing else (no output dir, no logs, no chdir). Bad input: one line
``error: ...`` on stderr, exit 2, nothing written.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from warmserve.config import configs_dir
from warmserve.errors import InputError, cli_main
from warmserve.workload.api import build_workload, save_bundle

GROUPS = ("source", "models")


def precheck(argv: list[str]) -> None:
    """One-line errors for unknown group choices, before Hydra prints its multi-line ones."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        key = key.lstrip("+~")
        if sep and key in GROUPS:
            options = sorted(p.stem for p in (configs_dir() / key).glob("*.yaml"))
            if value not in options:
                raise InputError(f"unknown {key} '{value}'; choose one of {options}")


@cli_main
def run(cfg: DictConfig) -> None:
    try:
        out = str(cfg.out)
    except MissingMandatoryValue:
        raise InputError("out=<dir> is required") from None
    if OmegaConf.is_missing(cfg.source, "path") if "path" in cfg.source else False:
        raise InputError(f"source.path=<file> is required for source={cfg.source.name}")
    bundle = build_workload(cfg)
    save_bundle(bundle, out, export_jsonl=bool(cfg.get("export_jsonl", False)))
    kind = "SYNTHETIC" if bundle.meta["synthetic"] else "real"
    print(
        f"wrote {out}: {len(bundle.requests)} requests for {bundle.models} "
        f"({bundle.meta['n_replayed']} replayed in {bundle.meta['replay_s']:g} s) from {bundle.meta['label']} [{kind}]"
    )


@hydra.main(version_base="1.3", config_path=str(configs_dir()), config_name="workload_app")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    cli_main(precheck)(sys.argv[1:])
    main()
