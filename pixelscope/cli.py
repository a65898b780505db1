"""The `pixelscope` command line: thin over the step functions.

Errors a user can fix (missing path, empty folder, bad params) print one clear message and
exit non-zero, without a traceback.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from pixelscope.config import ConfigError, Params, dotted_overrides, load_params
from pixelscope.steps import StepError, embed_step, ingest_step, preprocess_step, profile_step, publish_step, version_step

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="pixelscope: ingest, profile and inspect image datasets.")
err = Console(stderr=True, soft_wrap=True)
out = Console()
if not out.is_terminal:  # piped or captured: wide enough that tables do not fold
    out = Console(width=160)

ParamsOpt = Annotated[Path, typer.Option("--params", "-p", help="params file (defaults apply when absent)")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="override a param, e.g. --set ingest.workers=2")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON on stdout")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="no progress bar")]
MetricsOpt = Annotated[Optional[Path], typer.Option("--metrics", help="also write counts and timings here (JSON, for `dvc metrics`)")]


def _fail(message: str, code: int = 1) -> None:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    try:
        yield
    except ConfigError as e:
        _fail(str(e), 2)
    except (StepError, FileNotFoundError, NotADirectoryError, ValueError, KeyError) as e:
        _fail(str(e).strip("'\""), 1)


def _params(path: Path, sets: list[str] | None, **extra: Any) -> Params:
    overrides = dotted_overrides(sets or [])
    for dotted, value in extra.items():
        if value is not None:
            overrides = _merge(overrides, dotted_overrides([f"{dotted}={json.dumps(value)}"]))
    return load_params(path, overrides)


def _merge(a: dict, b: dict) -> dict:
    for k, v in b.items():
        a[k] = _merge(a.get(k, {}), v) if isinstance(v, dict) else v
    return a


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Any]:
    # auto_refresh=False: no refresh thread, so worker processes can still be forked safely
    with Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeRemainingColumn(), console=err, disable=quiet, transient=False, auto_refresh=False) as bar:
        task = bar.add_task(label, total=None, rate="")
        t0 = time.perf_counter()

        def update(done: int, total: int) -> None:
            if done == total or done % 16 == 0:
                rate = done / max(1e-9, time.perf_counter() - t0)
                bar.update(task, completed=done, total=total, rate=f"{rate:,.0f} img/s", refresh=True)

        yield update


@app.command()
def ingest(
    raw: Annotated[Optional[Path], typer.Argument(help="raw image folder (default: paths.raw)")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="manifest path (default: paths.manifest)")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", "-w", help="worker processes (0 = all cores)")] = None,
    metrics: MetricsOpt = None,
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Read every file of a folder into a Parquet manifest: metadata, EXIF, features, or an error row."""
    with _user_errors():
        p = _params(params, set_, **{"ingest.workers": workers})
        with _progress("ingest", quiet or as_json) as progress:
            s = ingest_step(p, raw, out_path, progress=progress, metrics=metrics)
    if as_json:
        print(json.dumps(s.to_dict()))
        return
    out.print(f"[green]ingested[/] {s.seen} files from {s.root} in {s.seconds:.1f}s "
              f"({s.images_per_s:,.0f} img/s, {s.workers} workers): {s.ok} ok, {s.errors} errors"
              + (f", {s.excluded} excluded" if s.excluded else ""))
    for reason, n in s.errors_by_reason.items():
        out.print(f"  error {reason}: {n}")
    out.print(f"manifest: {s.manifest}")


