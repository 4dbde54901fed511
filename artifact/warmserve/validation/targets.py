"""Checking a ``_target_`` config block (a policy, a forecaster, a backend) against its class.

``system.policy``, its forecaster and ``backend`` are instantiated by Hydra
from a ``_target_`` and keyword arguments, so the schema of each block *is*
the constructor: its parameter names say which keys exist and its type hints
say what they hold. A new policy parameter is therefore validated as soon as
it is added to the constructor, with no second list to keep in step.

Type hints do not carry ranges, so ranges come from ``RANGES`` by parameter
name (the same name means the same quantity in every policy). An interval of
0 would make a policy tick forever at the same instant, so intervals are > 0.
Parameters naming a pluggable strategy (``CHOICES``) accept exactly the names
registered in its registry.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Mapping
from typing import Annotated, Any

from hydra.utils import get_class
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from warmserve.control.launch import LAUNCH_RULES
from warmserve.control.placement import PLACEMENTS
from warmserve.control.registry import Registry
from warmserve.errors import InputError
from warmserve.validation.report import first_error

_HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}
_POSITIVE = Field(gt=0)
_NON_NEGATIVE = Field(ge=0)
_FRACTION = Field(ge=0, le=1)
# Parameter name -> range, applied to every class that has a parameter of that name.
RANGES: dict[str, Any] = {
    "tick_interval_s": _POSITIVE, "scale_window_s": _POSITIVE, "progress_every_s": _POSITIVE,
    "utilization_interval_s": _POSITIVE, "request_timeout_s": _POSITIVE,
    "protect_s": _NON_NEGATIVE, "keep_alive_s": _NON_NEGATIVE,
    "capacity": _POSITIVE, "target": _POSITIVE, "requests_per_instance": _POSITIVE, "instance_capacity": _POSITIVE,
    "max_instances": _POSITIVE, "min_instances": _NON_NEGATIVE, "mesh_gpus": _POSITIVE,
    "max_instances_per_model": _POSITIVE, "history_windows": _POSITIVE, "season_windows": _POSITIVE,
    "history_days": _POSITIVE, "score_bandwidth_GBps": _POSITIVE, "pcie_GBps": _POSITIVE, "disk_GBps": _POSITIVE,
    "host_cache_bytes": _NON_NEGATIVE, "scale_out": _FRACTION, "scale_in": _FRACTION, "decay": Field(gt=0, le=1),
    "min_kv_fraction": Field(ge=0, lt=1), "seed": _NON_NEGATIVE, "max_retries": _NON_NEGATIVE,
}
# Parameter name -> the registry of strategies it names: the config may hold exactly the registered names
# (a strategy registered anywhere is accepted here with no second list).
CHOICES: dict[str, Registry[Any]] = {"placement": PLACEMENTS, "launch_rule": LAUNCH_RULES}
_STRICT = ConfigDict(strict=True, allow_inf_nan=False, arbitrary_types_allowed=True)


def _hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a hint that only resolves under TYPE_CHECKING: fall back to no type check
        return {}


@functools.cache
def parameters(cls: type) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """(parameters, resolved hints, open) of ``cls``'s constructor; ``**kwargs`` that are passed on to a
    base class are followed, so a subclass accepts its base's keys; ``open`` = any key accepted."""
    params: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        sig = inspect.signature(init)
        own = {n: p for n, p in sig.parameters.items() if n != "self"}
        h = _hints(init)
        for n, p in own.items():
            if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL) and n not in params:
                params[n], hints[n] = p, h.get(n, Any)
        kw = [p for p in own.values() if p.kind is p.VAR_KEYWORD]
        if not kw:
            return params, hints, False
        if kw[0].name == "_":  # ``**_``: extra keys deliberately ignored
            return params, hints, True
    return params, hints, True


@functools.cache
def _adapter(hint: Any, name: str) -> TypeAdapter:
    rng = RANGES.get(name)
    return TypeAdapter(Annotated[hint, rng] if rng is not None else hint, config=_STRICT)


def check_target(cfg: Mapping[str, Any], key: str, supplied: frozenset[str] = frozenset()) -> None:
    """Raise ``InputError('<key>.<param>: ...')`` for the first key of ``cfg`` its class would reject.

    ``supplied``: parameters the runner passes itself (they must not be in the config block).
    """
    target = cfg.get("_target_")
    if not isinstance(target, str):
        raise InputError(f"{key}._target_: missing (the class to instantiate)")
    try:
        cls = get_class(target)
    except Exception as exc:  # ImportError, AttributeError, ValueError: all mean "no such class"
        raise InputError(f"{key}._target_: cannot import '{target}' ({type(exc).__name__})") from None
    params, hints, is_open = parameters(cls)
    valid = sorted(n for n in params if n not in supplied and n != "inputs")
    for name, value in cfg.items():
        if name in _HYDRA_KEYS:
            continue
        where = f"{key}.{name}"
        if name in supplied or name == "inputs":
            raise InputError(f"{where}: set by the runner, not by the config")
        if name not in params:
            if is_open:
                continue
            raise InputError(f"{where}: unknown key for {cls.__name__}; valid keys here: {valid}")
        if isinstance(value, Mapping) and "_target_" in value:
            check_target(value, where)
            continue
        try:
            _adapter(hints[name], name).validate_python(value)
        except ValidationError as exc:
            raise first_error(exc, where, use_loc=False) from None
        except Exception:  # a hint pydantic cannot build a validator for: leave it to the constructor
            continue
        if name in CHOICES and value not in CHOICES[name].names():
            raise InputError(f"{where}: unknown '{value}'; choose one of {list(CHOICES[name].names())}")
    for name, p in params.items():
        required = p.default is p.empty and p.kind is not p.VAR_KEYWORD
        if required and name not in cfg and name not in supplied and name != "inputs":
            raise InputError(f"{key}.{name}: missing (required by {cls.__name__})")
