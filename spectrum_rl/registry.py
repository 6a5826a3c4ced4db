"""Named extension points: scheduler policies, mu schedules, reward components, task sources.

A registry maps a config name (``scheduler.policy: adaptive``) to the class that implements it.
Implementations register themselves where they are defined::

    @POLICIES.register("joint")
    class Joint(Policy): ...

The config validates a name against the registry at load time (so a class registered by a test or
a plugin is a valid name too), and an unknown name gets one error that lists the valid ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from pydantic_core import PydanticCustomError

from spectrum_rl.errors import ConfigError, did_you_mean

T = TypeVar("T")


class Registry(Generic[T]):
    """``name -> T``, in registration order. ``what`` names an entry in messages ("policy")."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Class decorator: make ``name`` resolve to the decorated class."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.what} '{name}' is already registered")
            self._entries[name] = entry
            return entry

        return add

    def unregister(self, name: str) -> None:
        """Remove ``name`` (for tests that register a temporary entry)."""
        self._entries.pop(name, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def items(self) -> list[tuple[str, T]]:
        return list(self._entries.items())

    def unknown(self, name: object) -> str:
        """The one-line message for a name that is not registered."""
        return (
            f"unknown {self.what} '{name}'{did_you_mean(name, self._entries)}; "
            f"expected one of {', '.join(self._entries)}"
        )

    def check(self, name: str) -> str:
        """``name`` when registered; else a pydantic error (for field validators) with the message."""
        if name not in self._entries:
            raise PydanticCustomError("unknown_name", "{message}", {"message": self.unknown(name)})
        return name

    def get(self, name: str, field: str | None = None) -> T:
        """The entry for ``name``; a ConfigError listing the valid names when there is none."""
        if name not in self._entries:
            raise ConfigError(self.unknown(name), field=field)
        return self._entries[name]
