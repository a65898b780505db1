"""Saved slices: a filter named and written into params.yaml (`curate.slices`), comments and
layout kept, so the dashboard and code share the same slices (the ledger records them per image)."""

from __future__ import annotations

import io
import re
from pathlib import Path

from pixelscope.errors import ConfigError
from pixelscope.io.atomic import write_bytes_atomic

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def save_slice(params_file: Path, name: str, expression: str) -> None:
    """Set curate.slices.NAME = expression in the params file (created when absent), round-trip."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    if not NAME.fullmatch(name):
        raise ConfigError(f"slice name {name!r}: letters, digits, - and _ (starting with a letter), at most 64")
    if not expression.strip():
        raise ConfigError("a slice needs a filter expression")
    yaml = YAML()  # round-trip: comments, order and quoting stay as the user wrote them
    yaml.preserve_quotes = True
    yaml.width = 4096  # no re-wrapping of long lines
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    from ruamel.yaml.error import YAMLError

    try:
        data = yaml.load(params_file.read_text()) if params_file.exists() else None
    except YAMLError as e:
        raise ConfigError(f"{params_file}: not valid YAML, the slice was not saved ({str(e).splitlines()[0]})") from None
    data = data if data is not None else CommentedMap()
    if not isinstance(data, dict):
        raise ConfigError(f"{params_file}: the top level is not a mapping")
    curate = data.setdefault("curate", CommentedMap())
    if curate is None or not isinstance(curate, dict):
        curate = data["curate"] = CommentedMap()
    slices = curate.get("slices")
    if not isinstance(slices, dict) or not slices:  # `slices: {}` (flow style): a block mapping instead
        old = curate.get("slices")
        slices = CommentedMap(old or {})
        curate["slices"] = slices
    slices[name] = expression
    out = io.StringIO()
    yaml.dump(data, out)
    write_bytes_atomic(params_file, out.getvalue().encode())


__all__ = ["save_slice"]
