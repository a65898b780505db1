"""Plugin modules (features, transforms, models) register themselves when imported."""

from __future__ import annotations

import importlib

from pixelscope.config import ConfigError


def import_plugins(modules: list[str], key: str) -> None:
    """Import each module listed under params key `key`; a failure names the key and module."""
    for mod in modules:
        try:
            importlib.import_module(mod)
        except ImportError as e:
            raise ConfigError(f"{key}: cannot import {mod!r}: {e}") from None
