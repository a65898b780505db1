"""The curate step: manifest + issues table + recipe (params `curate:`) -> data/curated/:
curation.parquet (the ledger), labels.json, curate.json (counts that add up) and the exports
of curate.formats. Raw data is never modified; `dry_run` writes nothing."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.config import CurateConfig, Params, PathsConfig
from pixelscope.curate import card, decisions, export
from pixelscope.curate.ledger import ReviewRows, build_ledger, summary
from pixelscope.curate.select import Images
from pixelscope.errors import InputMissing
from pixelscope.io.atomic import Staged, atomic_path, write_bytes_atomic
from pixelscope.io.location import filesystem
from pixelscope.io.manifest import manifest_frame
from pixelscope.io.parallel import resolve_workers
from pixelscope.io.url import Url
from pixelscope.io.values import plain
from pixelscope.issues.base import load_embeddings
from pixelscope.pipeline.steps import ProgressFn, StepResult, write_metrics
from pixelscope.track.repo import raw_version

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


@dataclass
class CurateRun:
    """What one curate run works on, resolved once and passed along: the params, the project, its
    paths, the manifest + issues frame and the ledger built from it."""

    params: Params
    project: Path
    paths: PathsConfig  # params.paths.under(project)
    frame: pd.DataFrame
    ledger: pd.DataFrame
    counts: dict[str, Any]

    @property
    def cfg(self) -> CurateConfig:
        return self.params.curate

    @cached_property
    def version(self) -> dict[str, Any]:
        """The raw data's DVC version (read once: the card and MLflow both name it)."""
        return raw_version(self.params, self.project).to_dict()


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
    b = cfg.balance
    diverse = b.keep == "diverse" and (b.max_per_class is not None or bool(b.target_share))
    vectors = None
    if diverse:
        emb, _ = load_embeddings(params, project, frame)
        vectors = dict(zip(emb.ids, emb.vectors)) if emb is not None else None
    entries, resolved = decisions.load(project / cfg.decisions) if cfg.decisions else ([], None)
    review = ReviewRows(frame, resolved)
    images = Images(paths.manifest, issues, tags=review.tags(), object_images=paths.object_images)
    ledger = build_ledger(images, frame, cfg, params.issues, paths.raw, vectors, skipped, project, review)
    run = CurateRun(params, project, paths, frame, ledger, summary(ledger))
    counts = run.counts
    counts["decisions"] = review.review.counts()
    counts["decisions_stale"] = len(review.stale)
    counts["decisions_applied"] = len(entries)  # entries of the file replayed (the dashboard's "not applied yet")
    notes = [f"{name}: not excluded — its finder was skipped ({skipped[name]})"
             for name in cfg.exclude if name in skipped and name not in frame]
    if review.stale:
        d = review.stale[0]
        notes.append(f"{len(review.stale)} decisions name images no longer in the dataset (not applied; e.g. "
                     f"{d.action} {d.id[:12] if d.id else ''} {d.path}, entry {d.entry})")
    if diverse and vectors is None:
        notes.append("balance.keep diverse: no embeddings for every image, kept by quality instead")
    details: dict[str, Any] = {"counts": counts, "recipe": plain(cfg.model_dump(mode="json"))}
    outputs: dict[str, str] = {}
    export_seconds: dict[str, float] = {}
    if not dry_run:
        details["exports"] = write_outputs(run, export_seconds)
        outputs = {"curated": str(paths.curated), "ledger": str(paths.curated / "curation.parquet")}
        if cfg.mlflow.enabled:
            from pixelscope.curate.tracking import log_curated

            run_id = log_curated(paths.curated, counts, cfg.mlflow, run.version, project,
                                 cfg.pretty_name or params.paths.raw.name)
            details["mlflow_run"] = run_id
            outputs["mlflow_run"] = f"{cfg.mlflow.tracking_uri} run {run_id}"
    seconds = time.perf_counter() - t0
    metric_counts = {k: counts[k] for k in ("files", "included", "excluded", "unreadable", "labels_fixed")}
    metrics = {**metric_counts, "seconds": round(seconds, 3), "export_seconds": export_seconds} if not dry_run else {}
    notes += [f"excluded — {why}: {n}" for why, n in counts["excluded_by_first_reason"].items()]
    notes += [f"split {s}: {n}" for s, n in counts["splits"].items()]
    result = StepResult(stage=STAGE, seconds=seconds, counts=metric_counts, outputs=outputs, metrics=metrics,
                        details=details, notes=notes,
                        summary=f"{'would curate' if dry_run else 'curated'} {counts['included']} of {counts['files']} "
                                f"files ({counts['excluded']} excluded, {counts['unreadable']} unreadable) in "
                                f"{seconds:.1f}s")
    return write_metrics(params, project, result) if not dry_run else result


