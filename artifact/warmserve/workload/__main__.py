"""``python -m warmserve.workload``: build a workload and write it to ``out=<dir>``.

    python -m warmserve.workload source=azure2024 source.path=<csv> models=paper4 alpha=2 rps=1 seed=42 out=<dir>

writes ``<dir>/workload.parquet`` (the whole sampled hour), ``history.parquet``
(priors), ``week_load.parquet`` (week sources), ``manifest.json`` and, with
``export_jsonl=true``, ``workload.jsonl``. Hydra is configured to write
nothing else (no output dir, no logs, no chdir). Bad input: one line
``error: <key>: ...`` on stderr, exit 2, nothing written: the overrides, the
whole config (``warmserve.validation``) and ``out`` are checked before any
work.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from warmserve.atomic import check_output_dir, remove_stale
from warmserve.config import configs_dir
from warmserve.errors import cli_main
from warmserve.validation.checks import check_workload_app
from warmserve.validation.overrides import check_overrides
from warmserve.workload.api import MANIFEST, build_workload, save_bundle


def _ours(d: Path) -> bool:
    """An existing ``out`` may be replaced only if it is a workload directory this command wrote."""
    return (d / MANIFEST).is_file()


@cli_main
def run(cfg: DictConfig) -> None:
    """Validate everything, check ``out``, then build and write (the order the module doc promises)."""
    check_workload_app(cfg)
    out = str(cfg.out)
    check_output_dir(out, owned=_ours)
    remove_stale(out)
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


@cli_main
def cli() -> None:
    """Overrides first (one line for a typo), then the Hydra app."""
    check_overrides(sys.argv[1:], "workload_app")
    main()


if __name__ == "__main__":
    cli()
