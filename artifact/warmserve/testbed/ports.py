"""Loopback ports for engine processes.

Each engine listens on its own port on 127.0.0.1 (nothing beyond loopback
unless a config names another host). A port another program holds is
detected before launch and skipped, so "port already taken" is a handled
condition, never a half-started engine.
"""

from __future__ import annotations

import socket

from warmserve.errors import InputError


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True if nothing listens on ``host:port`` and we may bind it.

    ``SO_REUSEADDR`` as servers set it (uvicorn, aiohttp): a port whose old
    connections linger in TIME_WAIT is free to them, one with a listener is not.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class PortAllocator:
    """Hands out ports from ``[first, first + count)``, skipping taken ones."""

    def __init__(self, first: int, count: int, host: str = "127.0.0.1") -> None:
        if first <= 0 or count <= 0 or first + count > 65536:
            raise InputError(f"backend.ports: bad range first={first} count={count}")
        self.host = host
        self._range = range(first, first + count)
        self._used: set[int] = set()
        self.skipped: list[int] = []  # ports found taken by someone else (reported in the run)

    def acquire(self) -> int:
        for p in self._range:
            if p in self._used:
                continue
            if not port_is_free(p, self.host):
                if p not in self.skipped:
                    self.skipped.append(p)
                continue
            self._used.add(p)
            return p
        raise RuntimeError(f"no free port in {self._range.start}-{self._range.stop - 1} on {self.host}")

    def release(self, port: int) -> None:
        self._used.discard(port)
