"""A name -> factory registry, for what users extend (schemes, policies, workers).

Registering a name twice fails, so a plug-in cannot silently replace a built-in; looking up
an unknown name fails with the list of known ones.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Registry"]

F = TypeVar("F", bound=Callable)


class Registry(Generic[F]):
    """Factories by name.

    Args:
        kind: what is registered, for messages ("encoding scheme", "policy").
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._factories: dict[str, F] = {}

    def register(self, name: str) -> Callable[[F], F]:
        """Decorator that registers a factory under ``name``."""

        def wrap(factory: F) -> F:
            if name in self._factories:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._factories[name] = factory
            return factory

        return wrap

    def names(self) -> list[str]:
        return sorted(self._factories)

    def check(self, name: str) -> str:
        """``name`` if registered, else ValueError naming the known ones (for config validators)."""
        if name not in self._factories:
            raise ValueError(f"unknown {self.kind} {name!r} (available: {', '.join(self.names())})")
        return name

    def __getitem__(self, name: str) -> F:
        return self._factories[self.check(name)]
