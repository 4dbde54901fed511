"""Every workload source, opened into one of three shapes the recipe understands.

``week``      a week of one request stream (Monday = day 0): the published recipe
              (model i replays the first hour of day 7-M+i, priors from earlier days).
              Sources: ``azure2024`` (a real 2024 week CSV), ``synthetic`` (the seeded
              2024-like week, written as a 2024 CSV and read back through the same
              loader), ``servegen`` (a week generated from ServeGen per-client rates).
``hour``      one hour of one request stream (no earlier days): every model samples
              the same hour with the published shares and seeds; the prior is the
              source hour's own load (oracle-like, labelled). Sources: ``azure2023``
              (the real 2023 one-hour CSVs), ``mooncake`` (JSONL), ``file`` without a
              model column.
``requests``  a user's file that already says which model each request is for
              (``file`` with a ``model`` column): used as is, no sampling.

Relative paths resolve against the working directory, then the checkout root, then the
bundled ``data/`` (``warmserve.config.bundled``; provenance in ``data/SOURCES.md``).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from scipy import special

from warmserve.config import REPO_ROOT, bundled, data_dir, load_yaml
from warmserve.errors import InputError
from warmserve.workload import synthetic
from warmserve.workload.cache import WeekStore, cache_root, file_identity, key_of
from warmserve.workload.loader import (
    DAY_S,
    Trace,
    check_arrivals,
    check_tokens,
    load_azure_csv,
    read_azure_rows,
)
from warmserve.workload.recipe import HOUR_S

SOURCE_NAMES = ("azure2024", "synthetic", "azure2023", "servegen", "mooncake", "file")
LOADER_VERSION = 1  # part of cache keys: bump when parsing/re-basing changes


@dataclass(slots=True)
class Source:
    name: str
    kind: str  # week | hour | requests
    label: str
    synthetic: bool
    week: WeekStore | None = None
    hour: pd.DataFrame | None = None  # t_s (from the first row), input_tokens, output_tokens
    requests: pd.DataFrame | None = None  # arrival_s, model, input_tokens, output_tokens
    info: dict = field(default_factory=dict)

    def counts(self) -> dict:
        return self.week.info if self.week is not None else self.info


def resolve_path(p: str | None, what: str) -> Path:
    if p is None or str(p) in ("", "???", "None"):
        raise InputError(f"{what}: a path is required (e.g. {what}=<file>)")
    path = Path(str(p)).expanduser()
    if not path.exists() and not path.is_absolute():
        if (REPO_ROOT / path).exists():  # checkout-relative
            path = REPO_ROOT / path
        elif (data_dir() / path).exists():  # then the bundled data
            path = bundled(path)
    if not path.exists():
        raise InputError(f"{what}: file not found: {path}")
    return path.resolve()


def _get(cfg, key: str, default=None):
    return cfg.get(key, default) if hasattr(cfg, "get") else default


# ---------------------------------------------------------------- week sources
def _azure2024(cfg, use_cache: bool) -> Source:
    path = resolve_path(_get(cfg, "path"), "source.path")
    max_bad = int(_get(cfg, "max_unparseable", 0))
    origin = str(_get(cfg, "day_origin", "first_row"))
    key = key_of({"src": "azure2024", "file": file_identity(path), "max_bad": max_bad, "origin": origin,
                  "lv": LOADER_VERSION})
    store = WeekStore(key, lambda: load_azure_csv(path, max_bad, origin), use_cache)
    return Source("azure2024", "week", f"Azure LLM inference trace 2024 ({path.name})", False, week=store)


def _synthetic(cfg, use_cache: bool) -> Source:
    params = {k: (dict(v) if hasattr(v, "items") else v) for k, v in cfg.items() if k not in ("name", "cache")}
    key = key_of({"src": "synthetic", "params": params, "lv": LOADER_VERSION, "gen": GENERATOR_VERSION})

    def make() -> Trace:
        us, ctx, gen, info = synthetic.synthesize(cfg)
        try:  # beside the cache (big and fast), else the system temp dir when the cache is not writable
            cache_root().mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=cache_root()))
        except OSError:
            tmp = Path(tempfile.mkdtemp(prefix=".synthetic-"))
        try:
            csv = tmp / "synthetic_week.csv"
            synthetic.write_azure_csv(csv, us, ctx, gen)
            del us, ctx, gen
            trace = load_azure_csv(csv, int(_get(cfg, "max_unparseable", 0)), str(_get(cfg, "day_origin", "first_row")))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        trace.info.update({"generator": info, "path": "(generated CSV, not kept; see warmserve.workload.synthetic)"})
        return trace

    return Source("synthetic", "week", synthetic.label(cfg), True, week=WeekStore(key, make, use_cache))


GENERATOR_VERSION = 1  # bump when synthesize() changes its output for the same parameters


SERVEGEN_COLUMNS = ["window_start_s", "rate", "iat_cv", "dist", "shape", "scale"]


def servegen_clients(path: Path, clients) -> dict[int, pd.DataFrame]:
    """Per-client window tables from ``path``: a folder in ServeGen's own layout
    (``chunk-<client>-trace.csv``, no header) or the bundled parquet (the same rows with a
    ``client`` column, ``data/SOURCES.md``). ``clients`` (ids) selects some, ``None`` all."""
    wanted = None if clients is None else {int(c) for c in clients}
    out: dict[int, pd.DataFrame] = {}
    if path.is_dir():
        for f in sorted(path.glob("chunk-*-trace.csv"), key=lambda p: int(p.stem.split("-")[1])):
            cid = int(f.stem.split("-")[1])
            if wanted is None or cid in wanted:
                df = pd.read_csv(f, header=None, names=SERVEGEN_COLUMNS)
                if df.shape[1] != 6 or df["window_start_s"].isna().any():
                    raise InputError(f"{f}: expected 6 columns {SERVEGEN_COLUMNS}")
                out[cid] = df
    else:
        try:
            table = pd.read_parquet(path)
        except (OSError, ValueError) as exc:
            raise InputError(f"{path}: cannot read ServeGen parquet ({str(exc).splitlines()[0]})") from None
        missing = [c for c in ["client", *SERVEGEN_COLUMNS] if c not in table.columns]
        if missing:
            raise InputError(f"{path}: missing column(s) {missing}")
        for cid, df in table.groupby("client", sort=True):
            if wanted is None or int(cid) in wanted:
                out[int(cid)] = df[SERVEGEN_COLUMNS].reset_index(drop=True)
    if not out:
        raise InputError(f"source.path: no ServeGen clients (matching source.clients) in {path}")
    return out


def _servegen(cfg, use_cache: bool) -> Source:
    path = resolve_path(_get(cfg, "path"), "source.path")
    clients = _get(cfg, "clients")
    ids = sorted(servegen_clients(path, clients))
    files = [path] if path.is_file() else [path / f"chunk-{c}-trace.csv" for c in ids]
    params = {k: (list(v) if hasattr(v, "__iter__") and not isinstance(v, str) else v)
              for k, v in cfg.items() if k not in ("name", "cache")}
    key = key_of({"src": "servegen", "params": params, "files": [file_identity(f) for f in files],
                  "gen": GENERATOR_VERSION})
    store = WeekStore(key, lambda: servegen_week(servegen_clients(path, clients), cfg), use_cache)
    label = (f"week generated from ServeGen rates ({path.name}, {len(ids)} clients, scale {float(cfg.scale):g}; "
             f"token lengths from the Azure 2024 {cfg.token_trace} CDF)")
    return Source("servegen", "week", label, True, week=store)


def servegen_week(clients: dict[int, pd.DataFrame], cfg) -> Trace:
    """Arrivals for 7 days of ServeGen per-client windows; day 0 (no calendar upstream) is taken as Monday.

    Per client and window, inter-arrival times are drawn from the window's Gamma or
    Weibull (shape, scale), rescaled to the window's rate times ``scale`` (as ServeGen
    rescales to the window rate), from a random phase; arrivals past the window end are cut.
    """
    rng = np.random.default_rng(int(cfg.seed))
    scale = float(cfg.scale)
    if not scale > 0:
        raise InputError(f"source.scale must be > 0, got {scale}")
    first_s = float(_get(cfg, "start_day", 0)) * DAY_S
    parts = []
    for cid, df in clients.items():
        width = float(df["window_start_s"].diff().dropna().iloc[0]) if len(df) > 1 else 600.0
        df = df[(df["window_start_s"] >= first_s) & (df["window_start_s"] < first_s + 7 * DAY_S)]
        for row in df.itertuples(index=False):
            if not isinstance(row.dist, str) or not row.rate > 0 or not row.shape > 0:
                continue
            rate = float(row.rate) * scale
            m = rate * width
            k = int(m + 6 * np.sqrt(m) + 10)
            if row.dist == "Gamma":
                iat, dist_mean = rng.gamma(row.shape, row.scale, size=k), row.shape * row.scale
            elif row.dist == "Weibull":
                iat, dist_mean = (row.scale * rng.weibull(row.shape, size=k),
                                  row.scale * special.gamma(1 + 1 / row.shape))
            else:
                raise InputError(f"source.path: client {cid}: unknown inter-arrival distribution '{row.dist}'")
            iat *= (1.0 / rate) / dist_mean
            t = np.cumsum(iat) - rng.uniform(0, 1) * iat[0]
            parts.append(row.window_start_s - first_s + t[t < width])
    t = np.sort(np.concatenate(parts)) if parts else np.empty(0)
    n = len(t)
    if n == 0:
        raise InputError("source: the ServeGen clients have no requests in the chosen days")
    cdf_path = resolve_path(str(cfg.token_cdf), "source.token_cdf")
    tokens = []
    for fld in ("ContextTokens", "GeneratedTokens"):
        x, y = synthetic.token_cdf(cdf_path, fld, str(cfg.token_trace))
        tokens.append(np.rint(np.interp(rng.uniform(0, 100, size=n), x, y)).astype(np.int64))
    frame = pd.DataFrame({"t_s": t, "input_tokens": tokens[0], "output_tokens": tokens[1]})
    info = {"rows_read": n, "rows_kept": n, "rows_unparseable_timestamp": 0, "clients": len(clients),
            "synthetic_arrivals": True}
    return Trace(frame=frame, info=info)


# ---------------------------------------------------------------- hour / request sources
def _hour_frame(t: np.ndarray, inp: np.ndarray, out: np.ndarray) -> pd.DataFrame:
    """Rows of the source's first hour (``0 <= t <= 3600`` from the first row, as the recipe's hour)."""
    keep = t <= HOUR_S
    return pd.DataFrame({"t_s": t[keep], "input_tokens": inp[keep], "output_tokens": out[keep]})


def _azure2023(cfg, use_cache: bool) -> Source:
    trace = str(_get(cfg, "trace", "conv"))
    path = resolve_path(_get(cfg, "path") or f"traces/azure_llm_2023/AzureLLMInferenceTrace_{trace}.csv", "source.path")
    ns, ctx, gen, counts = read_azure_rows(path, int(_get(cfg, "max_unparseable", 0)))
    t = (ns - ns[0]).astype(np.float64) / 1e9
    hour = _hour_frame(t, ctx, gen)
    counts["rows_after_first_hour"] = int(len(hour))
    return Source("azure2023", "hour", f"Azure LLM inference trace 2023 ({path.name}, real, one hour)", False,
                  hour=hour, info=counts)


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.name.endswith((".jsonl", ".json", ".jsonl.gz", ".json.gz")):
            return pd.read_json(path, lines=True)  # compression inferred from the name
        return pd.read_csv(path)
    except (ValueError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None


ALIASES = {
    "arrival_s": ("arrival_s",),
    "timestamp_ms": ("timestamp",),
    "input_tokens": ("input_tokens", "input_length"),
    "output_tokens": ("output_tokens", "output_length"),
}


def _column(df: pd.DataFrame, key: str, path: Path) -> str | None:
    for c in ALIASES[key]:
        if c in df.columns:
            return c
    return None


def _tokens(df: pd.DataFrame, key: str, path: Path) -> np.ndarray:
    c = _column(df, key, path)
    if c is None:
        raise InputError(f"{path}: missing column {' or '.join(ALIASES[key])}")
    return check_tokens(_numbers(df, c), path, c)


def _numbers(df: pd.DataFrame, c: str) -> np.ndarray:
    """Column ``c`` as float64 (non-numeric cells NaN), for checking before any conversion."""
    return pd.to_numeric(df[c], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def read_request_file(path: Path, rebase: bool = True) -> tuple[pd.DataFrame, dict]:
    """A user/Mooncake CSV or JSONL -> (arrival_s, tokens[, model]) sorted, stable.

    ``rebase`` shifts times so the first request arrives at 0 (a trace excerpt); a user's own
    per-model workload keeps its times as given (a leading gap can be deliberate, e.g. to let
    setup prewarms finish before the first request).
    """
    df = _read_table(path)
    if len(df) == 0:
        raise InputError(f"{path}: no rows")
    if (c := _column(df, "arrival_s", path)) is not None:
        t = check_arrivals(_numbers(df, c), path, c)
    elif (c := _column(df, "timestamp_ms", path)) is not None:
        t = check_arrivals(_numbers(df, c), path, c) / 1000.0
    else:
        raise InputError(f"{path}: missing column arrival_s (seconds) or timestamp (ms)")
    out = pd.DataFrame({"t_s": t, "input_tokens": _tokens(df, "input_tokens", path),
                        "output_tokens": _tokens(df, "output_tokens", path)})
    if "model" in df.columns:
        out["model"] = df["model"].astype(str).to_numpy()
    out = out.iloc[np.argsort(t, kind="stable")].reset_index(drop=True)
    if rebase:
        out["t_s"] = out["t_s"] - out["t_s"].iloc[0]
    elif (out["t_s"] < 0).any():
        raise InputError(f"{path}: column '{c}' has negative arrival times")
    return out, {"path": str(path), "rows_read": int(len(df)), "rows_kept": int(len(df)),
                 "rows_unparseable_timestamp": 0}


def _mooncake(cfg, use_cache: bool) -> Source:
    path = resolve_path(_get(cfg, "path") or "traces/mooncake/conversation_trace.jsonl.gz", "source.path")
    df, info = read_request_file(path)
    hour = _hour_frame(df["t_s"].to_numpy(), df["input_tokens"].to_numpy(), df["output_tokens"].to_numpy())
    info["rows_after_first_hour"] = int(len(hour))
    return Source("mooncake", "hour", f"Mooncake trace ({path.name}, real arrivals, one hour)", False,
                  hour=hour, info=info)


def _file(cfg, use_cache: bool) -> Source:
    path = resolve_path(_get(cfg, "path"), "source.path")
    df, info = read_request_file(path, rebase=False)
    if "model" in df.columns:
        req = df.rename(columns={"t_s": "arrival_s"})
        return Source("file", "requests", f"user workload ({path.name})", bool(_get(cfg, "synthetic", False)),
                      requests=req, info=info)
    t = df["t_s"].to_numpy()
    hour = _hour_frame(t - t[0], df["input_tokens"].to_numpy(), df["output_tokens"].to_numpy())
    info["rows_after_first_hour"] = int(len(hour))
    return Source("file", "hour", f"user trace ({path.name}, one hour)", bool(_get(cfg, "synthetic", False)),
                  hour=hour, info=info)


_OPENERS = {
    "azure2024": _azure2024,
    "synthetic": _synthetic,
    "azure2023": _azure2023,
    "servegen": _servegen,
    "mooncake": _mooncake,
    "file": _file,
}


def open_source(cfg, use_cache: bool = True) -> Source:
    """Open ``cfg`` (a dict with ``name`` and source-specific keys, ``configs/source/<name>.yaml``)."""
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    name = _get(cfg, "name")
    if name not in _OPENERS:
        raise InputError(f"unknown source '{name}'; choose one of {list(SOURCE_NAMES)}")
    # the group's defaults under the given keys (a source config is a mapping)
    merged = cast(DictConfig, OmegaConf.merge(load_yaml("source", str(name)), cfg))
    return _OPENERS[name](merged, use_cache and bool(merged.get("cache", True)))
