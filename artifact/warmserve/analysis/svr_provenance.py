"""Where a twin-vs-real comparison came from: one revision, one machine, one calibration.

The CPU machine's speed drifts ~2x between days (docs/environment.md §4), so a table that
mixes a calibration from one day with real runs from another measures the drift, not the twin.
``scripts/sim_vs_real.sh`` writes everything one comparison needs under one root:
``calibration/raw.json`` + ``calibration/hardware/<profile>.yaml`` (the short calibration just
before the runs), ``sim-<system>/`` (the twin, with that profile), ``testbed-<system>[-repeat*]/``
(real runs) each with ``host.json`` (machine without hostname, revision, load average during the
run; ``warmserve.calibrate.machine``). ``collect`` gathers it and ``problems`` lists every way it
is not one revision / one machine / one calibration; the table refuses to build when there are
any, unless told to (``allow_mixed``), and then prints them in its header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import OmegaConf

from warmserve.calibrate.machine import fingerprint


class MixedProvenance(ValueError):
    """The runs and calibration behind a table are not from one revision and one machine."""


@dataclass
class Provenance:
    revisions: dict[str, str] = field(default_factory=dict)  # run or "calibration" -> git revision
    machines: dict[str, str] = field(default_factory=dict)  # run or "calibration" -> machine fingerprint
    loads: dict[str, dict] = field(default_factory=dict)  # real run -> load average during it (host.json)
    calibration: dict = field(default_factory=dict)  # _-keys of calibration/raw.json
    profile: Path | None = None  # the profile the twin side used
    sims_on_profile: dict[str, bool] = field(default_factory=dict)  # sim run -> used exactly that profile
    missing: list[str] = field(default_factory=list)  # records that are not there

    def revision(self) -> str:
        revs = sorted({_clean(r) for r in self.revisions.values()})
        return revs[0] if len(revs) == 1 else " / ".join(revs) or "unknown"

    def machine(self) -> str:
        ms = sorted(set(self.machines.values()))
        return ms[0] if len(ms) == 1 else " / ".join(ms) or "unknown"


def _clean(rev: str) -> str:
    return rev.removesuffix("+dirty")


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def calibration_profile(root: Path) -> Path | None:
    """The one profile under ``<root>/calibration/hardware/`` (None when absent)."""
    found = sorted((root / "calibration" / "hardware").glob("*.yaml"))
    return found[0] if len(found) == 1 else None


def collect(root: Path, sims: list[Path], reals: list[Path]) -> Provenance:
    """Revision, machine and load of each run and of the calibration under ``root``."""
    p = Provenance()
    raw = _json(root / "calibration" / "raw.json")
    if raw is None:
        p.missing.append("calibration/raw.json (the calibration of this machine behind the twin)")
    else:
        p.calibration = {k: v for k, v in raw.items() if k.startswith("_")}
        p.revisions["calibration"] = raw.get("_git_revision", "unknown")
        if raw.get("_machine"):
            p.machines["calibration"] = fingerprint(raw["_machine"])
        else:
            p.missing.append("calibration/raw.json has no _machine")
    p.profile = calibration_profile(root)
    prof = OmegaConf.to_container(OmegaConf.load(p.profile), resolve=True) if p.profile else None
    if p.profile is None:
        p.missing.append("calibration/hardware/<profile>.yaml (the profile the twin used)")
    for run in [*sims, *reals]:
        doc = _json(run / "run.json") or {}
        p.revisions[run.name] = doc.get("git_revision", "unknown")
        if run in sims:
            p.sims_on_profile[run.name] = prof is not None and (doc.get("config") or {}).get("hardware") == prof
            continue
        host = _json(run / "host.json")
        if host is None:
            p.missing.append(f"{run.name}/host.json (machine and load average of the real run)")
            continue
        p.machines[run.name] = fingerprint(host["machine"])
        p.loads[run.name] = host.get("loadavg_1m", {})
        if _clean(host.get("git_revision", "")) != _clean(p.revisions[run.name]):
            p.missing.append(f"{run.name}: host.json revision {host.get('git_revision')} != run.json's")
    return p


def problems(p: Provenance) -> list[str]:
    """Every way the comparison is not one revision, one machine, one calibration."""
    out = list(p.missing)
    revs = {_clean(r) for r in p.revisions.values()}
    if len(revs) > 1:
        out.append("mixed revisions: " + ", ".join(f"{k} {v[:10]}" for k, v in sorted(p.revisions.items())))
    if len(set(p.machines.values())) > 1:
        out.append("mixed machines: " + ", ".join(f"{k}: {v}" for k, v in sorted(p.machines.items())))
    out += [f"{s} did not run on this comparison's calibrated profile" for s, ok in p.sims_on_profile.items()
            if not ok and p.profile is not None]
    return out


def check(p: Provenance, allow_mixed: bool) -> list[str]:
    """``problems(p)``; raises :class:`MixedProvenance` when there are any and ``allow_mixed`` is false."""
    found = problems(p)
    if found and not allow_mixed:
        raise MixedProvenance("the comparison mixes provenance (pass allow_mixed to build it anyway):\n  "
                              + "\n  ".join(found))
    return found
