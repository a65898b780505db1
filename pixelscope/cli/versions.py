"""Versions over time: `pixelscope diff A B`, `pixelscope history`, `pixelscope monitor DROP`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from pixelscope.cli.common import JsonOpt, ParamsOpt, QuietOpt, SetOpt, load, out, progress, user_errors
from pixelscope.io.url import as_location
from pixelscope.io.values import dumps, fmt


def register(app: typer.Typer) -> None:
    from pixelscope.cli.stages import report

    @app.command("history")
    def history_command(
        versions: Annotated[Optional[list[str]], typer.Argument(
            help="git revs or bundle folders, oldest first (default: every version in the git log of <raw>.dvc)")]
        = None,
        project: Annotated[Path, typer.Option(help="the project (a git + DVC repository)")] = Path("."),
        params: ParamsOpt = Path("params.yaml"),
        set_: SetOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """One row per dataset version in paths.history (reports/history/history.parquet): counts, errors,
        label shares, feature quantiles, validation, drift against the previous version and the reference.
        Incremental: versions already there are not recomputed. `pixelscope publish` carries it to the
        dashboard's Versions page."""
        from pixelscope.versions.history import record_history

        with user_errors():
            p = load(project / params if not params.is_absolute() else params, set_)
            with progress("history", quiet or as_json) as bar:
                result = record_history(p, project, versions or None, progress=bar)
        if as_json:
            print(json.dumps(result.to_dict()))
            return
        report(result)

    @app.command("monitor")
    def monitor_command(
        drop: Annotated[Optional[str], typer.Argument(help="the folder (or s3://... prefix) of new images "
                                                      "(default: monitor.drop)")] = None,
        date: Annotated[Optional[str], typer.Option(help="the drop's date (YYYY-MM-DD, for backfills; default now)")]
        = None,
        on_drift: Annotated[Optional[str], typer.Option(help="fail (exit 1) | warn (default: monitor.on_drift)")]
        = None,
        project: Annotated[Path, typer.Option(help="the project")] = Path("."),
        params: ParamsOpt = Path("params.yaml"),
        set_: SetOpt = None,
        as_json: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Ingest, embed and profile a new data drop (outputs under paths.monitor/drops/), merge its profile
        into the rolling profile of its day / week, test it for drift against the reference, and record it
        in the history. Exit 1 when it drifts and on_drift is fail."""
        from pixelscope.monitor import monitor_drop, parse_when

        with user_errors():
            sets = list(set_ or []) + ([f"monitor.on_drift={on_drift}"] if on_drift else [])
            p = load(project / params if not params.is_absolute() else params, sets)
            when = parse_when(date)
            with progress("monitor", quiet or as_json) as bar:
                result = monitor_drop(p, project, as_location(drop) if drop else None, when=when, progress=bar)
        if as_json:
            print(json.dumps(result.to_dict()))
            return
        report(result)

    @app.command("diff")
    def diff_command(
        a: Annotated[str, typer.Argument(help="the older version: a git rev, a bundle folder, a manifest or profile")],
        b: Annotated[str, typer.Argument(help="the newer version (same kinds)")],
        output: Annotated[Optional[Path], typer.Option("--output", "-o", help="write the changed images (Parquet)")]
        = None,
        project: Annotated[Path, typer.Option(help="the project (for git revs)")] = Path("."),
        params: ParamsOpt = Path("params.yaml"),
        set_: SetOpt = None,
        as_json: JsonOpt = False,
        limit: Annotated[int, typer.Option(help="paths listed per kind of change")] = 10,
    ) -> None:
        """Images added, removed, modified, moved, relabelled, re-split; feature quantile deltas and the
        drift of B against A; new and fixed issues; curated-set changes. Git revs are read through DVC
        without checking them out."""
        from pixelscope.errors import ConfigError
        from pixelscope.io.atomic import atomic_path
        from pixelscope.versions import diff_versions, open_version

        with user_errors():
            p = load(project / params if not params.is_absolute() else params, set_)
            va, vb = open_version(a, p, project), open_version(b, p, project)
            d = diff_versions(va, vb, p.drift)
            if output is not None and d.images is None:
                raise ConfigError(f"--output {output}: no image changes to write, a side is a profile file "
                                  "(give manifests, bundles or revs)")
        if output is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            output.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(output) as tmp:
                pq.write_table(pa.Table.from_pandas(d.images, preserve_index=False), tmp)
        if as_json:
            print(dumps(d.to_dict()))
            return
        out.print(f"A: {va.describe()}\nB: {vb.describe()}", highlight=False)
        c = d.counts
        out.print(f"files {c['files_a']:,} -> {c['files_b']:,}", highlight=False)
        if d.images is not None:
            out.print(", ".join(f"{k} {c[k]:,}" for k in ("added", "removed", "modified", "moved", "relabelled",
                                                           "split_changed", "unchanged")), highlight=False)
            for kind in ("added", "removed", "modified", "moved"):
                rows = d.images[d.images["change"] == kind].head(limit)
                for path, old in zip(rows["path"], rows["old_path"]):
                    shown = old if kind == "removed" else (f"{old} -> {path}" if kind == "moved" else path)
                    out.print(f"  {kind:8s} {shown}", highlight=False)
            rel = d.images[d.images["relabelled"]].head(limit)
            for path, old, new in zip(rel["path"], rel["old_label"], rel["label"]):
                out.print(f"  relabelled {path}: {old} -> {new}", highlight=False)
        feats = d.features
        if len(feats):
            out.print(f"features: {int(feats['drift'].sum())} of {len(feats)} drifted (B against A)", highlight=False)
            moved = feats.reindex(feats["p50_delta"].abs().sort_values(ascending=False).index).head(limit)
            for _, r in moved.iterrows():
                out.print(f"  {r['feature']:22s} p50 {fmt(r['p50_a'])} -> {fmt(r['p50_b'])} "
                          f"(mean {fmt(r['mean_delta'])})" + (f"  DRIFT {r['drifted_tests']}" if r["drift"] else ""),
                          highlight=False)
        if d.issues:
            for issue, s in d.issues.items():
                if s["new"] or s["fixed"]:
                    out.print(f"  issue {issue}: {s['a']} -> {s['b']} (new {len(s['new'])}, fixed {len(s['fixed'])})",
                              highlight=False)
        if d.curated:
            cur = d.curated
            out.print(f"curated set: kept {cur['kept']}, added {len(cur['added'])}, dropped {len(cur['dropped'])}, "
                      f"moved {len(cur['moved'])}, relabeled {len(cur['relabeled'])}", highlight=False)
        for m in d.missing:
            out.print(f"[dim]not compared: {m}[/]")
        if output is not None:
            out.print(f"changed images: {output}", highlight=False)
