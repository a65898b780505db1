"""Publish: everything the dashboard shows, in one folder (reports/publish/, layout in bundle.py).

summary.json holds the manifest summary (counts by status, reason, label, source, format),
the profile summary, the versions (raw data, git, pixelscope, params), the step timings and
the embedding, issue, curation and validation summaries. Beside it: copies of the profile,
the reference profile, the manifest, the issue tables, the neighbours, the drift table, the
validation results, the curation ledger and card; the 2-D embedding map with paths relative
to the raw folder (and each image's distance to the reference's embedding sample); the
compressed search index (search/, kept while the images and the model are unchanged); and the
thumbnails. A part whose source is gone is removed, so the bundle never shows stale results.
The folder is a persistent DVC out: the thumbnails are kept between runs and only new ids
are made.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope import __version__
from pixelscope.config import Params
from pixelscope.errors import InputMissing
from pixelscope.io.atomic import Staged, atomic_path, set_id_of, write_bytes_atomic
from pixelscope.io.store import current_store
from pixelscope.io.values import dumps
from pixelscope.pipeline.steps import ProgressFn, StepResult
from pixelscope.profile import Profile
from pixelscope.profile.outputs import agreement, model_outputs
from pixelscope.profile.reference import load_reference
from pixelscope.publish.bundle import PARTS
from pixelscope.publish.thumbnails import update_thumbnails
from pixelscope.track.repo import raw_version

STAGE = "publish"


def manifest_summary(manifest: str | Path) -> dict[str, Any]:
    t = pq.read_table(manifest, columns=["status", "reason", "label", "source", "format", "bytes"])
    cols = {n: t.column(n).to_pylist() for n in t.column_names}

    def counts(name: str, status: str = "ok") -> dict[str, int]:
        c = Counter(v if v is not None else "(none)" for v, s in zip(cols[name], cols["status"]) if s == status)
        return dict(c.most_common())

    return {
        "files_seen": t.num_rows,
        "ok": sum(s == "ok" for s in cols["status"]),
        "errors": sum(s != "ok" for s in cols["status"]),
        "errors_by_reason": counts("reason", status="error"),
        "labels": counts("label"), "sources": counts("source"), "formats": counts("format"),
        "bytes": sum(b for b in cols["bytes"] if b is not None),
    }


def params_hash(params: Params) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def read_metrics(folder: Path) -> dict[str, Any]:
    out = {}
    for f in sorted(folder.glob("*.json")) if folder.exists() else []:
        out[f.stem] = json.loads(f.read_text())
    return out


def _copy(src: Path, out: Path, name: str, written: dict[str, str]) -> None:
    """Copy src to the bundle part `name` atomically, or remove that part when src is gone."""
    dst = out / PARTS[name].file
    if src.exists():
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        written[name] = str(dst)
    else:
        dst.unlink(missing_ok=True)


def write_box_evaluation(paths: Any, out: Path) -> bool:
    """With annotations and the model's boxes: the COCO metrics (pycocotools' COCOeval, by label slice)
    and the false positives / negatives as bundle parts; False (and neither part) otherwise."""
    from pixelscope.annotations.evaluate import coco_metrics
    from pixelscope.annotations.objects import objects_of

    files = [out / PARTS[name].file for name in ("box_metrics", "box_errors")]
    frame = pq.read_table(paths.manifest, columns=["id", "path", "status", "width", "height", "label"]).to_pandas()
    gt, pred = objects_of(paths.objects, frame), objects_of(paths.predicted_objects, frame)
    if gt is None or pred is None:
        for f in files:
            f.unlink(missing_ok=True)
        return False
    metrics, errors = coco_metrics(frame[frame["status"] == "ok"], gt[gt["status"] == "ok"], pred[pred["status"] == "ok"],
                                   "label")
    write_bytes_atomic(files[0], dumps(metrics, indent=1).encode())
    with atomic_path(files[1]) as tmp:
        pq.write_table(pa.Table.from_pandas(errors.assign(bbox=errors["bbox"].map(list)), preserve_index=False), tmp)
    return True


def copy_examples(history: Path, project: Path, out: Path) -> bool:
    """The service windows' example thumbnails (ImageLogger keep_examples) as one bundle part,
    so the dashboard shows what a window looked like; False (and no part) when there are none."""
    dst = out / PARTS["examples"].file
    rows: dict[str, list] = {"key": [], "k": [], "jpeg": []}
    if history.exists() and "examples" in pq.read_schema(history).names:
        table = pq.read_table(history, columns=["key", "examples"]).to_pylist()
        for r in table:
            if not r["examples"]:
                continue
            folder = Path(r["examples"]) if Path(r["examples"]).is_absolute() else project / r["examples"]
            for k, f in enumerate(sorted(folder.glob("*.jpg"))):  # a folder moved away: that window shows none
                rows["key"].append(r["key"])
                rows["k"].append(k)
                rows["jpeg"].append(f.read_bytes())
    if not rows["key"]:
        dst.unlink(missing_ok=True)
        return False
    with atomic_path(dst) as tmp:
        pq.write_table(pa.table(rows, schema=pa.schema([("key", pa.string()), ("k", pa.int32()),
                                                        ("jpeg", pa.binary())])), tmp)
    return True


def reference_distances(current: Profile, reference: Profile | None, store: Any, ids: list[str]) -> np.ndarray | None:
    """Cosine distance from each current image to its nearest image of the reference's embedding
    sample: the images the embedding drift is about are the farthest ones."""
    ref = reference.embedding if reference is not None else None
    cur = current.embedding
    if ref is None or cur is None or store is None or not ids or ref.model != cur.model or ref.dim != cur.dim:
        return None
    sample = ref.sample.astype(np.float32)
    if not len(sample):
        return None
    sample /= np.maximum(np.linalg.norm(sample, axis=1, keepdims=True), 1e-12)
    out = np.empty(len(ids), np.float32)
    for s in range(0, len(ids), 4096):
        x = store.get(ids[s:s + 4096]).astype(np.float32)
        x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        out[s:s + 4096] = 1.0 - (x @ sample.T).max(axis=1)
    return out


def copy_projection(src: Path, manifest: pa.Table, distances: Any, dst: Path) -> None:
    """The embed step's map (embed/projection.py) into the bundle, with paths relative to the raw folder
    (the store keeps absolute ones) and each image's distance to the reference."""
    t = pq.read_table(src)
    rel = dict(zip(manifest.column("id").to_pylist(), manifest.column("path").to_pylist()))
    ids = t.column("id").to_pylist()
    t = t.set_column(t.schema.get_field_index("path"), "path", pa.array([rel.get(i) for i in ids], pa.string()))
    if distances is not None:
        t = t.append_column("reference_distance", pa.array(distances, pa.float32()))
    with atomic_path(dst) as tmp:
        pq.write_table(t, tmp)


