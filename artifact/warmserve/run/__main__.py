"""``python -m warmserve.run backend=sim system=static workload=tiny cluster=paper_2x8 hardware=a100-80gb out=<dir>``

The Hydra app over ``configs/run.yaml``. Bad input prints one ``error:`` line
and exits 2 with nothing written (``warmserve.errors.cli_main``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from warmserve.config import configs_dir
from warmserve.errors import InputError, cli_main
from warmserve.run.execute import execute


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="run")
def _app(cfg: DictConfig) -> None:
    # A finished run (its summary.json exists; runs are written atomically) is skipped unless
    # force=true, so an interrupted sweep resumes where it stopped.
    done = Path(str(cfg.out)) / "summary.json"
    if done.is_file() and not OmegaConf.select(cfg, "force", default=False):
        print(f"skip {cfg.out}")
        return
    try:
        out = execute(cfg)
    except InputError as exc:  # Hydra would turn any exception into exit 1 with a traceback hint
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {out}")


@cli_main
def main() -> None:
    _app()


if __name__ == "__main__":
    main()
