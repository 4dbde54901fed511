"""Two ways to take noise out of the CPU testbed's own measurements (configs/backend/testbed.yaml).

* ``warm_page_cache``: read the checkpoints once before anything is timed, so the first engine
  start of a run (or of a calibration) does not pay for disk reads that later starts do not --
  the twin's start model has a single load rate for every start.
* ``pin_host``: move the calling process (the controller, the front door and the replay client all
  run on one asyncio loop in it) onto ``host_cores``, away from the slots' cores, so its Python
  work does not steal cycles from the engines it measures. Pre-spawned processes inherit the
  mask while they import vLLM and move to their slot's cores when handed a start
  (``warmserve.testbed.prespawn``). On the 2-core machine every core is a slot, so there is
  nothing to pin to and ``host_cores`` stays unset.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from warmserve.testbed.engines import parse_cpus

CHUNK = 1 << 22  # read size when warming the page cache


def warm_page_cache(dirs: Iterable[Path]) -> int:
    """Read every file under ``dirs`` once (into the page cache); returns the bytes read."""
    total = 0
    for d in dirs:
        for f in sorted(Path(d).rglob("*")):
            if f.is_file():
                with f.open("rb", buffering=0) as fh:
                    while chunk := fh.read(CHUNK):
                        total += len(chunk)
    return total


def host_cpus(cores: str | None, slot_cores: Iterable[str] = ()) -> set[int] | None:
    """The cores ``host_cores`` names (None when unset). Refuses cores that overlap a slot's -- that
    would put the host work exactly where it must not be -- and cores this machine lacks."""
    if not cores:
        return None
    want = set(parse_cpus(cores))
    slots = {c for s in slot_cores for c in parse_cpus(s)}
    if want & slots:
        raise ValueError(f"backend.host_cores {cores!r} overlaps the slots' cores {sorted(slots)}")
    missing = want - set(range(os.cpu_count() or 0))
    if missing or not want:
        raise ValueError(f"backend.host_cores {cores!r}: no cores {sorted(missing)} on this machine")
    return want


def pin_host(cpus: set[int] | None) -> Callable[[], None]:
    """Pin this process to ``cpus``; returns a function that restores the old mask (no-op when None)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return lambda: None
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cpus)
    return lambda: os.sched_setaffinity(0, old)
