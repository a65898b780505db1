"""The issues step: manifest (+ embeddings, + reference profile) -> issues.parquet (one row per
file: `<issue>`, `<issue>_score`, duplicate group, representative, suggested label, reasons, and
the embedding map's `cluster`),
issues_pairs.parquet (a, b, kind, signal, distance, similarity, cross_split) and issues.json
(counts per finder, thresholds and where they came from, dataset-level findings)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.annotations.objects import objects_of
from pixelscope.clusters import read_clusters
from pixelscope.config import Params
from pixelscope.errors import ConfigError, InputMissing
from pixelscope.io.atomic import SET_KEY, atomic_set, content_set_id
from pixelscope.io.store import current_store
from pixelscope.io.values import plain
from pixelscope.issues import FINDERS, Dataset, Finding, registered
from pixelscope.issues.base import load_embeddings
from pixelscope.pipeline.steps import ProgressFn, StepResult, write_metrics
from pixelscope.profile.reference import load_reference

STAGE = "issues"
KEYS = ["id", "path", "label", "split", "status"]


def load_dataset(params: Params, project: str | Path) -> tuple[Dataset, str]:
    paths = params.paths.under(project)
    if not paths.manifest.exists():
        raise InputMissing(f"manifest not found: {paths.manifest} (run `pixelscope ingest` first)")
    frame = pq.read_table(paths.manifest).to_pandas()
    embeddings, about = load_embeddings(params, project, frame)
    reference = load_reference(params, Path(project))
    v = params.validate_
    name = str(v.reference or v.reference_rev or "")
    return Dataset(frame, params.issues, embeddings, reference, name, paths.raw,
                   objects=objects_of(paths.objects, frame), predicted=objects_of(paths.predicted_objects, frame)), about


def run_finders(data: Dataset, names: list[str], seconds: dict[str, float] | None = None) -> dict[str, Finding]:
    """Run the named finders in order (each sees the findings before it); times go to `seconds`."""
    registered()
    unknown = [n for n in names if n not in FINDERS]
    if unknown:
        raise ConfigError(f"issues.finders: unknown finder(s) {unknown} (registered: {', '.join(FINDERS.names())}; "
                          "a plugin's @finder module goes under issues.plugins)")
    found: dict[str, Finding] = {}
    for name in names:
        t0 = time.perf_counter()
        found[name] = FINDERS[name](data, found)
        if seconds is not None:  # the first finder that needs the kNN graph pays for it
            seconds[name] = round(time.perf_counter() - t0, 3)
    return found


def issues_table(data: Dataset, found: dict[str, Finding]) -> pa.Table:
    frame = data.frame
    out = frame[KEYS].copy()
    reasons: dict[int, list[str]] = {}
    for f in found.values():
        for col, values in f.columns.items():
            out[col] = values.reindex(frame.index)
        for r, why in f.reasons.items():
            reasons.setdefault(r, []).extend(why)
    out["reasons"] = pd.Series({r: "; ".join(w) for r, w in reasons.items()}, dtype="string").reindex(frame.index)
    return pa.Table.from_pandas(out, preserve_index=False)


def with_clusters(table: pa.Table, params: Params, project: str | Path) -> pa.Table:
    """The map's `cluster` of each row (embed/projection.py), so filters and slices can use it."""
    store = current_store(params.paths.under(project).embeddings)
    found = read_clusters(store.folder, table.column("id").to_pandas()) if store is not None else None
    return table if found is None else table.append_column(pa.field("cluster", pa.int32()), found)


def pairs_table(data: Dataset, found: dict[str, Finding]) -> pa.Table:
    frame = data.frame
    rows = [p for f in found.values() for p in f.pairs]
    a = [p["a"] for p in rows]
    b = [p["b"] for p in rows]
    split_a, split_b = frame["split"].iloc[a].reset_index(drop=True), frame["split"].iloc[b].reset_index(drop=True)
    cross = (split_a.notna() & split_b.notna() & (split_a != split_b)).tolist()
    return pa.table({
        "a": pa.array(frame["path"].to_numpy()[a].tolist(), pa.string()),
        "b": pa.array(frame["path"].to_numpy()[b].tolist(), pa.string()),
        "a_id": pa.array(frame["id"].to_numpy()[a].tolist(), pa.string()),
        "b_id": pa.array(frame["id"].to_numpy()[b].tolist(), pa.string()),
        "kind": pa.array([p["kind"] for p in rows], pa.string()),
        "signal": pa.array([p["signal"] for p in rows], pa.string()),
        # null where a signal gave no evidence (a hash-only pair has no cosine, and so on)
        "distance": pa.array([p["distance"] for p in rows], pa.float64(), from_pandas=True),
        "similarity": pa.array([p["similarity"] for p in rows], pa.float64(), from_pandas=True),
        "cross_split": pa.array(cross, pa.bool_()),
    })


