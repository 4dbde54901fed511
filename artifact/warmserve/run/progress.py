"""A progress bar over simulated (or wall) replay time, shown only on a terminal by default."""

from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm


class Progress:
    def __init__(self, total_s: float, enabled: Any = "auto") -> None:
        if enabled == "auto":  # noqa: SIM108 - two cases read better as a block than a nested ternary
            disable = None if sys.stderr.isatty() else True  # tqdm: None = auto (TTY only)
        else:
            disable = not bool(enabled)
        self._bar = tqdm(total=round(total_s), unit="s", desc="replay", disable=disable, leave=False,
                         mininterval=0.5)
        self._last = 0

    def update(self, t_s: float) -> None:
        t = int(t_s)
        if t > self._last:
            self._bar.update(t - self._last)
            self._last = t

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self._bar.close()
