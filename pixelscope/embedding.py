"""The preprocess and embed steps: manifest images -> model-ready tensors -> embeddings.

Both are incremental: stores are keyed by image id (content hash), and only ids missing
from the store for the current preprocessing (tensors) or model + weights + preprocessing
(embeddings) are computed. The embed step reads the tensors when the preprocess step has
stored them all, else it decodes the files itself, decoding overlapping with inference.
Counts add up: images = reused + computed + errors (ingest errors are counted apart).
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from pixelscope.atomic import atomic_path, write_bytes_atomic
from pixelscope.config import Params
from pixelscope.loader import Batch, Item, batches, resolve_device
from pixelscope.store import CURRENT, ShardStore, StoreError
from pixelscope.transforms import Preprocess, build

ProgressFn = Callable[[int, int], None]


@dataclass
class StepCounts:
    store: str
    images: int  # distinct readable images in the manifest
    reused: int
    computed: int
    errors: int
    ingest_errors: int
    seconds: float
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def images_per_s(self) -> float:
        return self.computed / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": round(self.images_per_s, 1)}


def manifest_items(manifest: Path, raw: Path) -> tuple[list[Item], dict[str, str | None], int]:
    """Distinct readable images of the manifest (first path per id), their labels, and the error rows."""
    t = pq.read_table(manifest, columns=["id", "path", "status", "label"]).to_pydict()
    items: dict[str, Item] = {}
    labels: dict[str, str | None] = {}
    errors = 0
    for i, path, status, label in zip(t["id"], t["path"], t["status"], t["label"]):
        if status != "ok":
            errors += 1
        elif i not in items:
            items[i] = Item(i, str(raw / path))
            labels[i] = label
    return list(items.values()), labels, errors


def _row_shape(prep: Preprocess) -> tuple[int, ...]:
    return tuple(prep.apply(torch.zeros(3, 64, 64, dtype=torch.uint8)).shape)


def _save_errors(folder: Path, errors: list[dict[str, Any]]) -> None:
    write_bytes_atomic(folder / "errors.json", json.dumps(errors, indent=1).encode())


def _by_reason(errors: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(e["reason"] for e in errors).items()))


class _Buffered:
    """Collects rows and appends them to the store a shard at a time."""

    def __init__(self, store: ShardStore, shard_rows: int):
        self.store, self.shard_rows = store, shard_rows
        self.ids: list[str] = []
        self.rows: list[np.ndarray] = []

    def add(self, ids: list[str], rows: np.ndarray) -> None:
        if ids:
            self.ids += ids
            self.rows.append(rows)
        if len(self.ids) >= self.shard_rows:
            self.flush()

    def flush(self) -> None:
        if self.ids:
            self.store.add(self.ids, np.concatenate(self.rows))
            self.ids, self.rows = [], []


def _consume(stream: Iterator[Batch], out: _Buffered, compute: Callable[[torch.Tensor], np.ndarray], total: int,
             progress: ProgressFn | None) -> list[dict[str, Any]]:
    """Run compute over every batch into the store; return the error rows."""
    errors: list[dict[str, Any]] = []
    done = 0
    for batch in stream:
        errors += batch.errors
        out.add(batch.ids, compute(batch.images) if batch.ids else np.empty(0))
        done += len(batch.ids) + len(batch.errors)
        if progress:
            progress(done, total)
    out.flush()
    _save_errors(out.store.folder, errors)
    return errors


def preprocess_images(params: Params, manifest: Path, raw: Path, tensors: Path,
                      progress: ProgressFn | None = None) -> StepCounts:
    """Decode + transform every new image once; keep uint8 tensors (before normalize)."""
    t0 = time.perf_counter()
    prep = build(params.preprocess)
    items, _, ingest_errors = manifest_items(manifest, raw)
    store = ShardStore.create(tensors, prep.id, "uint8", _row_shape(prep), preprocess=prep.spec)
    have = store.ids()
    todo = [it for it in items if it.id not in have]
    errors = _consume(batches(todo, params.preprocess), _Buffered(store, params.embed.shard_rows),
                      lambda images: images.cpu().numpy(), len(todo), progress)
    return StepCounts(str(store.folder), len(items), len(items) - len(todo), len(todo) - len(errors), len(errors),
                      ingest_errors, time.perf_counter() - t0, _by_reason(errors), {"preprocess": prep.id})


def _stored_batches(store: ShardStore, todo: list[Item], batch_size: int) -> Iterator[Batch]:
    for i in range(0, len(todo), batch_size):
        chunk = todo[i:i + batch_size]
        ids = [it.id for it in chunk]
        yield Batch(ids, torch.from_numpy(store.get(ids)))


def embed_images(params: Params, manifest: Path, raw: Path, tensors: Path, embeddings: Path,
                 progress: ProgressFn | None = None) -> StepCounts:
    """Embed every image the store lacks; then the 2-D map of all the manifest's images."""
    from pixelscope.embed.infer import Embedder

    t0 = time.perf_counter()
    prep = build(params.preprocess)
    device = resolve_device(params.preprocess.device)
    embedder = Embedder(params.embed, prep, device)
    items, labels, ingest_errors = manifest_items(manifest, raw)
    store = ShardStore.create(embeddings, embedder.key, "float16", (embedder.dim,), model=embedder.model.name,
                              weights_sha256=embedder.model.weights_sha256, preprocess=prep.spec)
    have = store.ids()
    todo = [it for it in items if it.id not in have]
    source, tensor_store = "files", None
    try:
        tensor_store = ShardStore.open(tensors, prep.id)
        if todo and {it.id for it in todo} <= tensor_store.ids():
            source = "tensors"
    except StoreError:
        pass
    stream = (_stored_batches(tensor_store, todo, params.embed.batch_size) if source == "tensors"
              else batches(todo, params.preprocess, params.embed.batch_size))
    errors = _consume(stream, _Buffered(store, params.embed.shard_rows), embedder, len(todo), progress)
    seconds = time.perf_counter() - t0
    method = write_projection(store, items, labels, params.embed.projection)
    write_bytes_atomic(embeddings / CURRENT, json.dumps({"key": embedder.key, "model": embedder.model.name,
                                                        "dim": embedder.dim}, indent=1).encode())
    info = {"model": embedder.model.name, "key": embedder.key, "backend": embedder.backend, "device": device,
            "source": source, "projection": method}
    return StepCounts(str(store.folder), len(items), len(items) - len(todo), len(todo) - len(errors), len(errors),
                      ingest_errors, seconds, _by_reason(errors), info)


def write_projection(store: ShardStore, items: list[Item], labels: dict[str, str | None], method: str) -> str:
    """projection.parquet in the store folder: id, path, label, x, y for every embedded manifest image."""
    from pixelscope.embed.projection import project

    have = store.ids()
    ids = [it.id for it in items if it.id in have]
    xy, used = project(store.get(ids) if ids else np.empty((0, store.meta["row_shape"][0])), method)
    paths = {it.id: it.path for it in items}
    table = pa.table({"id": ids, "path": [paths[i] for i in ids], "label": [labels[i] for i in ids],
                      "x": xy[:, 0], "y": xy[:, 1]})
    table = table.replace_schema_metadata({"pixelscope.projection": used})
    with atomic_path(store.folder / "projection.parquet") as tmp:
        pq.write_table(table, tmp)
    return used
