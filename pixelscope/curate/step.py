"""The curate step: manifest + issues table + recipe (params `curate:`) -> data/curated/:
curation.parquet (the ledger), labels.json, curate.json (counts that add up) and the exports
of curate.formats. Raw data is never modified; `dry_run` writes nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.config import Params
from pixelscope.curate import card, export
from pixelscope.curate.ledger import build_ledger, summary
from pixelscope.curate.select import Images
from pixelscope.errors import InputMissing
from pixelscope.io.atomic import atomic_path, write_bytes_atomic
from pixelscope.io.manifest import manifest_frame
from pixelscope.io.parallel import resolve_workers
from pixelscope.io.values import plain
from pixelscope.issues.base import load_embeddings
from pixelscope.pipeline.steps import ProgressFn, StepResult, write_metrics

STAGE = "curate"
UNLABELED = "unlabeled"


def _value_type(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int64"
    if pd.api.types.is_float_dtype(series):
        return "float64"
    return "string"


def curate_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None,
                dry_run: bool = False) -> StepResult:
    """Apply the recipe; write the ledger and the exports (nothing with dry_run)."""
    t0 = time.perf_counter()
    project = Path(project)
    paths, cfg = params.paths.under(project), params.curate
    if not paths.manifest.exists():
        raise InputMissing(f"manifest not found: {paths.manifest} (run `pixelscope ingest` first)")
    issues = paths.issues if paths.issues.exists() else None
    needs = [f"curate.exclude: {n}" for n in cfg.exclude if n != "unreadable"]
    needs += ["curate.accept_suggested_above"] if cfg.accept_suggested_above is not None else []
    if issues is None and needs:
        raise InputMissing(f"{', '.join(needs)} need the issues table, but {paths.issues} does not exist: run "
                           "`pixelscope issues` first (or set curate.exclude: [unreadable])")
    frame = manifest_frame(paths.manifest, issues)
    if "unreadable" not in frame:
        frame["unreadable"] = frame["status"] != "ok"
    skipped = {}
    if issues is not None and paths.issues_summary.exists():
        skipped = {k: v["skipped"] for k, v in json.loads(paths.issues_summary.read_text())["finders"].items()
                   if v.get("skipped")}
    images = Images(paths.manifest, issues)
    b = cfg.balance
    vectors = None
    if b.keep == "diverse" and (b.max_per_class is not None or b.target_share):
        emb, _ = load_embeddings(params, project, frame)
        vectors = dict(zip(emb.ids, emb.vectors)) if emb is not None else None
    ledger = build_ledger(images, frame, cfg, params.issues, paths.raw, vectors, skipped, project)
    counts = summary(ledger)
    notes = [f"{name}: not excluded — its finder was skipped ({skipped[name]})"
             for name in cfg.exclude if name in skipped and name not in frame]
    if b.keep == "diverse" and vectors is None and (b.max_per_class is not None or b.target_share):
        notes.append("balance.keep diverse: no embeddings for every image, kept by quality instead")
    details: dict[str, Any] = {"counts": counts, "recipe": plain(cfg.model_dump(mode="json"))}
    outputs: dict[str, str] = {}
    export_seconds: dict[str, float] = {}
    if not dry_run:
        details["exports"] = write_outputs(ledger, frame, params, project, counts, export_seconds)
        outputs = {"curated": str(paths.curated), "ledger": str(paths.curated / "curation.parquet")}
        if cfg.mlflow.enabled:
            from pixelscope.curate.tracking import log_curated
            from pixelscope.track.repo import raw_version

            run_id = log_curated(paths.curated, counts, cfg.mlflow, raw_version(params, project).to_dict(), project,
                                 cfg.pretty_name or Path(params.paths.raw).name)
            details["mlflow_run"] = run_id
            outputs["mlflow_run"] = f"{cfg.mlflow.tracking_uri} run {run_id}"
    seconds = time.perf_counter() - t0
    metric_counts = {k: counts[k] for k in ("files", "included", "excluded", "unreadable", "labels_fixed")}
    result = StepResult(STAGE, f"{'would curate' if dry_run else 'curated'} {counts['included']} of {counts['files']} "
                               f"files ({counts['excluded']} excluded, {counts['unreadable']} unreadable) in "
                               f"{seconds:.1f}s", seconds, metric_counts, outputs,
                        {**metric_counts, "seconds": round(seconds, 3), "export_seconds": export_seconds}
                        if not dry_run else {}, details,
                        notes + [f"excluded — {why}: {n}" for why, n in counts["excluded_by_first_reason"].items()]
                        + [f"split {s}: {n}" for s, n in counts["splits"].items()])
    return write_metrics(params, project, result) if not dry_run else result


def write_outputs(ledger: pd.DataFrame, frame: pd.DataFrame, params: Params, project: Path, counts: dict[str, Any],
                  seconds: dict[str, float]) -> dict[str, Any]:
    """Ledger, labels.json, the exports, the curated profile, the card, curate.json — all written into a
    temp folder beside paths.curated and renamed into place at the end, so a killed run leaves the
    previous set whole (ledger and exports together). Export times -> seconds."""
    paths = params.paths.under(project)
    paths.curated.parent.mkdir(parents=True, exist_ok=True)
    with export.Staged(paths.curated.parent, paths.curated.name) as out:
        return _write_all(ledger, frame, params, project, counts, seconds, out)


def _write_all(ledger: pd.DataFrame, frame: pd.DataFrame, params: Params, project: Path, counts: dict[str, Any],
               seconds: dict[str, float], out: Path) -> dict[str, Any]:
    cfg = params.curate
    paths = params.paths.under(project)
    raw = paths.raw
    inc = ledger[ledger["included"]]
    labels = [lab if isinstance(lab, str) else UNLABELED for lab in inc["label"]]
    classes = sorted(set(labels))
    dirs = export.label_dirs(classes)
    index = {c: i for i, c in enumerate(classes)}
    feats = [f for f in cfg.metadata_features if f in frame]
    items = [export.Item(raw / p, i, s, lab, dirs[lab], index[lab], export.safe_name(p, i),
                         {f: plain(frame.at[r, f]) if pd.notna(frame.at[r, f]) else None for f in feats})
             for r, p, i, s, lab in zip(inc.index, inc["path"], inc["id"], inc["split"], labels)]
    with atomic_path(out / "curation.parquet") as tmp:
        pq.write_table(pa.Table.from_pandas(ledger, preserve_index=False), tmp)
    write_bytes_atomic(out / "labels.json", json.dumps({"classes": classes, "folders": dirs}, indent=1).encode())
    write_curated_profile(ledger, paths.manifest, out, params)
    checked = validate_curated(ledger, out, params, project)
    done: dict[str, Any] = {}
    workers = resolve_workers(cfg.workers)
    for fmt in cfg.formats:
        t0 = time.perf_counter()
        if fmt == "torchvision":
            done[fmt] = export.export_tree(items, out, "torchvision", cfg.link, metadata=False)
        elif fmt == "imagefolder":
            done[fmt] = export.export_tree(items, out, "imagefolder", cfg.link, metadata=True)
        elif fmt == "webdataset":
            done[fmt] = export.export_webdataset(items, out, cfg.shard_size, workers)
        elif fmt == "parquet":
            done[fmt] = export.export_parquet(
                items, out, cfg.shard_size, classes,
                lambda: {f: {"dtype": _value_type(frame[f]), "_type": "Value"} for f in feats}, workers)
        seconds[fmt] = round(time.perf_counter() - t0, 3)  # to the metrics, not the outputs (reproducible)
    write_card(ledger, frame, params, project, counts, classes, checked, out)
    write_bytes_atomic(out / "curate.json", json.dumps(plain({**counts, "recipe": cfg.model_dump(mode="json"),
                                                              "classes": classes, "label_folders": dirs,
                                                              "leaks": card.leaks(ledger), "validation": checked,
                                                              "exports": done}),
                                                        indent=1).encode())
    return done


def write_curated_profile(ledger: pd.DataFrame, manifest: Path, out: Path, params: Params) -> None:
    """The curated rows as a manifest (curated label and split; same schema) and their own profile."""
    from pixelscope.profile import Profile

    table = pq.read_table(manifest)
    keep = pa.array(ledger["included"].to_numpy())
    sub = table.filter(keep)
    inc = ledger[ledger["included"]]
    for col, values in (("label", inc["label"]), ("split", inc["split"])):
        at = sub.schema.get_field_index(col)
        sub = sub.set_column(at, col, pa.array([v if isinstance(v, str) else None for v in values], pa.string()))
    with atomic_path(out / "manifest.parquet") as tmp:
        pq.write_table(sub, tmp)
    Profile.from_manifest(out / "manifest.parquet", params.profile).save(out / "profile.json")


def validate_curated(ledger: pd.DataFrame, out: Path, params: Params, project: Path) -> dict[str, Any]:
    """The shipped quality suite over the curated manifest, with the curated set's own leakage and
    copy columns (an id or duplicate group in two splits; an id twice). Fails like validate does
    (validate.on_failure), before any export is written."""
    from pixelscope.errors import ValidationFailed
    from pixelscope.validate.expectations import present_columns, run_suites
    from pixelscope.validate.suites import load_suite

    df = manifest_frame(out / "manifest.parquet")
    inc = ledger[ledger["included"]].reset_index(drop=True)
    df["leakage"] = (inc.groupby("group_key")["split"].transform("nunique") > 1).to_numpy()
    df["exact_duplicate"] = inc["id"].duplicated(keep=False).to_numpy()
    suite = load_suite(project / params.validate_.suites / "quality.json")
    suites, _ = present_columns({"curated": df}, {"curated": suite})  # the curated frame has both issue columns
    res = run_suites({"curated": df}, suites, project)["curated"]
    failed = [f"{r['expectation']}({r['column'] or ''})" for r in res["results"] if not r["success"]]
    checked = {"success": not failed, "failed": failed, "expectations": len(res["results"])}
    write_bytes_atomic(out / "validation.json", json.dumps(plain(res), indent=1).encode())
    if failed and params.validate_.on_failure == "fail":
        raise ValidationFailed("the curated set fails the quality suite (validate.on_failure: fail): "
                               + ", ".join(failed) + f"; details: {out / 'validation.json'}")
    return checked


def write_card(ledger: pd.DataFrame, frame: pd.DataFrame, params: Params, project: Path, counts: dict[str, Any],
               classes: list[str], checked: dict[str, Any], out: Path) -> None:
    from pixelscope.track.repo import raw_version

    paths, cfg = params.paths.under(project), params.curate
    inc = ledger["included"].to_numpy()
    split_bytes = frame.loc[inc].groupby(ledger.loc[inc, "split"])["bytes"].sum().to_dict()
    results = project / params.validate_.results / "results.json"
    text = card.render(
        ledger=ledger, counts=counts, classes=classes, split_bytes={k: int(v) for k, v in split_bytes.items()},
        recipe=plain(cfg.model_dump(mode="json")), version=raw_version(params, project).to_dict(),
        issues=json.loads(paths.issues_summary.read_text()) if paths.issues_summary.exists() else None,
        validation=json.loads(results.read_text()) if results.exists() else None, curated_check=checked,
        profile=card.profile_summary(frame.loc[inc]), formats=list(cfg.formats),
        pretty_name=cfg.pretty_name or f"{Path(params.paths.raw).name} (curated)", license_=cfg.license)
    write_bytes_atomic(out / "README.md", text.encode())
