"""Where a figure or table came from: the runs it was drawn from, their code revisions, a config hash.

A figure in ``figures/`` or a table in ``results/tables/`` is only as
trustworthy as the runs behind it. Every save writes a sidecar
``<name>.json`` next to the output (both are git-ignored) listing each run
directory, the git revision that produced it (``run.json["git_revision"]``)
and a hash of its resolved config (``run.json["config"]``), the notebook that
drew it and the time. The time lives only in the sidecar, so a committed
table regenerated from the same runs is byte-identical.

Runs of different revisions may measure different code: a notebook refuses to
mix them (``MixedRevisions``, one line naming the revisions) unless it sets
``allow_mixed_revisions`` (its parameters cell, passed to ``figures.setup``),
and then the figure title and the table say so. A run with no revision
recorded counts as the one revision ``unknown``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd

from warmserve.config import REPO_ROOT
from warmserve.errors import InputError

UNKNOWN_REVISION = "unknown"
SHORT_REV = 7  # characters of a revision shown in titles and tables (git's own short form)
HASH_CHARS = 16  # hex characters of the config hash: plenty to tell configs apart, short enough to read
SIDECAR_VERSION = 1

RunsLike: TypeAlias = pd.DataFrame | Iterable[str | Path]


class MixedRevisions(InputError):
    """A figure or table would mix runs of different git revisions without the notebook allowing it."""


@dataclass
class Session:
    """Per-kernel settings a notebook declares once (``figures.setup``)."""

    notebook: str | None = None
    allow_mixed_revisions: bool = False


SESSION = Session()


def configure(notebook: str | None, allow_mixed_revisions: bool) -> None:
    """Record which notebook is drawing and whether it allows mixed revisions (for every later save)."""
    SESSION.notebook = notebook
    SESSION.allow_mixed_revisions = bool(allow_mixed_revisions)


def run_paths(runs: RunsLike | None) -> list[Path]:
    """Run directories from a runs frame (its ``path`` column, one per run) or an iterable of paths."""
    if runs is None:
        return []
    if isinstance(runs, pd.DataFrame):
        if runs.empty:
            return []
        if "path" not in runs.columns:
            raise InputError("runs frame has no 'path' column: pass a frame from load_runs/require_runs")
        return sorted({Path(p) for p in runs["path"]})
    return sorted({Path(p) for p in runs})


def config_hash(config: Mapping[str, Any]) -> str:
    """A stable hash of a resolved config (key order does not matter)."""
    blob = json.dumps(config, sort_keys=True, default=str, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:HASH_CHARS]


def run_record(path: Path) -> dict[str, Any]:
    """One run's lineage: its directory, git revision (``unknown`` when absent) and config hash."""
    doc_path = Path(path) / "run.json"
    if not doc_path.is_file():
        raise InputError(f"{doc_path}: missing (a figure can only be drawn from finished runs)")
    doc = json.loads(doc_path.read_text())
    return {"path": _absolute(path), "name": Path(path).name,
            "git_revision": doc.get("git_revision") or UNKNOWN_REVISION,
            "config_sha256": config_hash(doc.get("config", {}))}


def _absolute(path: str | Path) -> str:
    """Absolute without resolving symlinks: a results/ tree of links keeps its own names."""
    return os.path.abspath(path)


def revision_counts(revisions: Iterable[object]) -> dict[str, int]:
    """Runs per revision; a missing or empty revision counts as ``unknown``."""
    clean = [str(r) if isinstance(r, str) and r else UNKNOWN_REVISION for r in revisions]
    return dict(sorted(Counter(clean).items()))


def _short(rev: str) -> str:
    return rev if rev == UNKNOWN_REVISION else rev[:SHORT_REV]


def revisions_text(counts: Mapping[str, int]) -> str:
    """'16c8a0f (40 runs), f426ec5 (4 runs)'."""
    return ", ".join(f"{_short(r)} ({n} run{'s' if n != 1 else ''})" for r, n in counts.items())


def check_revisions(counts: Mapping[str, int], allow: bool | None = None) -> str:
    """'' for one revision; raise ``MixedRevisions`` for several unless allowed, else the statement to show."""
    if len(counts) <= 1:
        return ""
    allow = SESSION.allow_mixed_revisions if allow is None else allow
    if not allow:
        raise MixedRevisions(f"runs from {len(counts)} git revisions: {revisions_text(counts)}; rerun them at one "
                             "revision or set allow_mixed_revisions = True in the notebook's parameters")
    return f"MIXED git revisions (allowed): {revisions_text(counts)}"


def display_dir(path: Path, results: Path) -> str:
    """A run's experiment directory as a machine-independent name (``results/main``), never absolute."""
    parent = Path(_absolute(path)).parent
    for root, prefix in ((Path(_absolute(results)), "results"), (Path(_absolute(REPO_ROOT)), "")):
        if parent.is_relative_to(root):
            rel = parent.relative_to(root).as_posix()
            return "/".join(p for p in (prefix, rel) if p and p != ".")
    return parent.name


def table_line(records: list[dict[str, Any]], results: Path, allow: bool | None = None) -> str:
    """The deterministic provenance line of a committed table (no time, host or absolute path)."""
    if not records:
        return ""
    counts = revision_counts(r["git_revision"] for r in records)
    mixed = check_revisions(counts, allow)
    dirs = sorted({display_dir(Path(r["path"]), results) for r in records})
    where = f"{len(records)} run{'s' if len(records) != 1 else ''} in {', '.join(dirs)}"
    if mixed:
        return f"Drawn from {where}; {mixed}."
    return f"Drawn from {where} at git revision {_short(next(iter(counts)))}."


def file_record(path: str | Path) -> dict[str, Any]:
    """A non-run input (searches.csv, errors.parquet, a config) with a content hash, or marked missing."""
    p = Path(path)
    digest = hashlib.sha256(p.read_bytes()).hexdigest()[:HASH_CHARS] if p.is_file() else None
    return {"path": _absolute(p), "sha256": digest}


def sidecar(name: str, kind: str, outputs: list[Path], records: list[dict[str, Any]],
            inputs: Iterable[str | Path] = (), allow: bool | None = None) -> dict[str, Any]:
    """The sidecar document; raises ``MixedRevisions`` like the title does."""
    counts = revision_counts(r["git_revision"] for r in records)
    mixed = check_revisions(counts, allow)
    return {
        "sidecar_version": SIDECAR_VERSION,
        "name": name,
        "kind": kind,
        "outputs": [p.name for p in outputs],
        "notebook": SESSION.notebook or os.environ.get("WARMSERVE_NOTEBOOK") or "unknown (not set by figures.setup)",
        "written_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "revisions": counts,
        "mixed_revisions_allowed": bool(mixed),
        "runs": records,
        "inputs": [file_record(p) for p in inputs],
    }


def replace_text(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a table or sidecar."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_sidecar(path: Path, doc: dict[str, Any]) -> Path:
    """Write the sidecar atomically (a reader never sees half of it)."""
    replace_text(path, json.dumps(doc, indent=1, sort_keys=False) + "\n")
    return path