def add_model_outputs(params: Params, project: Path, manifest: Path) -> None:
    """The bundle's manifest with the models' columns beside the manifest's (semantic_class,
    pred_label, pred_agrees, object_count, ...), so the dashboard can filter on what a model (or the
    annotations) says."""
    paths = params.paths.under(project)
    predictions = project / params.profile.predictions if params.profile.predictions else None
    outputs = model_outputs(paths.manifest, paths.embeddings, predictions, paths.object_images)
    if outputs is None or not manifest.exists():
        return
    table = outputs.join(pq.read_table(manifest))
    meta = dict(table.schema.metadata or {})
    kinds = {**json.loads(meta.get(b"pixelscope.columns", b"{}")), **outputs.kinds}
    table = table.replace_schema_metadata({**meta, b"pixelscope.columns": json.dumps(kinds).encode()})
    with atomic_path(manifest) as tmp:
        pq.write_table(table, tmp)


def publish_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Manifest, profile, issues, drift, curation, map and thumbnails -> reports/publish/."""
    t0 = time.perf_counter()
    project = Path(project)
    paths = params.paths.under(project)
    for need in (paths.manifest, paths.profile):
        if not need.exists():
            raise InputMissing(f"{need} not found: run ingest and profile first")
    profile = Profile.load(paths.profile)
    bundle: dict[str, Any] = {
        "versions": {"raw": raw_version(params, project).to_dict(), "pixelscope": __version__,
                     "params": params_hash(params), "published": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        "manifest": manifest_summary(paths.manifest),
        "profile": profile.summary(),
        "timings": {step: m.get("seconds") for step, m in read_metrics(paths.metrics).items()},
    }
    bundle["embedding"] = profile.embedding.summary() if profile.embedding is not None else None
    bundle["agreement"] = agreement(profile)  # label / prediction agreement per class (profile.predictions)
    stale = stale_parts(paths)
    if paths.issues_summary.exists() and "issues" not in stale:  # counts per finder, thresholds, findings
        bundle["issues"] = json.loads(paths.issues_summary.read_text())
    curated = paths.curated / "curate.json"
    if curated.exists() and "ledger" not in stale:  # the curated set: counts that add up, per split and label
        bundle["curated"] = json.loads(curated.read_text())
    results = project / params.validate_.results
    if (results / "results.json").exists():
        v = json.loads((results / "results.json").read_text())
        bundle["validation"] = {k: v[k] for k in ("success", "failed", "drifted", "reference")}
    final = paths.publish
    final.parent.mkdir(parents=True, exist_ok=True)
    with Staged(final.parent, final.name) as out:  # the bundle is renamed in whole: never a mixed set
        keep_thumbnails(final / PARTS["thumbnails"].file, out / PARTS["thumbnails"].file)
        written, thumbs = _write_bundle(params, project, profile, bundle, stale, out, progress)
    written = {name: str(final / Path(path).relative_to(out)) for name, path in written.items()}
    m = bundle["manifest"]
    summary = (f"published {params.paths.publish}: {m['files_seen']} files, {m['ok']} ok, {m['errors']} errors; "
               f"{thumbs['thumbnails']} thumbnails ({thumbs['made']} new); raw version {bundle['versions']['raw']['md5']}")
    counts = {k: m[k] for k in ("files_seen", "ok", "errors")}
    notes = [f"not published: {name} ({why})" for name, why in stale.items()]
    return StepResult(stage=STAGE, summary=summary, seconds=time.perf_counter() - t0, counts=counts, outputs=written,
                      details={**bundle, "thumbnails": thumbs}, notes=notes)


def keep_thumbnails(previous: Path, staged: Path) -> None:
    """The last bundle's thumbnails, hard-linked into the staged one: they are made once per id."""
    staged.mkdir(parents=True, exist_ok=True)
    for f in sorted(previous.glob("*.parquet")) if previous.is_dir() else []:
        try:
            os.link(f, staged / f.name)
        except OSError:  # another filesystem: copy
            shutil.copyfile(f, staged / f.name)