def write_outputs(run: CurateRun, seconds: dict[str, float]) -> dict[str, Any]:
    """Ledger, labels.json, the exports, the curated profile, the card, curate.json — all written into a
    temp folder beside paths.curated and renamed into place at the end, so a killed run leaves the
    previous set whole (ledger and exports together). Export times -> seconds."""
    run.paths.curated.parent.mkdir(parents=True, exist_ok=True)
    with Staged(run.paths.curated.parent, run.paths.curated.name) as out:
        return _write_all(run, seconds, out)


def _write_all(run: CurateRun, seconds: dict[str, float], out: Path) -> dict[str, Any]:
    cfg, ledger, frame = run.cfg, run.ledger, run.frame
    inc = ledger[ledger["included"]]
    labels = [lab if isinstance(lab, str) else UNLABELED for lab in inc["label"]]
    classes = sorted(set(labels))
    dirs = export.label_dirs(classes)
    index = {c: i for i, c in enumerate(classes)}
    feats = [f for f in cfg.metadata_features if f in frame]
    objects = kept_objects(run)
    object_classes = sorted({o["class"] for objs in objects.values() for o in objs}) if objects is not None else None
    items = [export.Item(run.paths.raw / p, i, s, lab, dirs[lab], index[lab], export.safe_name(p, i),
                         {f: plain(frame.at[r, f]) if pd.notna(frame.at[r, f]) else None for f in feats},
                         *object_fields(objects, object_classes, p, frame.at[r, "width"], frame.at[r, "height"]))
             for r, p, i, s, lab in zip(inc.index, inc["path"], inc["id"], inc["split"], labels)]
    with atomic_path(out / "curation.parquet") as tmp:
        pq.write_table(pa.Table.from_pandas(ledger, preserve_index=False), tmp)
    write_bytes_atomic(out / "labels.json", json.dumps({"classes": classes, "folders": dirs}, indent=1).encode())
    write_curated_profile(run, out)
    checked = validate_curated(run, out)
    done: dict[str, Any] = {}
    workers = resolve_workers(cfg.workers, len(items))
    dest: Path | Url = cfg.output or out  # a store prefix: the exports are streamed there, the rest stays here too
    for fmt in cfg.formats:
        t0 = time.perf_counter()
        if fmt == "torchvision":
            done[fmt] = export.export_tree(items, dest, "torchvision", cfg.link, metadata=False)
        elif fmt == "imagefolder":
            done[fmt] = export.export_tree(items, dest, "imagefolder", cfg.link, metadata=True)
        elif fmt == "webdataset":
            done[fmt] = export.export_webdataset(items, dest, cfg.shard_size, workers)
        elif fmt == "parquet":
            done[fmt] = export.export_parquet(
                items, dest, cfg.shard_size, classes,
                lambda: {f: {"dtype": _value_type(frame[f]), "_type": "Value"} for f in feats}, workers, object_classes)
        elif fmt in ("coco", "yolo"):
            if object_classes is None:
                done[fmt] = {"skipped": "no annotated objects (set ingest.annotations, run `pixelscope objects`)"}
                continue
            write = export.export_coco if fmt == "coco" else export.export_yolo
            done[fmt] = write(items, dest, cfg.link, object_classes)
        seconds[fmt] = round(time.perf_counter() - t0, 3)  # to the metrics, not the outputs (reproducible)
    object_counts: dict[str, dict[str, int]] | None = None
    if object_classes is not None:
        object_counts = {s: {} for s in sorted({it.split for it in items})}
        for it in items:
            for o in it.objects or []:
                per = object_counts[it.split]
                per[object_classes[o["category"]]] = per.get(object_classes[o["category"]], 0) + 1
    write_card(run, classes, checked, out, object_counts)
    write_bytes_atomic(out / "curate.json", json.dumps(plain({**run.counts, "recipe": cfg.model_dump(mode="json"),
                                                              "classes": classes, "label_folders": dirs,
                                                              "leaks": card.leaks(ledger), "validation": checked,
                                                              "exports": done, "output": cfg.output}),
                                                        indent=1).encode())
    if cfg.output:  # the store holds a whole dataset: the ledger, card and counts beside the exports
        fs = filesystem(cfg.output.protocol)
        for name in ("README.md", "curate.json", "labels.json", "curation.parquet", "validation.json"):
            if (out / name).exists():
                fs.put_file(str(out / name), (cfg.output / name).key)
    return done


def kept_objects(run: CurateRun) -> dict[str, list[dict[str, Any]]] | None:
    """path -> its kept objects (the objects stage's table), or None without annotations (or with a
    table written for another manifest)."""
    from pixelscope.annotations.objects import objects_of

    table = objects_of(run.paths.objects, run.frame)
    if table is None:
        return None
    kept = table[table["status"] == "ok"].reset_index(drop=True)
    cfg = run.cfg
    if cfg.object_classes:  # merge / rename / drop classes first, so objects_where sees the new names
        kept["class"] = [cfg.object_classes.get(c, c) for c in kept["class"]]  # mapped to None: dropped below
        kept = kept[kept["class"].notna()].reset_index(drop=True)
    if cfg.objects_where:
        from pixelscope.curate.select import Images

        kept = kept[Images.over(kept).where(cfg.objects_where, "curate.objects_where")]
    included = set(run.ledger.loc[run.ledger["included"], "path"])  # the counts are of the included images' objects
    run.counts["objects_exported"] = int(kept["path"].isin(included).sum())
    run.counts["objects_dropped"] = int(((table["status"] == "ok") & table["path"].isin(included)).sum()
                                        - run.counts["objects_exported"])
    return {p: g.to_dict("records") for p, g in kept.groupby("path", sort=False)}


