"""The start-up checks of each command: schema, then the rules that span several groups.

``check_run(cfg)`` and ``check_workload_app(cfg)`` run before anything is
built or written and raise ``InputError('<key>: <what is wrong>')``. They
check, in order: the typed schema (``schema``), the source block against its
own schema, the ``_target_`` blocks against their classes (``targets``), the
hardware profile (its typed loader, ``warmserve.hardware.load_profile``),
and the cross-field rules: every model fits its GPUs, TP <= GPUs per node,
the replay fits the sampled hour.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, ValidationError

from warmserve.config import load_yaml, model_specs
from warmserve.control.features import BackendFeatures
from warmserve.errors import InputError
from warmserve.hardware import check_models_fit, load_profile
from warmserve.validation import schema
from warmserve.validation.report import first_error
from warmserve.validation.targets import check_target

M = TypeVar("M", bound=BaseModel)

# Keyword arguments the runner passes to every backend (warmserve.run.execute.build), not the config.
BACKEND_SUPPLIED = frozenset({"models", "cluster", "hardware", "features", "seed"})


def plain(cfg: Any, what: str = "config") -> dict[str, Any]:
    """``cfg`` as plain containers with interpolations resolved; a broken interpolation is one line."""
    if isinstance(cfg, DictConfig):
        try:
            out = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
        except OmegaConfBaseException as exc:
            key = getattr(exc, "full_key", None) or what
            raise InputError(f"{key}: {str(exc).splitlines()[0]}") from None
        assert isinstance(out, dict)
        return cast(dict[str, Any], out)  # YAML keys: strings
    return dict(cfg)


def _validate(model: type[M], doc: Mapping[str, Any], prefix: str) -> M:
    try:
        return model.model_validate(dict(doc))
    except ValidationError as exc:
        raise first_error(exc, prefix, model) from None


def check_source(source: Any, prefix: str = "source") -> schema.BaseModel:
    """A source block, merged over its group's defaults as ``open_source`` does, against its schema."""
    if isinstance(source, str):
        source = {"name": source}
    if not isinstance(source, Mapping):
        raise InputError(f"{prefix}: must be a mapping with a 'name', got {source!r}")
    name = source.get("name")
    if name not in schema.SOURCES:
        raise InputError(f"{prefix}.name: unknown source {name!r}; choose one of {sorted(schema.SOURCES)}")
    merged = plain(OmegaConf.merge(load_yaml("source", str(name)), dict(source)), prefix)
    model = schema.SOURCES[str(name)]
    checked = _validate(model, merged, prefix)
    try:
        checked.path_given()
    except ValueError as exc:
        raise InputError(f"{prefix}.{exc}") from None
    return checked


def _workload(doc: Mapping[str, Any], prefix: str, model: type[schema.Workload]) -> schema.Workload:
    from warmserve.workload.api import (
        recipe_defaults,  # the recipe's defaults fill keys a preset leaves out
    )

    merged = plain(OmegaConf.merge(recipe_defaults(), dict(doc)), prefix)
    checked = _validate(model, merged, prefix)
    check_source(checked.source, f"{prefix}.source" if prefix else "source")
    assert isinstance(checked, schema.Workload)
    return checked


def check_workload(cfg: Any, prefix: str = "workload") -> schema.Workload:
    """A run's ``workload`` group (or a ``build_workload`` argument)."""
    return _workload(plain(cfg, prefix), prefix, schema.Workload)


def check_workload_app(cfg: Any) -> schema.WorkloadApp:
    """The config of ``python -m warmserve.workload``."""
    doc = plain(cfg)
    if doc.get("out") in (None, "???", ""):
        raise InputError("out: missing (out=<dir> is required)")
    checked = _workload(doc, "", schema.WorkloadApp)
    assert isinstance(checked, schema.WorkloadApp)
    return checked


def check_run(cfg: Any, *, with_workload: bool = True) -> schema.Run:
    """Everything about one run that can be checked without building anything."""
    doc = plain(cfg)
    run = _validate(schema.Run, doc, "")
    assert isinstance(run, schema.Run)
    wl = None
    if with_workload:
        if run.workload is None:
            raise InputError("workload: missing (workload=<configs/workload name>)")
        wl = check_workload(run.workload)
    check_target(run.system.policy, "system.policy")
    BackendFeatures.from_config(run.system.features)
    check_target(run.backend, "backend", BACKEND_SUPPLIED)
    hw = load_profile(run.hardware)
    mix = run.models if run.models is not None else (wl.models if wl is not None else None)
    if mix is not None:
        mix_doc = mix if isinstance(mix, str) else [e.model_dump() for e in mix]
        specs = model_specs(mix_doc)
        check_models_fit(hw, specs, run.cluster.gpus_per_node)
    if run.replay_s is not None and wl is not None and wl.source.get("name") != "file" \
            and run.replay_s > schema.HOUR_S:
        raise InputError(f"replay_s: the workload is one sampled hour, so it must be <= 3600, got {run.replay_s:g}")
    return run
