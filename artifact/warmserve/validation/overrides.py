"""Command-line overrides checked before Hydra runs: one line instead of Hydra's multi-line dumps.

Hydra reports an unknown group choice or an unknown key with a 10-20 line
dump and exit 1. ``check_overrides`` parses the overrides with Hydra's own
parser, checks every group choice (every value of a sweep) against
``configs/<group>/``, and composes the first point of the sweep, so a typo
is ``error: <key>: ...`` (exit 2) before anything runs. ``hydra/...``
overrides (launchers, sweepers) are Hydra's own and left to it, except
``hydra.searchpath``: a ``file://`` directory it adds (e.g. the machine-local
hardware profile ``scripts/sim_vs_real.sh`` writes) also offers group choices,
and the first point is composed with it, as Hydra will.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from warmserve.config import configs_dir
from warmserve.errors import InputError
from warmserve.validation.schema import group_choices


def _values(o: Override) -> list[str]:
    if o.is_sweep_override():
        return [str(v) for v in o.sweep_string_iterator()]
    return [o.get_value_element_as_str()]


def _first_point(o: Override) -> str:
    if not o.is_sweep_override():
        return o.input_line or ""
    prefix = "+" if o.is_add() else ("++" if o.is_force_add() else "")
    return f"{prefix}{o.get_key_element().lstrip('+')}={_values(o)[0]}"


def _search_dirs(overrides: list[Override]) -> list[Path]:
    """The ``file://`` directories a ``hydra.searchpath=[...]`` override adds (relative to the cwd, as Hydra)."""
    out: list[Path] = []
    for o in overrides:
        if o.key_or_group == "hydra.searchpath" and not o.is_delete():
            value = o.value()
            for entry in value if isinstance(value, list) else [value]:
                if isinstance(entry, str) and entry.startswith("file://"):
                    out.append(Path(entry.removeprefix("file://")).resolve())
    return out


def check_overrides(argv: Sequence[str], config_name: str) -> None:
    """Raise ``InputError`` for the first override Hydra would reject (see the module doc)."""
    args = [a for a in argv if not a.startswith("-")]
    if any(a.startswith("-") and a not in ("-m", "--multirun") for a in argv):
        return  # --help, --cfg, --info ...: Hydra's own modes
    try:
        overrides = OverridesParser.create().parse_overrides(args)
    except HydraException as exc:
        raise InputError(f"overrides: cannot parse ({str(exc).splitlines()[0]})") from None
    extra = _search_dirs(overrides)
    point: list[str] = [o.input_line or "" for o in overrides if o.key_or_group == "hydra.searchpath"]
    for o in overrides:
        group = o.key_or_group
        if group.startswith("hydra"):
            continue
        point.append(_first_point(o))
        if o.is_delete() or not (configs_dir() / group).is_dir():
            continue
        choices = sorted({*group_choices(group), *(p.stem for d in extra for p in (d / group).glob("*.yaml")
                                                    if not p.stem.startswith("_"))})
        for v in _values(o):
            if v not in choices:
                key = o.get_key_element().lstrip("+~")
                raise InputError(f"{key}: unknown choice '{v}'; choose one of {choices}")
    try:
        with initialize_config_dir(config_dir=str(configs_dir()), version_base=None):
            compose(config_name, overrides=point)
    except (HydraException, OmegaConfBaseException) as exc:
        lines = [s.strip() for s in str(exc).splitlines() if s.strip()]
        bad = next((o.get_key_element().lstrip("+~") for o in overrides if f"'{o.key_or_group}'" in lines[0]),
                   "overrides")
        raise InputError(f"{bad}: {'; '.join(s.rstrip('.') for s in lines[:3])}") from None
