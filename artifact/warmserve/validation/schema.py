"""The typed schema of every config a CLI accepts: run, workload, source, cluster, SLO.

Why pydantic and not checks scattered through the code: one declaration per
key gives its type, finiteness and range in one place, the error names the
key, and adding a key is one line here. Models are ``strict`` (``"1"`` is not
a number, ``maybe`` is not a boolean, ``1.5`` is not an integer), reject
``inf``/``nan`` and forbid unknown keys (the error lists the valid ones).

Groups that are free-form by design are not closed here: the hardware
profile is checked by its typed loader (``warmserve.hardware``, which
other code extends with new lifecycle keys), and ``system.policy`` /
``backend`` / forecasters by the signature of the class their ``_target_``
names (``warmserve.validation.targets``).

Ranges: ``> 0`` where zero is meaningless (rates, intervals, capacities,
SLOs), ``>= 0`` for counts, seeds and durations that may be zero.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    field_validator,
    model_validator,
)

from warmserve.config import configs_dir

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
HOUR_S = 3600.0  # the recipe samples one hour of the source (docs/reference.md §2.3)


class Strict(BaseModel):
    """Base of every schema: strict types, finite numbers, no unknown keys."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def group_choices(group: str) -> list[str]:
    """The selectable configs of a group (``configs/<group>/*.yaml`` without ``_``-prefixed bases)."""
    return sorted(p.stem for p in (configs_dir() / group).glob("*.yaml") if not p.stem.startswith("_"))


class ModelEntry(Strict):
    name: StrictStr
    base: StrictStr

    @field_validator("base")
    @classmethod
    def _known_base(cls, v: str) -> str:
        if v not in group_choices("model"):
            raise ValueError(f"unknown model checkpoint '{v}'; choose one of {group_choices('model')}")
        return v


def _mix(v: Any) -> Any:
    if isinstance(v, str) and v not in group_choices("models"):
        raise ValueError(f"unknown model mix '{v}'; choose one of {group_choices('models')}")
    if isinstance(v, list) and not v:
        raise ValueError("an inline model mix needs at least one {name, base} entry")
    return v


# ---------------------------------------------------------------- sources (configs/source/*.yaml)
DayOrigin = Literal["first_row", "midnight"]
TraceName = Literal["conv", "code"]


class _Source(Strict):
    def path_given(self) -> None:
        path = getattr(self, "path", None)
        if path in ("???", ""):
            raise ValueError("path: required (source.path=<file>)")


class Synthetic(_Source):
    name: Literal["synthetic"]
    trace: TraceName
    seed: NonNegativeInt
    scale: Positive
    minute_jitter: Annotated[float, Field(ge=0, le=1)]
    envelope: dict[str, StrictStr]
    token_cdf: StrictStr
    iat_reference: dict[str, StrictStr]
    max_unparseable: NonNegativeInt
    day_origin: DayOrigin
    cache: StrictBool


class Azure2024(_Source):
    name: Literal["azure2024"]
    path: StrictStr
    max_unparseable: NonNegativeInt
    day_origin: DayOrigin
    cache: StrictBool


class Azure2023(_Source):
    name: Literal["azure2023"]
    trace: TraceName
    path: StrictStr | None
    max_unparseable: NonNegativeInt


class ServeGen(_Source):
    name: Literal["servegen"]
    path: StrictStr
    clients: list[NonNegativeInt] | None
    scale: Positive
    start_day: NonNegativeInt
    seed: NonNegativeInt
    token_cdf: StrictStr
    token_trace: TraceName
    cache: StrictBool


class Mooncake(_Source):
    name: Literal["mooncake"]
    path: StrictStr | None


class UserFile(_Source):
    name: Literal["file"]
    path: StrictStr
    synthetic: StrictBool


# every source's `name` is annotated Literal["<name>"] (so the annotation is never None)
SOURCES: dict[str, type[_Source]] = {m.model_fields["name"].annotation.__args__[0]: m  # type: ignore[union-attr]
                                     for m in (Synthetic, Azure2024, Azure2023, ServeGen, Mooncake, UserFile)}


# ---------------------------------------------------------------- workload (configs/workload/*.yaml)
class Workload(Strict):
    """A run's ``workload`` group; missing keys come from ``configs/workload/_defaults.yaml``."""

    source: dict[str, Any]  # checked against SOURCES[name] (warmserve.validation.checks.check_source)
    models: StrictStr | list[ModelEntry]
    alpha: NonNegative
    rps: Positive
    seed: NonNegativeInt | None  # null = the run's seed
    cv: NonNegative | None
    window_s: Positive
    prior_scaling: Literal["published", "corrected"]
    replay_s: Positive
    output_cap: PositiveInt
    input_cap: PositiveInt
    output_floor: NonNegativeInt
    token_limit: PositiveInt

    @field_validator("models")
    @classmethod
    def _known_mix(cls, v: Any) -> Any:
        return _mix(v)

    @model_validator(mode="after")
    def _fits_the_hour(self) -> Workload:
        if HOUR_S % self.window_s:
            raise ValueError(f"window_s: must divide an hour (3600 s), got {self.window_s:g}")
        if self.replay_s > HOUR_S:
            raise ValueError(f"replay_s: the recipe samples one hour, so it must be <= 3600, got {self.replay_s:g}")
        return self


class WorkloadApp(Workload):
    """``python -m warmserve.workload`` (``configs/workload_app.yaml``)."""

    out: StrictStr
    export_jsonl: StrictBool


# ---------------------------------------------------------------- one run (configs/run.yaml)
class Slo(Strict):
    ttft_s: Positive
    tpot_s: Positive
    attainment: Annotated[float, Field(gt=0, le=1)]  # fraction of requests that must meet both


class Cluster(Strict):
    name: StrictStr
    nodes: PositiveInt
    gpus_per_node: PositiveInt


class System(Strict):
    name: StrictStr
    policy: dict[str, Any]  # checked against its _target_'s constructor (warmserve.validation.targets)
    features: dict[str, Any] | None = None  # checked by BackendFeatures.from_config


class Run(Strict):
    """``python -m warmserve.run`` (``configs/run.yaml`` and the experiment presets)."""

    name: StrictStr
    out: StrictStr
    seed: NonNegativeInt
    models: StrictStr | list[ModelEntry] | None
    replay_s: Positive | None
    drain_s: NonNegative
    window_s: Positive
    utilization_interval_s: Positive
    trace: StrictBool
    progress: StrictBool | Literal["auto"]
    slo: Slo
    workload: dict[str, Any] | None = None  # checked as Workload (None: a test or driver passes its own)
    cluster: Cluster
    hardware: dict[str, Any]  # free-form here; checked by warmserve.hardware.load_profile
    backend: dict[str, Any]  # checked against its _target_'s constructor
    system: System
    # keys of the experiment presets (configs/experiment/_base.yaml)
    force: StrictBool = False
    experiment: StrictStr | None = None
    setting: StrictStr | None = None  # configs/setting/<name> (cluster + hardware + mix) the preset selected
    tags: dict[str, Any] = Field(default_factory=dict)
    quick_overrides: list[StrictStr] = Field(default_factory=list)

    @field_validator("models")
    @classmethod
    def _known_mix(cls, v: Any) -> Any:
        return _mix(v) if v is not None else v

    @field_validator("out")
    @classmethod
    def _out_given(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("no output directory given (out=<dir>)")
        return v
