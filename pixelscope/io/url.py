"""Url: a folder or object in a store (s3://bucket/prefix), a str that joins like a Path; and
`inside`, the check that a manifest path stays below its raw root (a folder or a prefix).

Kept apart from pixelscope.io.location (the readers) so that the params model can type
`paths.raw` as `Path | Url` without importing fsspec. Imports nothing from the package.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(location: str | os.PathLike[str]) -> bool:
    return isinstance(location, str) and _SCHEME.match(location) is not None


class Url(str):
    """A folder or object in a store, e.g. s3://bucket/prefix; joins with / like a Path."""

    def __new__(cls, value: str) -> Url:
        if not is_url(value):
            raise ValueError(f"not a URL (scheme://...): {value!r}")
        return super().__new__(cls, value.rstrip("/") if value.count("/") > 2 else value)

    def __truediv__(self, rel: str | os.PathLike[str]) -> Url:
        return Url(self.rstrip("/") + "/" + Path(rel).as_posix().lstrip("/"))

    @property
    def protocol(self) -> str:
        return self.split("://", 1)[0].lower()

    @property
    def key(self) -> str:
        """The path without the scheme, as fsspec names it (bucket/prefix for S3)."""
        return self if self.protocol in ("http", "https") else self.split("://", 1)[1]

    @property
    def bucket(self) -> str:
        return self.split("://", 1)[1].split("/", 1)[0]

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    def as_posix(self) -> str:
        return str(self)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        return _pydantic_schema(cls, source, handler)


def as_location(value: str | os.PathLike[str]) -> Path | Url:
    """A params value or CLI argument as a local Path or a Url."""
    return Url(value) if isinstance(value, str) and is_url(value) else Path(value)


def inside(raw: Path | Url, rel: str) -> bool:
    """The file at raw/rel, symlinks resolved, lies inside raw (no ../, no absolute, no link out;
    a store key below the prefix has no links)."""
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts:
        return False
    if isinstance(raw, Url):
        return True
    try:
        return (raw / rel).resolve().is_relative_to(raw.resolve())
    except OSError:
        return False


def _pydantic_schema(cls: type, source: Any, handler: Any) -> Any:
    from pydantic_core import core_schema

    return core_schema.no_info_after_validator_function(cls, core_schema.str_schema())
