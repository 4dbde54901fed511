"""A name -> implementation table for pluggable strategies (placements, launch rules).

Why a registry: a system config selects a strategy by name
(``system.policy.placement: evict_aware``); the policy looks the name up here
instead of comparing strings, so adding a strategy is one decorated function
in any module and touches neither the policy nor the backends. The config
checks (``warmserve.validation.targets.CHOICES``) accept exactly the names
registered, and an unknown name fails naming the config field and the known names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from warmserve.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named implementations of one strategy kind; ``field`` is the config key that selects one."""

    def __init__(self, field: str) -> None:
        self.field = field
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register ``impl`` under ``name`` (a name is registered once)."""

        def add(impl: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.field}: '{name}' is already registered")
            self._items[name] = impl
            return impl

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests that register a toy strategy clean up with this)."""
        del self._items[name]

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._items)

    def get(self, name: str) -> T:
        """The implementation named ``name``; ``InputError`` naming the field and the known names otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise InputError(f"{self.field}: unknown '{name}'; choose one of {list(self._items)}") from None