@app.command()
def profile(
    manifest: Annotated[Optional[Path], typer.Argument(help="manifest Parquet (default: paths.manifest)")] = None,
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="profile path (default: paths.profile)")] = None,
    metrics: MetricsOpt = None,
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Build the mergeable sketch profile of a manifest (overall and per segment)."""
    with _user_errors():
        p = _params(params, set_)
        s = profile_step(p, manifest, out_path, metrics=metrics)
    if as_json:
        print(json.dumps(s.to_dict()))
        return
    out.print(f"[green]profiled[/] {s.files_seen} files ({s.ok} ok, {s.errors} errors) in {s.seconds:.2f}s")
    out.print(f"profile: {s.profile} ({s.bytes / 1024:,.0f} KiB)")


@app.command()
def merge(
    profiles: Annotated[list[Path], typer.Argument(help="profile files to merge")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="merged profile path")],
) -> None:
    """Merge profiles (e.g. of shards or of data drops over time) into one."""
    from pixelscope.profile import Profile, merge_all

    with _user_errors():
        merged = merge_all(Profile.load(_existing(p)) for p in profiles)
        size = merged.save(out_path)
    out.print(f"merged {len(profiles)} profiles ({merged.files_seen} files) -> {out_path} ({size / 1024:,.0f} KiB)")


@app.command()
def drift(
    reference: Annotated[Path, typer.Argument(help="reference profile")],
    current: Annotated[Path, typer.Argument(help="current profile")],
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="write the drift table (Parquet)")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="list every row, not only drifted ones")] = False,
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Drift between two profiles (KS, PSI, Hellinger, JS, chi-square, MMD), from the sketches alone."""
    from pixelscope.drift import compare
    from pixelscope.profile import Profile

    with _user_errors():
        p = _params(params, set_)
        rows = compare(Profile.load(_existing(reference)), Profile.load(_existing(current)), p.drift)
    if out_path is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pixelscope.atomic import atomic_path

        with atomic_path(out_path) as tmp:
            pq.write_table(pa.Table.from_pylist([r.to_dict() for r in rows]), tmp)
    drifted = [r for r in rows if r.drift]
    if as_json:
        print(json.dumps({"rows": len(rows), "drifted": len(drifted), "table": [r.to_dict() for r in rows]}))
        return
    table = Table(title=f"drift: {len(drifted)} of {len(rows)} tests ({p.drift.correction}, alpha {p.drift.alpha})")
    for c in ("feature", "segment", "test", "statistic", "threshold", "p adjusted", "drift"):
        table.add_column(c)
    for r in rows if show_all else drifted:
        table.add_row(r.feature, escape(r.segment), r.test, _fmt(r.statistic), _fmt(r.threshold),
                      "" if r.p_adjusted is None else f"{r.p_adjusted:.2g}", "[red]yes[/]" if r.drift else "no")
    out.print(table)
    features = sorted({r.feature for r in drifted})
    out.print(f"drifted features: {', '.join(features) if features else 'none'}")


