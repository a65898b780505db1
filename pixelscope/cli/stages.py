"""One command per pipeline stage, made from the stage table (pixelscope/pipeline/stages.py).

Every stage command takes --params, --set, --json and --quiet; a few add shortcuts for
the params users change most from the command line (`pixelscope ingest FOLDER -o out.parquet`
is `--set paths.raw=FOLDER --set paths.manifest=out.parquet`). Paths are relative to the
working directory, which is the project.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from pixelscope.cli.common import JsonOpt, ParamsOpt, QuietOpt, SetOpt, load, out, progress, user_errors
from pixelscope.io.values import dumps
from pixelscope.pipeline.stages import STAGES, Stage
from pixelscope.pipeline.steps import StepResult


@dataclass(frozen=True)
class Shortcut:
    name: str  # the command's parameter
    key: str  # the dotted params key it sets
    type: type
    help: str
    flags: tuple[str, ...] = ()  # no flags: a positional argument
    output: bool = False  # redirects the stage's output: its metrics then go to metrics/ beside it
    view: bool = False  # not a param: an option of what the command prints (see VIEWS)
    step: bool = False  # not a param: a keyword argument of the step itself (e.g. curate's dry_run)


SHORTCUTS: dict[str, tuple[Shortcut, ...]] = {
    "ingest": (
        Shortcut("raw", "paths.raw", Path, "raw image folder (default: paths.raw)"),
        Shortcut("out", "paths.manifest", Path, "manifest path (default: paths.manifest; then metrics/ingest.json beside it)",
                 ("--out", "-o"), output=True),
        Shortcut("workers", "ingest.workers", int, "worker processes (0 = all cores)", ("--workers", "-w")),
    ),
    "issues": (
        Shortcut("show", "", str, "after the run, list what one finder or flag found: duplicates, label, blurry, ...",
                 ("--show",), view=True),
        Shortcut("limit", "", int, "with --show: at most this many rows (default 50)", ("--limit",), view=True),
    ),
    "curate": (
        Shortcut("dry_run", "", bool, "print what would be included / excluded per reason; write nothing",
                 ("--dry-run",), step=True),
        Shortcut("mlflow", "curate.mlflow.enabled", bool, "log the curated set to MLflow (curate.mlflow)", ("--mlflow",)),
    ),
    "profile": (
        Shortcut("manifest", "paths.manifest", Path, "manifest Parquet (default: paths.manifest)"),
        Shortcut("out", "paths.profile", Path, "profile path (default: paths.profile; then metrics/profile.json beside it)",
                 ("--out", "-o"), output=True),
    ),
}
COMMON = [("params", ParamsOpt, Path("params.yaml")), ("set_", SetOpt, None), ("as_json", JsonOpt, False),
          ("quiet", QuietOpt, False)]


def _issue_rows(params: Any, views: dict[str, Any]) -> list[dict[str, Any]] | None:
    if not views.get("show"):
        return None
    from pixelscope.cli.issues import flagged_rows

    with user_errors():
        return flagged_rows(params.paths.under(".").issues, views["show"], views.get("limit") or 50)[1]


VIEWS = {"issues": _issue_rows}  # stage -> what its view options print after the run


def report(result: StepResult) -> None:
    verb, _, rest = result.summary.partition(" ")
    colour = "yellow" if "failed" in result.summary else "green"
    out.print(f"[{colour}]{escape(verb)}[/] {escape(rest)}")
    for note in result.notes:
        out.print(f"  {escape(note)}")
    for name, path in result.outputs.items():
        out.print(f"{name}: {escape(path)}")


def command_for(stage: Stage, group: bool = False):
    """A typer command running `stage` (its signature built from the shortcuts + COMMON). As a
    group's callback (group=True) it runs only when no subcommand was named."""
    shortcuts = SHORTCUTS.get(stage.name, ())

    def command(**kw: Any) -> None:
        ctx = kw.pop("ctx", None)
        if ctx is not None and ctx.invoked_subcommand:
            return
        with user_errors():
            given = {s.key: kw[s.name] for s in shortcuts if not (s.view or s.step)}
            options = {s.name: kw[s.name] for s in shortcuts if s.step and kw[s.name] is not None}
            moved = [kw[s.name] for s in shortcuts if s.output and kw[s.name] is not None]
            explicit = any(x.strip().startswith("paths.metrics=") for x in kw["set_"] or [])
            if moved and not explicit:  # a redirected output must not overwrite the project's metrics
                given["paths.metrics"] = Path(moved[0]).parent / "metrics"
            params = load(kw["params"], kw["set_"], given)
            with progress(stage.name, kw["quiet"] or kw["as_json"]) as bar:
                result = stage.run(params, ".", progress=bar, **options)
        shown = VIEWS[stage.name](params, {s.name: kw[s.name] for s in shortcuts if s.view}) \
            if stage.name in VIEWS else None
        if kw["as_json"]:
            print(dumps({**result.to_dict(), **({"shown": shown} if shown is not None else {})}))
        else:
            report(result)
            if shown is not None:
                from pixelscope.cli.issues import print_rows

                print_rows(kw["show"], shown)

    parameters = [inspect.Parameter(s.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                    annotation=Annotated[Optional[s.type],
                                                         typer.Option(*s.flags, help=s.help) if s.flags
                                                         else typer.Argument(help=s.help)])
                  for s in shortcuts]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)
                   for name, annotation, default in COMMON]
    if group:
        parameters.insert(0, inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context))
    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__doc__ = stage.doc
    command.__name__ = stage.name
    return command


def _curate_subcommands(group: typer.Typer) -> None:
    from pixelscope.cli.curate import register as curate_commands

    curate_commands(group)


SUBCOMMANDS = {"curate": _curate_subcommands}  # stage -> its subcommands (`pixelscope curate diff`)


def register(app: typer.Typer) -> None:
    for stage in STAGES:
        if stage.name in SUBCOMMANDS:
            group = typer.Typer(help=stage.doc, no_args_is_help=False)
            group.callback(invoke_without_command=True)(command_for(stage, group=True))
            SUBCOMMANDS[stage.name](group)
            app.add_typer(group, name=stage.command_name)
        else:
            app.command(stage.command_name)(command_for(stage))