def object_fields(objects: dict[str, list[dict[str, Any]]] | None, classes: list[str] | None, path: str,
                  width: Any, height: Any) -> tuple[list[dict[str, Any]] | None, tuple[int, int] | None]:
    """An image's objects as the exports write them (bbox x, y, w, h in pixels; category index), and its size."""
    if objects is None or classes is None:
        return None, None
    index = {c: k for k, c in enumerate(classes)}
    return ([{"bbox": [round(o["x0"], 2), round(o["y0"], 2), round(o["width"], 2), round(o["height"], 2)],
              "category": index[o["class"]], "area": round(o["mask_area"] if pd.notna(o["mask_area"]) else o["area"], 2),
              "iscrowd": bool(o["crowd"]), "segmentation": _mask(o.get("segmentation"))}
             for o in objects.get(path, [])], (int(width), int(height)))


def _mask(segmentation: str | None) -> Any:
    """The objects table's segmentation (JSON written by pixelscope.annotations.objects) as COCO writes it."""
    return json.loads(segmentation) if isinstance(segmentation, str) else None


def write_curated_profile(run: CurateRun, out: Path) -> None:
    """The curated rows as a manifest (curated label and split; same schema) and their own profile."""
    from pixelscope.profile import Profile

    ledger = run.ledger
    table = pq.read_table(run.paths.manifest)
    sub = table.filter(pa.array(ledger["included"].to_numpy()))
    inc = ledger[ledger["included"]]
    for col, values in (("label", inc["label"]), ("split", inc["split"])):
        at = sub.schema.get_field_index(col)
        sub = sub.set_column(at, col, pa.array([v if isinstance(v, str) else None for v in values], pa.string()))
    with atomic_path(out / "manifest.parquet") as tmp:
        pq.write_table(sub, tmp)
    Profile.from_manifest(out / "manifest.parquet", run.params.profile).save(out / "profile.json")


def validate_curated(run: CurateRun, out: Path) -> dict[str, Any]:
    """The shipped quality suite over the curated manifest, with the curated set's own leakage and
    copy columns (an id or duplicate group in two splits; an id twice). Fails like validate does
    (validate.on_failure), before any export is written."""
    from pixelscope.errors import ValidationFailed
    from pixelscope.validate.expectations import present_columns, run_suites
    from pixelscope.validate.suites import load_suite

    df = manifest_frame(out / "manifest.parquet")
    inc = run.ledger[run.ledger["included"]].reset_index(drop=True)
    df["leakage"] = (inc.groupby("group_key")["split"].transform("nunique") > 1).to_numpy()
    df["exact_duplicate"] = inc["id"].duplicated(keep=False).to_numpy()
    suite = load_suite(run.project / run.params.validate_.suites / "quality.json")
    suites, _ = present_columns({"curated": df}, {"curated": suite})  # the curated frame has both issue columns
    res = run_suites({"curated": df}, suites, run.project)["curated"]
    failed = [f"{r['expectation']}({r['column'] or ''})" for r in res["results"] if not r["success"]]
    checked = {"success": not failed, "failed": failed, "expectations": len(res["results"])}
    write_bytes_atomic(out / "validation.json", json.dumps(plain(res), indent=1).encode())
    if failed and run.params.validate_.on_failure == "fail":
        raise ValidationFailed("the curated set fails the quality suite (validate.on_failure: fail): "
                               + ", ".join(failed) + f"; details: {out / 'validation.json'}")
    return checked


def write_card(run: CurateRun, classes: list[str], checked: dict[str, Any], out: Path,
               objects: dict[str, dict[str, int]] | None = None) -> None:
    ledger, frame, cfg, paths = run.ledger, run.frame, run.cfg, run.paths
    inc = ledger["included"].to_numpy()
    split_bytes = frame.loc[inc].groupby(ledger.loc[inc, "split"])["bytes"].sum().to_dict()
    results = run.project / run.params.validate_.results / "results.json"
    text = card.render(
        ledger=ledger, counts=run.counts, classes=classes, split_bytes={k: int(v) for k, v in split_bytes.items()},
        recipe=plain(cfg.model_dump(mode="json")), version=run.version,
        issues=json.loads(paths.issues_summary.read_text()) if paths.issues_summary.exists() else None,
        validation=json.loads(results.read_text()) if results.exists() else None, curated_check=checked,
        profile=card.profile_summary(frame.loc[inc]), formats=list(cfg.formats),
        pretty_name=cfg.pretty_name or f"{run.params.paths.raw.name} (curated)", license_=cfg.license, objects=objects)
    write_bytes_atomic(out / "README.md", text.encode())