def _describes(table: Path, manifest: Path) -> bool:
    """The table has one row per manifest row, in the same order (the same paths)."""
    try:
        paths = [pq.read_table(f, columns=["path"]).column(0).cast(pa.large_string()) for f in (table, manifest)]
        return paths[0].equals(paths[1])
    except (OSError, KeyError, pa.ArrowInvalid):
        return False


def write_clusters(out: Path) -> bool:
    """clusters.parquet (pixelscope/clusters.py) from the bundle's own images and map; False when
    the issues table has no clusters or there is no map."""
    from pixelscope.clusters import cluster_table
    from pixelscope.publish.bundle import Bundle

    b = Bundle(out)
    if not (b.has("issues") and b.has("projection")) or "cluster" not in pq.read_schema(b.path("issues")).names:
        return False
    table = cluster_table(b.table("images"), b.table("projection"))
    if table.empty:
        return False
    with atomic_path(out / PARTS["clusters"].file) as tmp:
        pq.write_table(pa.Table.from_pandas(table, preserve_index=False), tmp)
    return True


def write_search(params: Params, store: Any, previous: Path, out: Path) -> bool:
    """search/ (pixelscope/compressed_index.py) over the bundle's readable images, kept from the last
    bundle when the ids and the store key are unchanged; False (no part) when the store lacks an image
    or there are fewer than two."""
    from pixelscope import compressed_index
    from pixelscope.neighbours import unit_vectors

    folder = out / PARTS["search"].file
    shutil.rmtree(folder, ignore_errors=True)
    ids = compressed_index.row_ids(out / PARTS["manifest"].file)
    if store is None or len(ids) < 2 or not set(ids) <= store.ids():  # one image: nothing to search among
        return False
    key = store.meta["key"]
    if compressed_index.reusable(previous, ids, key):
        compressed_index.keep(previous, folder)
        return True
    model = {"key": key, "model": store.meta.get("model"), "embed": params.embed.model_dump(mode="json"),
             "preprocess": params.preprocess.model_dump(mode="json")}
    compressed_index.write(folder, ids, unit_vectors(store, ids), model)
    return True


