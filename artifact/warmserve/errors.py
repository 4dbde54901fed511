"""One error type for bad input, and the CLI wrapper that turns it into a one-line exit.

Bad input (a missing file, a wrong column, an impossible config) must produce a
single clear line naming the field or file, a non-zero exit, and nothing
written. Code raises ``InputError`` with that line (``<key or file>: <what is
wrong>``); ``cli_main`` prints ``error: <line>`` and exits 2. Writers stage
outputs in a hidden directory and publish it whole only on success (see
``warmserve.atomic.atomic_output_dir``), which is also why an interrupted
command can always be resumed: ``cli_main`` turns Ctrl-C and SIGTERM into one
line saying so (exit 130 / 143) instead of a traceback.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

F = TypeVar("F", bound=Callable[..., object])

EXIT_INPUT = 2  # bad input (argparse's convention for usage errors)
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM  # the shell's 128 + signal number
RESUME_HINT = ("finished outputs are kept and the unfinished one left nothing behind; "
               "run the same command again to resume")


class InputError(ValueError):
    """Bad user input or config; the message is the whole one-line explanation."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so the same clean-up (staging directories removed) runs."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def cli_main(fn: F | None = None, *, resume_hint: str = RESUME_HINT) -> Any:
    """Wrap a command's main: ``InputError`` -> ``error: <line>``, exit 2; Ctrl-C / SIGTERM -> one line."""

    def deco(f: F) -> F:
        @wraps(f)
        def wrapper(*args: object, **kwargs: object) -> object:
            previous = None
            with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
                previous = signal.signal(signal.SIGTERM, _on_sigterm)
            try:
                return f(*args, **kwargs)
            except InputError as exc:
                print(f"error: {exc}", file=sys.stderr)
                raise SystemExit(EXIT_INPUT) from None
            except KeyboardInterrupt as exc:
                term = isinstance(exc, Terminated)
                print(f"\nstopped by {'SIGTERM' if term else 'Ctrl-C'}: {resume_hint}", file=sys.stderr)
                raise SystemExit(EXIT_SIGTERM if term else EXIT_SIGINT) from None
            finally:
                if previous is not None:
                    signal.signal(signal.SIGTERM, previous)

        return cast(F, wrapper)  # wraps(f): same signature

    return deco(fn) if fn is not None else deco
