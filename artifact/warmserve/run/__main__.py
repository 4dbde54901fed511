"""``python -m warmserve.run backend=sim system=static workload=tiny cluster=paper_2x8 hardware=a100-80gb out=<dir>``

The Hydra app over ``configs/run.yaml``. Bad input prints one ``error:`` line
and exits 2 with nothing written (``warmserve.errors.cli_main``).
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from warmserve.config import configs_dir
from warmserve.errors import InputError, cli_main
from warmserve.run.execute import execute


@hydra.main(version_base=None, config_path=str(configs_dir()), config_name="run")
def _app(cfg: DictConfig) -> None:
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