@app.command()
def validate(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Run the expectation suites (quality over the manifest, drift against the reference) with GX."""
    from pixelscope.steps import validate_step

    with _user_errors():
        p = _params(params, set_)
        r = validate_step(p)
    if as_json:
        print(json.dumps(r, default=str))
        return
    for suite, s in r["suites"].items():
        ok = sum(x["success"] for x in s["results"])
        out.print(f"{suite}: {ok}/{len(s['results'])} expectations met")
    for f in r["failed"]:
        out.print(f"  [red]failed[/] {escape(f)}")
    out.print(("[green]validation passed[/]" if r["success"] else "[yellow]validation failed (on_failure: warn)[/]")
              + f"; results: {p.validate_.results / 'results.json'}")


suite_app = typer.Typer(help="Expectation suites (expectations/*.json).", no_args_is_help=True)
app.add_typer(suite_app, name="suite")


@suite_app.command("init")
def suite_init(
    from_reference: Annotated[Path, typer.Option("--from-reference", help="reference profile to take bounds from")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="suite file to write")] = Path("expectations/quality.json"),
    force: Annotated[bool, typer.Option(help="overwrite an existing suite")] = False,
) -> None:
    """Write a quality suite with bounds from a reference profile (then edit it by hand)."""
    from pixelscope.profile import Profile
    from pixelscope.validate import suite_from_reference

    with _user_errors():
        if out_path.exists() and not force:
            raise StepError(f"{out_path} exists (use --force to overwrite)")
        suite = suite_from_reference(Profile.load(_existing(from_reference)))
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(json.dumps(suite, indent=1) + "\n")
    out.print(f"wrote {out_path}: {len(suite['expectations'])} expectations from {from_reference}")


reference_app = typer.Typer(help="The reference the drift suite compares with.", no_args_is_help=True)
app.add_typer(reference_app, name="reference")


@reference_app.command("set")
def reference_set(
    rev: Annotated[Optional[str], typer.Argument(help="git rev whose profile is the reference (read through DVC)")] = None,
    profile_file: Annotated[Optional[Path], typer.Option("--profile", help="or a profile file")] = None,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Pin the reference in params.yaml (validate.reference_rev or validate.reference)."""
    from pixelscope.config import set_params

    with _user_errors():
        if (rev is None) == (profile_file is None):
            raise StepError("give a git rev or --profile FILE (one of them)")
        set_params(params, {"validate": {"reference_rev": rev, "reference": str(profile_file) if profile_file else None}})
    out.print(f"reference: {rev or profile_file} (validate.{'reference_rev' if rev else 'reference'} in {params})")


def _existing(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"file not found: {path}")
    return path


@app.command()
def show(
    profile_path: Annotated[Path, typer.Argument(help="profile file")] = Path("data/processed/profile.json"),
    column: Annotated[Optional[str], typer.Option("--column", "-c", help="one column in detail")] = None,
    segment: Annotated[Optional[str], typer.Option("--segment", "-s", help="e.g. label=cat")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a profile's summary table (or one column's quantiles and histogram)."""
    from pixelscope.profile import Profile

    with _user_errors():
        prof = Profile.load(_existing(profile_path))
        seg = _parse_segment(prof, segment)
        rows = prof.summary(seg)
        if column:
            rows = [r for r in rows if r["column"] == column]
            if not rows:
                prof.sketch(column, seg)  # raises KeyError listing the columns
    head = {"files_seen": prof.files_seen, "ok": prof.ok, "errors": prof.errors,
            "errors_by_reason": dict(prof.errors_by_reason),
            "segments": {k: dict(v) for k, v in prof.segment_rows.items()}}
    if column:
        sk = prof.sketch(column, seg)
        detail = dict(rows[0])
        if sk.kind == "numeric":
            edges, counts = sk.histogram(20)  # type: ignore[union-attr]
            qs = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]
            detail["quantiles"] = dict(zip([str(q) for q in qs], sk.quantiles(qs)))  # type: ignore[union-attr]
            detail["histogram"] = {"edges": edges, "counts": counts}
            detail["rank_error"] = sk.rank_error  # type: ignore[union-attr]
        if as_json:
            print(json.dumps(detail))
        else:
            out.print_json(json.dumps(detail))
        return
    emb = prof.embedding.summary() if prof.embedding is not None else None
    if as_json:
        print(json.dumps({**head, "columns": rows, "embedding": emb}))
        return
    out.print(f"[bold]{profile_path}[/]: {prof.files_seen} files, {prof.ok} ok, {prof.errors} errors "
              + (f"({', '.join(f'{k}: {v}' for k, v in sorted(prof.errors_by_reason.items()))})" if prof.errors else ""))
    for seg_name, counts in prof.segment_rows.items():
        out.print(f"segments by {seg_name}: " + ", ".join(f"{k} ({v})" for k, v in sorted(counts.items())))
    table = Table(show_lines=False, title=f"profile{' of ' + segment if segment else ''}")
    for c in ("column", "kind", "count", "nulls", "min", "median", "max", "mean / distinct", "top values"):
        table.add_column(c, overflow="fold")
    for r in rows:
        if r["kind"] == "numeric":
            vals = [_fmt(r.get("min")), _fmt(r.get("median")), _fmt(r.get("max")), _fmt(r.get("mean")), ""]
        else:
            top = ", ".join(f"{v} ({c})" for v, c in r.get("top", []))
            vals = ["", "", "", f"~{r['distinct']} distinct", top]
        table.add_row(r["column"], r["kind"], str(r["count"]), str(r["nulls"]), *vals)
    out.print(table)
    if emb:
        _print_embedding(emb)


def _print_embedding(emb: dict[str, Any]) -> None:
    table = Table(title=f"embeddings: {emb['model']} ({emb['dim']}-d, store {emb['key']}, sample of {emb['sample']})")
    for c in ("label", "images", "centroid norm", "cosine distance to centroid p50", "p90", "norm p50"):
        table.add_column(c)
    for label, e in [("(all)", emb["all"]), *emb["labels"].items()]:
        table.add_row(label, str(e["images"]), _fmt(e["centroid_norm"]), _fmt(e["distance_p50"]),
                      _fmt(e["distance_p90"]), _fmt(e["norm_p50"]))
    out.print(table)


def _parse_segment(prof: Any, segment: str | None) -> tuple[str, str] | None:
    if not segment:
        return None
    if "=" not in segment:
        raise ValueError(f"--segment {segment!r}: expected NAME=VALUE, e.g. label=cat")
    name, value = segment.split("=", 1)
    if name not in prof.segments:
        raise ValueError(f"--segment: no segment column {name!r}; profile has {sorted(prof.segments)}")
    if value not in prof.segments[name]:
        raise ValueError(f"--segment: no {name}={value!r}; values: {sorted(prof.segments[name])}")
    return name, value


def _fmt(x: Any) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        return f"{x:.4g}"
    return str(x)


@app.command("demo-data")
def demo_data(
    out_dir: Annotated[Path, typer.Argument(help="where the reference images go")] = Path("data/raw"),
    new_batch: Annotated[Path, typer.Option(help="where the shifted new batch goes")] = Path("data/new_batch"),
    per_class: Annotated[int, typer.Option(min=1, help="images per class")] = 50,
    force: Annotated[bool, typer.Option(help="rebuild even when the folder has files")] = False,
) -> None:
    """Build the demo dataset from real photos that scikit-image ships (no downloads)."""
    from pixelscope.demo import build_demo

    if out_dir.exists() and any(out_dir.rglob("*.jpg")) and not force:
        out.print(f"demo data already in {out_dir} (use --force to rebuild)")
        return
    info = build_demo(out_dir, new_batch, per_class=per_class)
    out.print(f"demo data: {info['images']} files in {out_dir} and {new_batch}")


def _report_counts(what: str, c: Any) -> None:
    out.print(f"[green]{what}[/] {c.computed} new images in {c.seconds:.1f}s ({c.images_per_s:,.0f} img/s), "
              f"{c.reused} already stored, {c.errors} errors; {c.images} distinct readable images "
              f"(+{c.ingest_errors} ingest error rows)" + (f"; {c.info}" if c.info else ""))
    for reason, n in c.errors_by_reason.items():
        out.print(f"  error {reason}: {n}")
    out.print(f"store: {c.store}")


def _run_store_step(what: str, step: Any, metrics: Path | None, params: Path, set_: list[str] | None,
                    as_json: bool, quiet: bool) -> None:
    with _user_errors():
        p = _params(params, set_)
        with _progress(what, quiet or as_json) as progress:
            c = step(p, ".", progress=progress, metrics=metrics)
    if as_json:
        print(json.dumps(c.to_dict()))
    else:
        _report_counts({"preprocess": "preprocessed", "embed": "embedded"}[what], c)


@app.command()
def preprocess(
    metrics: MetricsOpt = None,
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Decode, orient and transform new manifest images into model-ready uint8 tensors (paths.tensors)."""
    _run_store_step("preprocess", preprocess_step, metrics, params, set_, as_json, quiet)


@app.command()
def embed(
    metrics: MetricsOpt = None,
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False, quiet: QuietOpt = False,
) -> None:
    """Embed new manifest images with embed.model (paths.embeddings) and write the 2-D projection."""
    _run_store_step("embed", embed_step, metrics, params, set_, as_json, quiet)


@app.command("version-data")
def version_data(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Track the raw folder with DVC (`dvc add`), push it to the default remote, print its version."""
    with _user_errors():
        v = version_step(_params(params, set_))
    if as_json:
        print(json.dumps(v))
        return
    out.print(f"raw data {v['path']}: version {v['md5']} ({v['files']} files, {v['bytes']:,} bytes)"
              + (f", pushed {v['pushed']} files to remote '{v['remote']}'" if v["remote"] else ""))


@app.command()
def publish(
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Write the results bundle (reports/publish/): summaries, versions, timings, the profile."""
    with _user_errors():
        p = _params(params, set_)
        bundle = publish_step(p)
    if as_json:
        print(json.dumps(bundle, default=str))
        return
    m = bundle["manifest"]
    out.print(f"published {p.paths.publish}: {m['files_seen']} files, {m['ok']} ok, {m['errors']} errors; "
              f"raw version {bundle['versions']['raw']['md5']}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