def stale_parts(paths: Any) -> dict[str, str]:
    """Parts that do not belong with the manifest being published (name -> why); they are left out
    of the bundle rather than shown beside numbers they do not match."""
    stale: dict[str, str] = {}
    issue_files = [f for f in (paths.issues, paths.issue_pairs, paths.neighbours, paths.issues_summary) if f.exists()]
    why = None
    if len({set_id_of(f) for f in issue_files}) > 1:
        why = "its files come from different runs of the issues step (one was interrupted): rerun `pixelscope issues`"
    elif paths.issues.exists() and not _describes(paths.issues, paths.manifest):
        why = "it describes another manifest: rerun `pixelscope issues`"
    if why:
        stale.update({name: why for name in ("issues", "pairs", "neighbours")})
    ledger = paths.curated / "curation.parquet"
    if ledger.exists() and not _describes(ledger, paths.manifest):
        stale["ledger"] = "it describes another manifest: rerun `pixelscope curate`"
    return stale


def _write_bundle(params: Params, project: Path, profile: Profile, bundle: dict[str, Any], stale: dict[str, str],
                  out: Path, progress: ProgressFn | None) -> tuple[dict[str, str], dict[str, int]]:
    paths = params.paths.under(project)
    results = project / params.validate_.results
    written = {"summary": str(out / "summary.json")}
    write_bytes_atomic(out / "summary.json", dumps(bundle, indent=1).encode())
    for name, src in (("profile", paths.profile), ("manifest", paths.manifest), ("issues", paths.issues),
                      ("pairs", paths.issue_pairs), ("neighbours", paths.neighbours),
                      ("drift", results / "drift.parquet"), ("validation", results / "results.json"),
                      ("ledger", paths.curated / "curation.parquet"), ("card", paths.curated / "README.md"),
                      ("history", paths.history)):
        if name not in stale:
            _copy(src, out, name, written)
    for name, src in (("objects", paths.objects), ("predicted_objects", paths.predicted_objects)):
        if src.exists() and pq.read_metadata(src).num_rows and "manifest" not in stale:
            _copy(src, out, name, written)
        else:  # no annotations (the stage writes empty tables): no part
            (out / PARTS[name].file).unlink(missing_ok=True)
    if write_box_evaluation(paths, out):
        written.update(box_metrics=str(out / PARTS["box_metrics"].file), box_errors=str(out / PARTS["box_errors"].file))
    if copy_examples(paths.history, project, out):
        written["examples"] = str(out / PARTS["examples"].file)
    add_model_outputs(params, project, out / PARTS["manifest"].file)
    reference = load_reference(params, project)
    if reference is not None:
        reference.save(out / PARTS["reference"].file)
        written["reference"] = str(out / PARTS["reference"].file)
    else:
        (out / PARTS["reference"].file).unlink(missing_ok=True)
    manifest = pq.read_table(paths.manifest, columns=["id", "path", "status"])
    store = current_store(paths.embeddings)
    projection = store.folder / "projection.parquet" if store is not None else None
    if projection is not None and projection.exists():
        ids = pq.read_table(projection, columns=["id"]).column(0).to_pylist()
        copy_projection(projection, manifest, reference_distances(profile, reference, store, ids), out / "projection.parquet")
        written["projection"] = str(out / "projection.parquet")
    else:
        (out / "projection.parquet").unlink(missing_ok=True)
    if not write_clusters(out):
        (out / PARTS["clusters"].file).unlink(missing_ok=True)
    else:
        written["clusters"] = str(out / PARTS["clusters"].file)
    if write_search(params, store, paths.publish / PARTS["search"].file, out):
        written["search"] = str(out / PARTS["search"].file)
    ok = [(i, str(paths.raw / p)) for i, p, s in zip(*(manifest.column(c).to_pylist() for c in ("id", "path", "status")))
          if s == "ok"]
    thumbs = update_thumbnails(out / PARTS["thumbnails"].file, ok, params.ingest.max_image_pixels,
                               params.ingest.workers, progress)
    written["thumbnails"] = str(out / PARTS["thumbnails"].file)
    return written, thumbs
