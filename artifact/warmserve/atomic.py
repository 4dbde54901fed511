"""Writing run outputs atomically: all files appear together or none do."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging directory; on success its files replace those in ``out``.

    On any exception the staging directory is removed and ``out`` is left as it
    was (not created if it did not exist), so a failed run never leaves
    half-written results.
    """
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    final.mkdir(parents=True, exist_ok=True)
    for item in stage.iterdir():
        target = final / item.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(item, target)
    shutil.rmtree(stage, ignore_errors=True)
