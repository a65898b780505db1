"""Commands over profile files: show one, merge several, compare two for drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape
from rich.table import Table

from pixelscope.cli.common import JsonOpt, ParamsOpt, SetOpt, existing, load, out, user_errors
from pixelscope.errors import PixelscopeError
from pixelscope.io.values import fmt
from pixelscope.profile.sketches import NumericSketch


def register(app: typer.Typer) -> None:
    app.command()(show)
    app.command()(merge)
    app.command()(drift)


def show(
    profile_path: Annotated[Path, typer.Argument(help="profile file")] = Path("data/processed/profile.json"),
    column: Annotated[Optional[str], typer.Option("--column", "-c", help="one column in detail")] = None,
    segment: Annotated[Optional[str], typer.Option("--segment", "-s", help="e.g. label=cat")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Print a profile's summary table (or one column's quantiles and histogram)."""
    from pixelscope.profile import Profile
    from pixelscope.profile.outputs import agreement

    with user_errors():
        prof = Profile.load(existing(profile_path))
        seg = _parse_segment(prof, segment)
        rows = prof.summary(seg)
        if column:
            rows = [r for r in rows if r["column"] == column]
            if not rows:
                known = ", ".join(sorted(r["column"] for r in prof.summary(seg)))
                raise PixelscopeError(f"--column: no profiled column {column!r}; profiled: {known}")
    head = {"files_seen": prof.files_seen, "ok": prof.ok, "errors": prof.errors,
            "errors_by_reason": dict(prof.errors_by_reason),
            "segments": {k: dict(v) for k, v in prof.segment_rows.items()}}
    if column:
        sk = prof.sketch(column, seg)
        detail = dict(rows[0])
        if isinstance(sk, NumericSketch):
            edges, bins = sk.histogram(20)
            qs = [0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0]
            detail["quantiles"] = dict(zip([str(q) for q in qs], sk.quantiles(qs)))
            detail["histogram"] = {"edges": edges, "counts": bins}
            detail["rank_error"] = sk.rank_error
        if as_json:
            print(json.dumps(detail))
        else:
            out.print_json(json.dumps(detail))
        return
    emb = prof.embedding.summary() if prof.embedding is not None else None
    agree = agreement(prof)
    if as_json:
        print(json.dumps({**head, "columns": rows, "embedding": emb, "agreement": agree}))
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
            vals = [fmt(r.get("min")), fmt(r.get("median")), fmt(r.get("max")), fmt(r.get("mean")), ""]
        else:
            top = ", ".join(f"{v} ({c})" for v, c in r.get("top", []))
            vals = ["", "", "", f"~{r['distinct']} distinct", top]
        table.add_row(r["column"], r["kind"], str(r["count"]), str(r["nulls"]), *vals)
    out.print(table)
    if emb:
        _print_embedding(emb)
    if agree:
        _print_agreement(agree)


def _print_agreement(agree: dict[str, dict[str, Any]]) -> None:
    table = Table(title="label / prediction agreement (pred_agrees: share of images whose prediction is the label)")
    for c in ("label", "images", "agreement"):
        table.add_column(c)
    for label, a in agree.items():
        table.add_row(label, str(a["images"]), f"{a['agreement']:.1%}")
    out.print(table)


def _print_embedding(emb: dict[str, Any]) -> None:
    table = Table(title=f"embeddings: {emb['model']} ({emb['dim']}-d, store {emb['key']}, sample of {emb['sample']})")
    for c in ("label", "images", "centroid norm", "cosine distance to centroid p50", "p90", "norm p50"):
        table.add_column(c)
    for label, e in [("(all)", emb["all"]), *emb["labels"].items()]:
        table.add_row(label, str(e["images"]), fmt(e["centroid_norm"]), fmt(e["distance_p50"]),
                      fmt(e["distance_p90"]), fmt(e["norm_p50"]))
    out.print(table)


def _parse_segment(prof: Any, segment: str | None) -> tuple[str, str] | None:
    if not segment:
        return None
    if "=" not in segment:
        raise PixelscopeError(f"--segment {segment!r}: expected NAME=VALUE, e.g. label=cat")
    name, value = segment.split("=", 1)
    if name not in prof.segments:
        raise PixelscopeError(f"--segment: no segment column {name!r}; profile has {sorted(prof.segments)}")
    if value not in prof.segments[name]:
        raise PixelscopeError(f"--segment: no {name}={value!r}; values: {sorted(prof.segments[name])}")
    return name, value


def merge(
    profiles: Annotated[list[Path], typer.Argument(help="profile files to merge")],
    out_path: Annotated[Path, typer.Option("--out", "-o", help="merged profile path")],
) -> None:
    """Merge profiles (e.g. of shards or of data drops over time) into one."""
    from pixelscope.profile import Profile, merge_all

    with user_errors():
        merged = merge_all(Profile.load(existing(p)) for p in profiles)
        size = merged.save(out_path)
    out.print(f"merged {len(profiles)} profiles ({merged.files_seen} files) -> {out_path} ({size / 1024:,.0f} KiB)")


def drift(
    reference: Annotated[Path, typer.Argument(help="reference profile")],
    current: Annotated[Path, typer.Argument(help="current profile")],
    out_path: Annotated[Optional[Path], typer.Option("--out", "-o", help="write the drift table (Parquet)")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="list every row, not only drifted ones")] = False,
    params: ParamsOpt = Path("params.yaml"), set_: SetOpt = None, as_json: JsonOpt = False,
) -> None:
    """Drift between two profiles (KS, PSI, Hellinger, JS, chi-square, MMD), from the sketches alone."""
    from pixelscope.profile import Profile
    from pixelscope.validate.drift import compare

    with user_errors():
        p = load(params, set_)
        rows = compare(Profile.load(existing(reference)), Profile.load(existing(current)), p.drift)
    if out_path is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pixelscope.io.atomic import atomic_path

        with atomic_path(out_path) as tmp:
            pq.write_table(pa.Table.from_pylist([r.to_dict() for r in rows]), tmp)
    drifted = [r for r in rows if r.drift]
    if as_json:
        print(json.dumps({"rows": len(rows), "drifted": len(drifted), "table": [r.to_dict() for r in rows]}))
        return
    table = Table(title=f"drift: {len(drifted)} of {len(rows)} tests ({p.drift.correction}, alpha {p.drift.alpha})")
    for c in ("feature", "segment", "test", "family", "statistic", "threshold", "p adjusted", "drift"):
        table.add_column(c)
    for r in rows if show_all else drifted:
        table.add_row(r.feature, escape(r.segment), r.test, r.family, fmt(r.statistic), fmt(r.threshold),
                      "" if r.p_adjusted is None else f"{r.p_adjusted:.2g}", "[red]yes[/]" if r.drift else "no")
    out.print(table)
    features = sorted({r.feature for r in drifted})
    out.print(f"drifted features: {', '.join(features) if features else 'none'}")
