"""Which machine, which revision, how busy: the provenance a twin-vs-real comparison needs.

The 2-core VMs the testbed runs on drift ~2x in speed between days (docs/environment.md §4),
so a calibration only describes the machine and the hour it was taken on, and a comparison
is only meaningful when the calibration and the real runs come from the same machine and
revision. This module describes the machine *without its hostname* (tables are committed and
published), and wraps a command to record the load average while it runs::

    python -m warmserve.calibrate.machine --out RUN_DIR/host.json -- python -m warmserve.run ...

The wrapped command's exit status is passed through; ``host.json`` is written after it ends
(``warmserve.run`` replaces its output directory atomically, so it must come last).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
from pathlib import Path

from warmserve.config import REPO_ROOT

LOAD_SAMPLE_S = 5.0  # load-average sampling period while a wrapped command runs (ours)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux, blanks collapsed), else what ``platform`` knows.
    The one description of the CPU for calibration records and the real-engine driver's plan."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return " ".join(line.split(":", 1)[1].split())
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def usable_cores() -> int:
    """Cores this process may run on (its affinity), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def describe() -> dict:
    """CPU model, cores, memory, OS and Python -- deliberately no hostname, user or address."""
    usable = usable_cores()
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = 0
    return {"cpu_model": cpu_model(), "cores": os.cpu_count() or 0, "cores_usable": usable,
            "mem_gib": round(mem / 2**30, 1), "os": f"{platform.system()} {platform.release()}",
            "arch": platform.machine(), "python": platform.python_version()}


def fingerprint(desc: dict) -> str:
    """What must match for two records to count as 'the same machine' (a kind of machine:
    without a hostname two VMs of one type are indistinguishable, which is what we compare on)."""
    return f"{desc.get('cpu_model', '?')}, {desc.get('cores', '?')} cores, {desc.get('mem_gib', '?')} GiB"


def git_revision() -> str:
    """HEAD of the checkout, with ``+dirty`` when tracked files differ from it."""
    try:
        rev = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, check=False).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=False).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (rev or "unknown") + ("+dirty" if rev and dirty else "")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class LoadSampler:
    """Samples the 1-minute load average every ``period_s`` on a daemon thread."""

    def __init__(self, period_s: float = LOAD_SAMPLE_S) -> None:
        self.period_s = period_s
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while True:
            self.samples.append(os.getloadavg()[0])
            if self._stop.wait(self.period_s):
                return

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": round(sum(s) / len(s), 2), "max": round(max(s), 2), "samples": len(s),
                "period_s": self.period_s}


def record(command: list[str], out: Path) -> int:
    """Run ``command``, then write ``out``: machine, revision, start/end time, load average during it."""
    started = now_iso()
    with LoadSampler() as load:
        rc = subprocess.call(command)
    doc = {"machine": describe(), "git_revision": git_revision(), "started": started, "finished": now_iso(),
           "loadavg_1m": load.summary(),
           "command": [Path(command[0]).name, *(a.replace(f"{REPO_ROOT}/", "") for a in command[1:])],
           "exit_status": rc}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    return rc


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv:
        print("usage: python -m warmserve.calibrate.machine [--out FILE -- COMMAND ...]", file=sys.stderr)
        print(json.dumps({"machine": describe(), "git_revision": git_revision()}, indent=1))
        return 0 if not argv else 2
    i = argv.index("--")
    p = argparse.ArgumentParser(prog="python -m warmserve.calibrate.machine")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv[:i])
    return record(argv[i + 1:], a.out)


if __name__ == "__main__":
    raise SystemExit(main())
