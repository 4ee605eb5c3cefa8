"""A name -> class mapping whose entries may be imported lazily ("module:attribute").

Lets the engine name optional components (FLIP's client defense, the adaptive attacker) without
importing their packages until a config selects them.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any


class LazyRegistry(Mapping[str, Any]):
    """Mapping of names to objects or to ``"package.module:Attribute"`` strings resolved on access."""

    def __init__(self, kind: str, entries: dict[str, Any]) -> None:
        self.kind = kind
        self._entries = dict(entries)

    def __getitem__(self, name: str) -> Any:
        if name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; allowed: {', '.join(self._entries)}")
        entry = self._entries[name]
        if isinstance(entry, str):
            module_name, attribute = entry.split(":")
            try:
                entry = getattr(importlib.import_module(module_name), attribute)
            except (ImportError, AttributeError) as error:
                raise ValueError(f"{self.kind} {name!r} needs {module_name}.{attribute}, which is not available: {error}") from error
            self._entries[name] = entry
        return entry

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
