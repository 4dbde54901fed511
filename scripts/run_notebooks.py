"""Execute the figure notebooks headless: ``python scripts/run_notebooks.py [names...] [--fail-fast]``.

Each notebook in ``notebooks/`` (``NN_name.ipynb``) runs under papermill with
the ``python3`` kernel of *this* interpreter (jupyter_client starts a kernel
spec whose command is ``python`` as ``sys.executable``; we also put this
interpreter's directory first on ``PATH``), so the kernel sees the project's
``.venv`` and its editable ``warmserve``. The executed copy, with outputs,
goes to ``results/notebooks/executed/`` (git-ignored); the tracked notebooks
stay clean. Names may be ``02``, ``02_main`` or ``02_main.ipynb``; none = all.

Prints each notebook's wall time; exits 1 naming every notebook that failed
(its executed copy, error cell included, is kept for debugging), 2 for an
unknown name.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
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


def run_one(nb: Path, out_dir: Path) -> tuple[float, str | None]:
    """Execute ``nb`` into ``out_dir``; (seconds, None) or (seconds, one-line error)."""
    import papermill as pm

    out = out_dir / nb.name
    t0 = time.perf_counter()
    try:
        pm.execute_notebook(str(nb), str(out), kernel_name="python3", cwd=str(NOTEBOOKS),
                            progress_bar=False, log_output=False, request_save_on_cell_execute=False)
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
    p.add_argument("--out", default=str(EXECUTED), help="where executed copies go (default: %(default)s)")
    a = p.parse_args(argv)
    nbs = select(a.names)
    out_dir = Path(a.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    os.environ.setdefault("MPLBACKEND", "Agg")
    failed: list[tuple[str, str]] = []
    total = 0.0
    for i, nb in enumerate(nbs, 1):
        print(f"[{i}/{len(nbs)}] {nb.name} ...", end=" ", flush=True)
        took, err = run_one(nb, out_dir)
        total += took
        left = total / i * (len(nbs) - i)
        print(f"{'ok' if err is None else 'FAILED'} in {took:.1f} s (eta {left:.0f} s)", flush=True)
        if err:
            failed.append((nb.name, err))
            print(f"    {err}", file=sys.stderr, flush=True)
            if a.fail_fast:
                break
    print(f"{len(nbs) - len(failed)}/{len(nbs)} notebooks ok in {total:.1f} s; executed copies in {out_dir}")
    if failed:
        print("FAILED notebooks: " + ", ".join(n for n, _ in failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
