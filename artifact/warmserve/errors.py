"""One error type for bad input, and the CLI wrapper that turns it into a one-line exit.

Bad input (a missing file, a wrong column, an impossible config) must produce a
single clear line naming the field or file, a non-zero exit, and nothing
written. Code raises ``InputError`` with that line; ``cli_main`` prints it and
exits 2. Writers stage outputs in a temporary directory and move it into place
only on success (see ``warmserve.atomic.atomic_output_dir``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])


class InputError(ValueError):
    """Bad user input or config; the message is the whole one-line explanation."""


def cli_main(fn: F) -> F:
    """Wrap a command's main so an ``InputError`` becomes ``error: <line>`` and exit code 2."""

    @wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper  # type: ignore[return-value]
