"""A pre-spawned engine process: imports the engine module now, gets its arguments later.

This is the "worker" prewarm mechanism of the published system (reference
docs/reference.md §1.1: 32 api_server processes are pre-spawned with vLLM imported and
block on one line of CLI arguments on stdin). We do the same without forking
vLLM: this wrapper imports the server module (the expensive part of a CPU
engine start is Python import and initialisation, docs/environment.md §1), writes a
ready file, then reads one JSON object ``{"args": [...], "env": {...}}`` from
stdin, applies the environment (e.g. the core binding of the slot it was given)
and runs the module as ``__main__`` with the arguments. Modules it imported stay imported, so the
run skips that cost.

Run: ``python -m warmserve.testbed.prespawn --module vllm.entrypoints.openai.api_server
--ready-file /tmp/x.ready`` and write ``{"args": ["--model", "..."], "env": {}}\\n`` to its stdin.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import runpy
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--module", required=True, help="module to import now and run as __main__ later")
    p.add_argument("--preload", action="append", default=[], help="extra modules to import now")
    p.add_argument("--ready-file", required=True, type=Path)
    a = p.parse_args(argv)
    t0 = time.monotonic()
    importlib.import_module(a.module)
    for extra in a.preload:
        importlib.import_module(extra)
    a.ready_file.write_text(f"{time.monotonic() - t0:.3f}\n")
    print(f"[prespawn] imported {a.module} in {time.monotonic() - t0:.2f} s; waiting for arguments", flush=True)
    line = sys.stdin.readline()
    if not line.strip():
        print("[prespawn] stdin closed before arguments arrived; exiting", flush=True)
        return
    msg = json.loads(line)
    args, env = msg.get("args"), msg.get("env") or {}
    if not isinstance(args, list) or not all(isinstance(x, str) for x in args):
        raise SystemExit(f"[prespawn] expected {{'args': [str, ...]}} on stdin, got {line[:200]!r}")
    os.environ.update({str(k): str(v) for k, v in env.items()})
    if msg.get("cpus"):  # the slot's cores; the engine's children inherit the affinity
        os.sched_setaffinity(0, [int(c) for c in msg["cpus"]])
    print(f"[prespawn] running {a.module} {' '.join(args)}", flush=True)
    sys.argv = [a.module, *args]
    runpy.run_module(a.module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
