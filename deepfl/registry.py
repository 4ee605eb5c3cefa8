"""The one registry mechanism of deepfl: a name -> component mapping, looked up in one place.

Every named component of a run is found through a :class:`Registry`: the server defenses
(``deepfl.defenses.REGISTRY``, filled by ``@register(name)``), the client defenses
(``deepfl.client.CLIENT_DEFENSES``) and the attacker behaviours
(``deepfl.client.ATTACKER_BEHAVIOURS``). An entry may be a ``"package.module:Attribute"`` string,
imported on first lookup, so that the engine can name optional components (FLIP's client defense,
the adaptive attacker) without importing their packages until a config selects them.

``registry[name]`` is the one lookup: an unknown name raises :class:`UnknownNameError` with one
message for every registry, ``unknown <kind> 'kurm' (did you mean 'krum'?); known: ...``.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from fldata.params import ConfigError

__all__ = ["Registry", "UnavailableComponentError", "UnknownNameError"]

T = TypeVar("T")
EntryT = TypeVar("EntryT")


class UnknownNameError(ConfigError, KeyError):
    """A name no entry of the registry has: a ConfigError (ValueError) and, as a mapping's missing
    key, a KeyError."""

    def __str__(self) -> str:  # KeyError's own __str__ would print the message in quotes
        return str(self.args[0]) if self.args else ""


class UnavailableComponentError(ConfigError):
    """A lazily named component whose module cannot be imported (or lacks the attribute)."""


class Registry(Mapping[str, T], Generic[T]):
    """Mapping of names to components, or to ``"package.module:Attribute"`` strings that are
    imported on first lookup; ``kind`` names the components in error messages."""

    def __init__(self, kind: str, entries: Mapping[str, T | str] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T | str] = {}
        for name, entry in (entries or {}).items():
            self.add(name, entry)

    def add(self, name: str, entry: T | str) -> None:
        """Register ``entry`` as ``name``; ``ValueError`` if the name is taken."""
        if name in self._entries:
            raise ValueError(
                f"{self.kind} name {name!r} is already registered by "
                f"{_describe(self._entries[name])}"
            )
        self._entries[name] = entry

    def register(self, name: str) -> Callable[[EntryT], EntryT]:
        """Decorator: :meth:`add` the decorated class (or function) as ``name``."""

        def decorate(component: EntryT) -> EntryT:
            self.add(name, component)  # type: ignore[arg-type]
            return component

        return decorate

    def __getitem__(self, name: str) -> T:
        """The component registered as ``name`` (imported now if it was named lazily).

        Raises:
            UnknownNameError: no such name (a KeyError and a ConfigError); the message suggests
                the closest name and lists the known ones.
            UnavailableComponentError: a lazily named component that cannot be imported.
        """
        if name not in self._entries:
            raise UnknownNameError(self.unknown_name_message(name))
        entry = self._entries[name]
        if isinstance(entry, str):
            entry = self._import(name, entry)
            self._entries[name] = entry
        return entry

    def unknown_name_message(self, name: object) -> str:
        """``unknown <kind> 'x' (did you mean 'y'?); known: a, b, c`` (names sorted)."""
        known = sorted(self._entries)
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; known: {', '.join(known)}"

    def _import(self, name: str, target: str) -> T:
        """The object ``"package.module:Attribute"`` names."""
        module_name, attribute = target.split(":")
        try:
            component: T = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as error:
            raise UnavailableComponentError(
                f"{self.kind} {name!r} needs {module_name}.{attribute}, "
                f"which is not available: {error}"
            ) from error
        return component

    def __contains__(self, name: object) -> bool:
        return name in self._entries  # without importing a lazily named entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={list(self._entries)})"


def _describe(entry: Any) -> str:
    """A registered entry's name for messages."""
    return entry if isinstance(entry, str) else getattr(entry, "__name__", repr(entry))
