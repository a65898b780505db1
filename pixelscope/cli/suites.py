"""Commands for the validate step's inputs: expectation suites and the drift reference."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pixelscope.cli.common import ParamsOpt, existing, out, user_errors
from pixelscope.errors import ConfigError, StepError

suite_app = typer.Typer(help="Expectation suites (expectations/*.json).", no_args_is_help=True)


@suite_app.command("init")
def suite_init(
    from_reference: Annotated[Path, typer.Option("--from-reference", help="reference profile to take bounds from")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="suite file to write")] = Path("expectations/quality.json"),
    force: Annotated[bool, typer.Option(help="overwrite an existing suite")] = False,
) -> None:
    """Write a quality suite with bounds from a reference profile (then edit it by hand)."""
    from pixelscope.profile import Profile
    from pixelscope.validate.suites import suite_from_reference

    with user_errors():
        if out_path.exists() and not force:
            raise StepError(f"{out_path} exists (use --force to overwrite)")
        suite = suite_from_reference(Profile.load(existing(from_reference)))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(suite, indent=1) + "\n")
    out.print(f"wrote {out_path}: {len(suite['expectations'])} expectations from {from_reference}")


reference_app = typer.Typer(help="The reference the drift suite compares with.", no_args_is_help=True)


@reference_app.command("set")
def reference_set(
    rev: Annotated[Optional[str], typer.Argument(help="git rev whose profile is the reference (read through DVC)")] = None,
    profile_file: Annotated[Optional[Path], typer.Option("--profile", help="or a profile file")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Pin the reference in params.yaml (validate.reference_rev or validate.reference)."""
    from pixelscope.config import set_params

    with user_errors():
        if (rev is None) == (profile_file is None):
            raise ConfigError("give a git rev or --profile FILE (one of them)")
        set_params(params, {"validate": {"reference_rev": rev, "reference": str(profile_file) if profile_file else None}})
    out.print(f"reference: {rev or profile_file} (validate.{'reference_rev' if rev else 'reference'} in {params})")


def register(app: typer.Typer) -> None:
    app.add_typer(suite_app, name="suite")
    app.add_typer(reference_app, name="reference")
