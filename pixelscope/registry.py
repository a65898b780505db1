"""One registry type for everything a plugin can add: features, transforms, models (and
later issue finders, filters, exporters). One override rule for all of them.

    FEATURES = Registry("feature", plugins_key="features.plugins")
    FEATURES.register("sharpness", fn, builtin=True)

The rule: a name is registered once. Registering a taken name is a ConfigError naming
both owners, unless `replace=True` says so explicitly (a plugin that means to replace a
built-in, or another plugin). Re-registering the same function (same module and
qualified name, as when a module is imported again) is not a conflict.

Plugins are modules listed under a params key (e.g. `features.plugins`); importing them
runs their decorators. `load_plugins` imports them and names the key when one fails.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from pixelscope.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    item: T
    builtin: bool
    owner: str  # module:qualname of what registered it (for error messages)


def _owner(item: object) -> str:
    fn = getattr(item, "fn", item)
    return f"{getattr(fn, '__module__', '?')}:{getattr(fn, '__qualname__', type(fn).__name__)}"


class Registry(Generic[T]):
    """Named items of one kind, in registration order."""

    def __init__(self, kind: str, plugins_key: str):
        self.kind = kind
        self.plugins_key = plugins_key
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, item: T, *, builtin: bool = False, replace: bool = False) -> T:
        owner = _owner(item)
        existing = self._entries.get(name)
        if existing is not None and existing.owner != owner and not replace:
            what = "built-in" if existing.builtin else "plugin"
            raise ConfigError(f"{self.kind} {name!r} is already registered by the {what} {existing.owner}; "
                              f"choose another name, or pass replace=True to replace it")
        self._entries[name] = Entry(name, item, builtin, owner)
        return item

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        return self._entries[name].item

    def __iter__(self) -> Iterator[T]:
        return (e.item for e in list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    @contextlib.contextmanager
    def scoped(self) -> Iterator[Registry[T]]:
        """Registrations made inside are undone on exit (tests, notebooks trying a plugin), and a
        plugin module first imported inside is forgotten too, so a later `load_plugins` imports it
        (and registers it) again instead of finding it in sys.modules and doing nothing."""
        saved = dict(self._entries)
        loaded = set(sys.modules)
        try:
            yield self
        finally:
            added = {e.owner.split(":")[0] for name, e in self._entries.items() if saved.get(name) is not e}
            for module in added - loaded:
                sys.modules.pop(module, None)
            self._entries = saved

    def load_plugins(self, modules: list[str] | tuple[str, ...]) -> None:
        import_plugins(list(modules), self.plugins_key)


def import_plugins(modules: list[str], key: str) -> None:
    """Import each module listed under params key `key`; a failure names the key and module."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"{key}: cannot import {mod!r}: {e}") from None
