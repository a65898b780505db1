"""One command per pipeline stage (the stage table: pixelscope/pipeline/stages.py), each written out;
their help is the stage's doc in the table.

Every stage command takes --params, --set, --json and --quiet and runs through `run_stage`;
a few add shortcuts for the params users change most from the command line
(`pixelscope ingest FOLDER -o out.parquet` is `--set paths.raw=FOLDER --set paths.manifest=out.parquet`).
Paths are relative to the working directory, which is the project.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from pixelscope.cli.common import JsonOpt, ParamsOpt, QuietOpt, SetOpt, load, out, progress, user_errors
from pixelscope.config import Params
from pixelscope.io.values import dumps
from pixelscope.pipeline.stages import stage
from pixelscope.pipeline.steps import StepResult

PARAMS = Path("params.yaml")
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="where the output goes (then metrics/ beside it)")]


def run_stage(name: str, params_file: Path, sets: list[str] | None, quiet: bool, *,
              given: dict[str, Any] | None = None, output: Path | None = None, **options: Any) -> tuple[Params, StepResult]:
    """Load params (--set, then the command's own options as dotted keys in `given`) and run the stage
    with a progress bar. `output` redirects the stage's output: its metrics then go to metrics/ beside
    it, so the project's own metrics are not overwritten (unless --set paths.metrics=... says where)."""
    given = dict(given or {})
    if output is not None and not any(x.strip().startswith("paths.metrics=") for x in sets or []):
        given["paths.metrics"] = output.parent / "metrics"
    with user_errors():
        params = load(params_file, sets, given)
        if output is not None:
            guard_output(name, output, params_file, params)
        with progress(name, quiet) as bar:
            result = stage(name).run(params, ".", progress=bar, **options)
    return params, result


def guard_output(stage_name: str, output: Path, params_file: Path, params: Params) -> None:
    """`-o` must not name an input of the run (`-o params.yaml`, `profile M -o M`), a folder, or a file
    that exists and is not what the stage writes: each of those used to be overwritten silently."""
    from pixelscope.errors import BadInput, ConfigError

    out = output.resolve()
    p = params.paths
    inputs = [params_file, p.manifest if stage_name == "profile" else None, params.profile.predictions,
              params.ingest.labels_csv, params.curate.label_fixes]
    for given in inputs:
        if given is not None and Path(given).resolve() == out:
            raise ConfigError(f"-o {output}: that is an input of this run; write the {stage_name} output elsewhere")
    if out.is_dir():
        raise ConfigError(f"-o {output}: a folder; name the file to write")
    if not out.exists():
        return
    try:
        if stage_name == "ingest":
            from pixelscope.io.manifest import column_kinds

            column_kinds(out)
        else:
            from pixelscope.profile import Profile

            Profile.load(out)
    except (BadInput, OSError, ValueError):
        what = "a pixelscope manifest" if stage_name == "ingest" else "a pixelscope profile"
        raise ConfigError(f"-o {output}: exists and is not {what}; not overwriting it (remove it first if it "
                          "should go)") from None


def report(result: StepResult, as_json: bool = False, shown: Any = None) -> None:
    if as_json:
        print(dumps({**result.to_dict(), **({"shown": shown} if shown is not None else {})}))
        return
    verb, _, rest = result.summary.partition(" ")
    colour = "yellow" if "failed" in result.summary else "green"
    out.print(f"[{colour}]{escape(verb)}[/] {escape(rest)}")
    for note in result.notes:
        out.print(f"  {escape(note)}")
    for name, path in result.outputs.items():
        out.print(f"{name}: {escape(path)}")


def version_data(params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    report(run_stage("version", params, set_, quiet or as_json)[1], as_json)


def ingest(
    raw: Annotated[Optional[str], typer.Argument(help="raw image folder or store prefix, e.g. s3://bucket/photos "
                                                 "(default: paths.raw)")] = None,
    out_: OutOpt = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", help="worker processes (0 = all cores)")] = None,
    params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    given = {"paths.raw": raw, "paths.manifest": out_, "ingest.workers": workers}
    report(run_stage("ingest", params, set_, quiet or as_json, given=given, output=out_)[1], as_json)


def preprocess(params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    report(run_stage("preprocess", params, set_, quiet or as_json)[1], as_json)


def embed(params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    report(run_stage("embed", params, set_, quiet or as_json)[1], as_json)


def profile(
    manifest: Annotated[Optional[Path], typer.Argument(help="manifest Parquet (default: paths.manifest)")] = None,
    out_: OutOpt = None,
    params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    given = {"paths.manifest": manifest, "paths.profile": out_}
    report(run_stage("profile", params, set_, quiet or as_json, given=given, output=out_)[1], as_json)


def issues(
    show: Annotated[Optional[str], typer.Option(
        "--show", help="after the run, list what one finder or flag found: duplicates, label, blurry, ...")] = None,
    limit: Annotated[int, typer.Option("--limit", help="with --show: at most this many rows")] = 50,
    params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    p, result = run_stage("issues", params, set_, quiet or as_json)
    shown = None
    if show:
        from pixelscope.cli.issues import flagged_rows, print_rows

        with user_errors():
            shown = flagged_rows(p.paths.under(".").issues, show, limit)[1]
    report(result, as_json, shown)
    if show and shown is not None and not as_json:
        print_rows(show, shown)


def objects(params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    report(run_stage("objects", params, set_, quiet or as_json)[1], as_json)


def validate(params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    report(run_stage("validate", params, set_, quiet or as_json)[1], as_json)


def curate(
    ctx: typer.Context,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="print what would be included / excluded per reason; "
                                                            "write nothing")] = False,
    mlflow: Annotated[Optional[bool], typer.Option("--mlflow", help="log the curated set to MLflow (curate.mlflow)")] = None,
    params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    if ctx.invoked_subcommand:  # `pixelscope curate diff`: the group's callback does nothing
        return
    given = {"curate.mlflow.enabled": mlflow}
    report(run_stage("curate", params, set_, quiet or as_json, given=given, dry_run=dry_run)[1], as_json)


def publish(params: ParamsOpt = PARAMS, set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False) -> None:
    report(run_stage("publish", params, set_, quiet or as_json)[1], as_json)


def register(app: typer.Typer) -> None:
    from pixelscope.cli.curate import diff_command

    app.command("version-data", help=stage("version").doc)(version_data)
    app.command("ingest", help=stage("ingest").doc)(ingest)
    app.command("objects", help=stage("objects").doc)(objects)
    app.command("preprocess", help=stage("preprocess").doc)(preprocess)
    app.command("embed", help=stage("embed").doc)(embed)
    app.command("profile", help=stage("profile").doc)(profile)
    app.command("issues", help=stage("issues").doc)(issues)
    app.command("validate", help=stage("validate").doc)(validate)
    curate_group = typer.Typer(help=stage("curate").doc, no_args_is_help=False)
    curate_group.callback(invoke_without_command=True)(curate)
    curate_group.command("diff")(diff_command)
    app.add_typer(curate_group, name="curate")
    app.command("publish", help=stage("publish").doc)(publish)
