"""``hydra.searchpath`` adds group choices: the machine-local profile of ``scripts/sim_vs_real.sh``.

The start-up override check once knew only ``configs/<group>/``, so the one-command twin-vs-real
comparison (which adds its calibrated profile with ``hydra.searchpath=[file://...]``) was refused
before its first run. A choice found in an added directory must pass, and a typo must still fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from warmserve.config import configs_dir
from warmserve.errors import InputError
from warmserve.validation.overrides import check_overrides


def _local_profile(root: Path) -> None:
    (root / "hardware").mkdir(parents=True)
    text = (configs_dir() / "hardware" / "cpu-testbed.yaml").read_text(encoding="utf-8")
    (root / "hardware" / "cpu-testbed-local.yaml").write_text(text, encoding="utf-8")


def test_a_choice_from_an_added_search_path_is_accepted(tmp_path: Path) -> None:
    _local_profile(tmp_path)
    check_overrides(["+experiment=sim_vs_real", "backend=sim", f"hydra.searchpath=[file://{tmp_path}]",
                     "hardware=cpu-testbed-local"], "run")


def test_without_the_search_path_the_same_choice_is_refused(tmp_path: Path) -> None:
    _local_profile(tmp_path)
    with pytest.raises(InputError, match="hardware: unknown choice 'cpu-testbed-local'"):
        check_overrides(["+experiment=sim_vs_real", "backend=sim", "hardware=cpu-testbed-local"], "run")


def test_a_typo_is_refused_even_with_a_search_path(tmp_path: Path) -> None:
    _local_profile(tmp_path)
    with pytest.raises(InputError, match="cpu-testbed-local"):  # the message lists the added choice
        check_overrides([f"hydra.searchpath=[file://{tmp_path}]", "hardware=cpu-testbed-locl"], "run")
