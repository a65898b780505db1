"""The profile step: manifest (+ embedding store) -> profile file.

plan -> parts -> finish: the manifest's row groups are cut into parts of about one ingest
shard; each part is sketched on its own (a flow maps them over tasks, the plain step loops)
and the parts' sketches are merged, so parts never need to meet.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

import pyarrow.parquet as pq

from pixelscope.config import IssuesConfig, Params
from pixelscope.errors import InputMissing
from pixelscope.io.manifest import column_kinds
from pixelscope.io.store import CURRENT, ShardStore, current_store
from pixelscope.pipeline.steps import ProgressFn, StepResult, write_metrics
from pixelscope.profile.embedding import EmbeddingStats, stats_from_store
from pixelscope.profile.objects import object_profile
from pixelscope.profile.outputs import Outputs, model_outputs
from pixelscope.profile.profile import Profile, merge_all

STAGE = "profile"


def plan_profile(params: Params, project: str | Path) -> list[list[int]]:
    """Row-group ranges of the manifest, about pipeline.shard_size rows each."""
    manifest = params.paths.under(project).manifest
    if not manifest.exists():
        raise InputMissing(f"manifest not found: {manifest} (run `pixelscope ingest` first)")
    column_kinds(manifest)  # a pixelscope manifest, or BadInput naming it, before any join reads its columns
    groups = pq.ParquetFile(manifest).metadata.num_row_groups
    per = max(1, params.pipeline.shard_size // params.ingest.chunk_rows)
    return [list(range(i, min(groups, i + per))) for i in range(0, groups, per)] or [[]]


def outputs_for(params: Params, project: str | Path) -> Outputs | None:
    """The models' columns to join: semantic (from the embed store) and profile.predictions.
    Read once per process for the same files (every part of a run joins the same table)."""
    paths = params.paths.under(project)
    predictions = Path(project) / params.profile.predictions if params.profile.predictions else None
    stamps = tuple(_stamp(p) for p in (paths.manifest, paths.embeddings / CURRENT, predictions, paths.object_images))
    return _outputs(paths.manifest, paths.embeddings, predictions, paths.object_images, stamps)


def _stamp(path: Path | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@lru_cache(maxsize=2)
def _outputs(manifest: Path, embeddings: Path, predictions: Path | None, object_images: Path,
             stamps: tuple) -> Outputs | None:
    return model_outputs(manifest, embeddings, predictions, object_images)


def profile_part(row_groups: list[int], params: Params, project: str | Path) -> Profile:
    """Sketches of some row groups of the manifest (with the models' columns joined)."""
    return Profile.from_manifest(params.paths.under(project).manifest, params.profile, row_groups=row_groups,
                                 outputs=outputs_for(params, project))


def finish_profile(params: Params, project: str | Path, parts: Iterable[Profile], t0: float) -> StepResult:
    """Merge the parts, add the embedding statistics (when the embed step stored every image),
    sketch the kNN distances, write the profile and the metrics."""
    paths = params.paths.under(project)
    profile = merge_all(parts)
    store = current_store(paths.embeddings)
    if store is not None:
        profile.embedding = stats_from_store(store, paths.manifest, params.profile.segment_kll_k,
                                             params.embed.sample_size, params.profile.max_segment_values)
        if profile.embedding is not None:
            add_knn_distances(profile.embedding, store, paths.manifest, params.issues)
    if paths.objects.exists():  # the objects stage's table, when it describes this manifest
        t = pq.read_table(paths.manifest, columns=["id", "status"]).to_pydict()
        profile.objects = object_profile(paths.objects, params.profile,
                                         {i for i, s in zip(t["id"], t["status"]) if s == "ok"})
    size = profile.save(paths.profile)
    seconds = time.perf_counter() - t0
    outputs = outputs_for(params, project)
    counts = {"files_seen": profile.files_seen, "ok": profile.ok, "errors": profile.errors,
              **(outputs.counts if outputs is not None else {}),
              **({"objects": profile.objects.ok} if profile.objects is not None else {})}
    metrics = {**counts, "bytes": size, "seconds": round(seconds, 3)}
    summary = (f"profiled {profile.files_seen} files ({profile.ok} ok, {profile.errors} errors) in {seconds:.2f}s; "
               f"{paths.profile} ({size / 1024:,.0f} KiB)")
    notes = []
    if outputs is not None and "predictions" in outputs.counts:
        c = outputs.counts
        summary += (f"; predictions: {c['images_with_prediction']} images with one, {c['images_without_prediction']} "
                    f"without; {c['predictions_unmatched']} of {c['predictions']} entries match no image")
        if c["predictions_unmatched"]:
            notes.append(f"{c['predictions_unmatched']} predictions match no manifest image (by "
                         f"{outputs.key}), e.g. {outputs.unmatched[:3]}")
    result = StepResult(stage=STAGE, summary=summary, seconds=seconds, counts=counts,
                        outputs={"profile": str(paths.profile)}, metrics=metrics, notes=notes,
                        details={"manifest": str(paths.manifest), "bytes": size,
                                 "embedding": profile.embedding is not None,
                                 "outputs": sorted(outputs.kinds) if outputs is not None else [],
                                 "unmatched_predictions": outputs.unmatched if outputs is not None else []})
    return write_metrics(params, project, result)


def add_knn_distances(stats: EmbeddingStats, store: ShardStore, manifest: Path, cfg: IssuesConfig) -> None:
    """Sketch every image's kNN distance with the issue finders' k and search (pixelscope.neighbours),
    so that a pinned reference fixes the outlier threshold."""
    from pixelscope.neighbours import knn_graph, unit_vectors  # faiss: only when there are embeddings

    t = pq.read_table(manifest, columns=["id", "status"]).to_pydict()
    ids = sorted({i for i, s in zip(t["id"], t["status"]) if s == "ok"})
    if len(ids) <= cfg.knn:
        return
    graph = knn_graph(unit_vectors(store, ids), cfg.graph_k, cfg.exact_index_max, cfg.reduce_dim)
    stats.add_knn_distances(graph.distance(cfg.knn), cfg.knn, graph.index)


def profile_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Manifest (+ embeddings, when the embed step ran) -> profile file (mergeable sketches)."""
    t0 = time.perf_counter()
    parts = plan_profile(params, project)
    return finish_profile(params, project, (profile_part(rg, params, project) for rg in parts), t0)
