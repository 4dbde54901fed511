"""The backend's background tasks: spawned on the running loop, remembered until done, cancelled at close.

A task nobody holds a reference to may be garbage-collected mid-run (asyncio keeps only weak
references), and ``close`` must cancel every one still running; both need the same set.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


class TaskSet:
    """Tasks spawned for a backend's slow work (starts, drains, stops)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def cancel_all(self) -> None:
        for t in list(self._tasks):
            t.cancel()
