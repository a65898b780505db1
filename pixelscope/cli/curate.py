"""`pixelscope curate diff`: what changed in the curated set since another version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pixelscope.cli.common import JsonOpt, ParamsOpt, SetOpt, load, out, user_errors
from pixelscope.io.values import dumps


def diff_command(
    rev: Annotated[Optional[str], typer.Option("--rev", help="the ledger at this git rev (read through DVC)")] = None,
    other: Annotated[Optional[Path], typer.Option("--against", help="a curated folder to compare with")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Images added, dropped, moved to another split, relabeled; exits 1 when images moved although
    the recipe did not change (splits must be stable)."""
    from pixelscope.curate.diff import diff, read_curated
    from pixelscope.errors import ConfigError

    with user_errors():
        p = load(params, set_)
        if (rev is None) == (other is None):
            raise ConfigError("curate diff: give exactly one of --rev REV or --against FOLDER")
        old, old_meta = read_curated(p, Path("."), rev=rev, folder=other)
        new, new_meta = read_curated(p, Path("."))
        d = diff(old, new, old_meta, new_meta)
    if as_json:
        print(dumps(d))
    else:
        out.print(f"kept {d['kept']}, added {len(d['added'])}, dropped {len(d['dropped'])}, "
                  f"moved {len(d['moved'])}, relabeled {len(d['relabeled'])}"
                  + ("; the recipe changed" if d["recipe_changed"] else ""))
        for path, (a, b) in list(d["moves"].items())[:20]:
            out.print(f"  moved {path}: {a} -> {b}")
    if not d["stable"]:
        out.print("[red]images moved to another split although the recipe did not change[/]")
        raise typer.Exit(1)
