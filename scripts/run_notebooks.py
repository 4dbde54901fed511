"""Execute the figure notebooks headless: ``python scripts/run_notebooks.py [names...] [--fail-fast]``.

Each notebook in ``notebooks/`` (``NN_name.ipynb``) runs under papermill with
the ``python3`` kernel of *this* interpreter (jupyter_client starts a kernel
spec whose command is ``python`` as ``sys.executable``; we also put this
interpreter's directory first on ``PATH``), so the kernel sees the project's
``.venv`` and its editable ``warmserve``. The executed copy, with outputs,
goes to ``results/notebooks/executed/`` (git-ignored); the tracked notebooks
stay clean. Names may be ``02``, ``02_main`` or ``02_main.ipynb``; none = all.

``--jobs`` notebooks run at once (default 2, one per core of the reference
machine). Prints each notebook's wall time; exits 1 naming every notebook that failed
(its executed copy, error cell included, is kept for debugging), 2 for an
unknown name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
EXECUTED = REPO / "results" / "notebooks" / "executed"

sys.path.insert(0, str(REPO / "artifact"))  # a fresh checkout without the editable install still finds errors
from warmserve.errors import InputError, cli_main  # noqa: E402


def available() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def select(names: list[str]) -> list[Path]:
    """Notebooks by number, stem or file name, in the order given (all when ``names`` is empty)."""
    nbs = available()
    if not names:
        return nbs
    out = []
    for n in names:
        n = Path(n).name.removesuffix(".ipynb")
        hits = [p for p in nbs if p.stem == n or p.stem.split("_", 1)[0] == n]
        if len(hits) != 1:
            raise InputError(f"notebook '{n}': {'ambiguous' if hits else 'not found'}; "
                             f"choose from {[p.stem for p in nbs]}")
        out.append(hits[0])
    return out


def run_one(nb: Path, out_dir: Path, parameters: dict | None = None) -> tuple[float, str | None]:
    """Execute ``nb`` into ``out_dir``; (seconds, None) or (seconds, one-line error).

    ``parameters`` are injected by papermill only into notebooks whose ``parameters`` cell
    declares them (the others are executed unchanged).
    """
    import papermill as pm

    out = out_dir / nb.name
    t0 = time.perf_counter()
    try:
        declared = set(pm.inspect_notebook(str(nb))) if parameters else set()
        params = {k: v for k, v in (parameters or {}).items() if k in declared}
        pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name="python3", cwd=str(NOTEBOOKS),
                            progress_bar=False, log_output=False, request_save_on_cell_execute=False,
                            extra_arguments=["--IPKernelApp.log_level=CRITICAL"])
    except pm.PapermillExecutionError as e:
        last = (e.evalue or "").strip().splitlines()
        return time.perf_counter() - t0, f"{e.ename}: {last[-1] if last else ''} (cell {e.exec_count}; see {out})"
    except Exception as e:  # kernel died, bad notebook JSON, ...
        return time.perf_counter() - t0, f"{type(e).__name__}: {e}"
    return time.perf_counter() - t0, None


@cli_main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python scripts/run_notebooks.py", description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebooks to run (default: all in notebooks/)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing notebook")
    p.add_argument("--jobs", type=int, default=2, help="notebooks executed at once (default: %(default)s, "
                   "one per core here; each runs in its own kernel)")
    p.add_argument("--out", default=str(EXECUTED), help="where executed copies go (default: %(default)s)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="papermill parameter for notebooks that declare it (value parsed as YAML), e.g. -p scale 0.1")
    a = p.parse_args(argv)
    import yaml

    parameters = {name: yaml.safe_load(value) for name, value in a.parameter}
    if a.jobs < 1:
        raise InputError(f"--jobs must be >= 1, got {a.jobs}")
    nbs = select(a.names)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("MPLBACKEND", "Agg")
    failed: list[tuple[str, str]] = []
    t_start = time.perf_counter()
    busy = 0.0
    with ProcessPoolExecutor(max_workers=min(a.jobs, len(nbs)) or 1) as pool:
        futs = {pool.submit(run_one, nb, out_dir, parameters): nb for nb in nbs}
        print(f"running {len(nbs)} notebook(s), {a.jobs} at a time", flush=True)
        for i, fut in enumerate(as_completed(futs), 1):
            nb = futs[fut]
            took, err = fut.result()
            busy += took
            el = time.perf_counter() - t_start
            eta = el / i * (len(nbs) - i)
            print(f"[{i}/{len(nbs)}] {nb.name:24s} {'ok' if err is None else 'FAILED'} in {took:5.1f} s  "
                  f"(elapsed {el:.0f} s, eta {eta:.0f} s)", flush=True)
            if err:
                failed.append((nb.name, err))
                print(f"    {err}", file=sys.stderr, flush=True)
                if a.fail_fast:
                    for f in futs:
                        f.cancel()
                    break
    total = time.perf_counter() - t_start
    print(f"{len(nbs) - len(failed)}/{len(nbs)} notebooks ok; wall {total:.1f} s (sum of notebook times "
          f"{busy:.1f} s); executed copies in {out_dir}")
    if failed:
        print("FAILED notebooks: " + ", ".join(n for n, _ in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