NEIGHBOURS_KEPT = 10  # per image, for the dashboard's detail view


def neighbours_table(data: Dataset) -> pa.Table:
    """Each embedded image's nearest others (ids, cosine), best first, from the graph the
    finders searched (searched here when no finder needed it); empty without embeddings."""
    schema = pa.schema([("id", pa.string()), ("neighbours", pa.list_(pa.string())),
                        ("similarities", pa.list_(pa.float32()))])
    if data.embeddings is None or not data.embeddings.ids:
        return schema.empty_table()
    g = data.graph()
    ids = np.asarray(data.embeddings.ids, dtype=object)
    k = min(NEIGHBOURS_KEPT, g.k)
    nbrs, sims = g.nbrs[:, :k], g.sims[:, :k]
    valid = nbrs >= 0
    return pa.table({
        "id": pa.array(data.embeddings.ids, pa.string()),
        "neighbours": pa.array([ids[r[v]].tolist() for r, v in zip(nbrs, valid)], pa.list_(pa.string())),
        "similarities": pa.array([s[v].tolist() for s, v in zip(sims, valid)], pa.list_(pa.float32())),
    }, schema=schema)



def issues_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Run the finders of issues.finders over the manifest; write the issues table, pairs and summary."""
    t0 = time.perf_counter()
    FINDERS.load_plugins(params.issues.plugins)
    data, about_embeddings = load_dataset(params, project)
    timings: dict[str, float] = {}
    found = run_finders(data, params.issues.finders, timings)
    paths = params.paths.under(project)
    summary = {"files": len(data.frame), "embeddings": about_embeddings,
               "reference": data.reference_name or None,
               "finders": {name: {**f.summary, **({"skipped": f.skipped} if f.skipped else {})}
                           for name, f in found.items()}}
    # the four outputs are one set: all written before any is renamed in, each stamped with the set id
    tables = [with_clusters(issues_table(data, found), params, project), pairs_table(data, found), neighbours_table(data)]
    set_id = content_set_id(tables, [json.dumps(plain(summary), sort_keys=True).encode()])
    with atomic_set([paths.issues, paths.issue_pairs, paths.neighbours, paths.issues_summary]) as tmps:
        for table, tmp in zip(tables, tmps):
            pq.write_table(table.replace_schema_metadata({**(table.schema.metadata or {}), SET_KEY: set_id}), tmp)
        tmps[3].write_bytes(json.dumps({**plain(summary), SET_KEY: set_id}, indent=1).encode())
    seconds = time.perf_counter() - t0
    flagged = {name: f.flagged for name, f in found.items() if not f.skipped and f.columns}
    counts = {"files_seen": len(data.frame), **flagged}
    metrics = {**counts, "seconds": round(seconds, 3), "finder_seconds": timings}  # times: metrics, not the outputs
    notes = [f"{name}: {f.flagged} flagged" if not f.skipped else f"{name}: skipped ({f.skipped})"
             for name, f in found.items() if f.columns or f.skipped]
    ds = found.get("dataset")
    if ds is not None and not ds.skipped:
        imb = ds.summary["imbalance"]
        notes.append(f"dataset: rarest class {imb['rarest']!r} {imb['rarest_share']:.1%} of images"
                     + (" (imbalanced)" if imb["imbalanced"] else "")
                     + (f"; features that alone predict the label: {', '.join(ds.summary['spurious_features'])}"
                        if ds.summary["spurious_features"] else ""))
    total = int(sum(flagged.values()))
    result = StepResult(stage=STAGE, summary=f"issues in {len(data.frame)} files in {seconds:.1f}s: {total} flags",
                        seconds=seconds, counts=counts, metrics=metrics, details=plain(summary), notes=notes,
                        outputs={"issues": str(paths.issues), "pairs": str(paths.issue_pairs),
                                 "summary": str(paths.issues_summary), "neighbours": str(paths.neighbours)})
    return write_metrics(params, project, result)
