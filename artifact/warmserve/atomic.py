"""Writing output directories all-or-nothing, and checking an output path before any work.

``atomic_output_dir(out)`` yields a staging directory next to ``out``
(``.<name>.tmp-<random>``); on success the staging directory *becomes*
``out`` with one ``os.replace`` of the directory. If ``out`` already exists
(a rerun with ``force``, or an unfinished directory of an older run) it is
first moved aside to ``.<name>.old-<random>`` and removed after the publish.
A process killed at any point therefore leaves either the old ``out``, the
new ``out``, or no ``out`` at all, plus hidden staging directories that the
next ``atomic_output_dir`` (or ``remove_stale``) for the same ``out`` deletes.
It never leaves an ``out`` that holds only some of the new files.

``check_output_dir(out)`` is called first thing by every command: it rejects
an ``out`` that exists and is not a directory, creates the parents and proves
the parent is writable, so an unwritable path fails before the replay.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from warmserve.errors import InputError

STAGE_TAG = ".tmp-"
OLD_TAG = ".old-"


def _hidden(final: Path, tag: str) -> str:
    return f".{final.name}{tag}"


def remove_stale(out: str | os.PathLike[str]) -> list[Path]:
    """Delete the staging / moved-aside directories a killed writer of ``out`` left; returns them."""
    final = Path(out)
    if not final.parent.is_dir():
        return []
    stale = [p for p in final.parent.iterdir()
             if p.name.startswith((_hidden(final, STAGE_TAG), _hidden(final, OLD_TAG)))]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    return stale


def check_output_dir(out: str | os.PathLike[str], key: str = "out",
                     owned: Callable[[Path], bool] | None = None) -> Path:
    """Fail early (``InputError`` naming ``key``) if ``out`` cannot receive a published directory.

    ``owned(out)`` says whether an existing non-empty ``out`` is ours to replace (e.g. an older run
    directory); a directory of someone else's files is never replaced.
    """
    final = Path(out)
    if final.exists() and not final.is_dir():
        raise InputError(f"{key}: {final} exists and is not a directory")
    if final.is_dir() and owned is not None and any(final.iterdir()) and not owned(final):
        raise InputError(f"{key}: {final} holds files that are not this command's output; "
                         "choose an empty or new directory")
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{key}: cannot create {final.parent} ({exc.strerror or exc})") from None
    if not final.parent.is_dir():
        raise InputError(f"{key}: {final.parent} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=_hidden(final, ".probe-"), dir=final.parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"{key}: cannot write in {final.parent} ({exc.strerror or exc})") from None
    return final


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(stage: Path, final: Path) -> None:
    """Make ``stage`` be ``final`` (see the module doc); the only step that changes ``final``."""
    stage.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; a published directory gets the usual mode
    old: Path | None = None
    if final.exists() or final.is_symlink():
        old = Path(tempfile.mkdtemp(prefix=_hidden(final, OLD_TAG), dir=final.parent))
        os.replace(final, old / "d")  # move the previous directory aside (no partial merge)
    os.replace(stage, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_output_dir(out: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a staging directory that replaces ``out`` as a whole on success (module doc).

    On any exception (Ctrl-C included) the staging directory is removed and
    ``out`` is left as it was.
    """
    final = Path(out)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(final)
    stage = Path(tempfile.mkdtemp(prefix=_hidden(final, STAGE_TAG), dir=final.parent))
    try:
        yield stage
        publish(stage, final)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
