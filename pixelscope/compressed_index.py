"""The compressed search index a bundle carries: "more like this" without the embedding store.

The embedding store holds 2.5 KB per image (1280 float16); a bundle is meant to be small and to
travel. So publish writes `search/` beside the other parts:

- `index.faiss` — a faiss IndexPQ over the unit vectors: 64 sub-quantizers of 2^nbits centroids,
  inner product. 8 bits (64 bytes per image) from 256 images up; below that k-means has too few
  points for 256 centroids and nbits = floor(log2(n)). A dimension that 64 does not divide is
  zero-padded first (inner products unchanged). faiss' own binary format (no pickle).
- `model.json` — the store key of the vectors (model, weights, preprocessing: a query file is
  embedded only by the same key), the model's embed and preprocess settings (to embed a query
  with no project at hand), the dimension, the index in words, its size, and the sha256 of the
  row ids: the rows are the bundle manifest's readable ids, sorted (the embedded set, as the
  issue finders read it), so no id list is stored twice; a manifest that does not give the same
  hash is a clear error, never a wrong answer.

Size: 64 bytes of codes per image plus one codebook (256 centroids of the whole dimension in
float32: 1.3 MB at 1280-d), so about 77 bytes per image at 100,000 images and 64.1 at 10 M; a
small set pays mostly codebook (the demo's 412 images: about 3.2 KB each, 1.3 MB in all).

Search takes the max(1,000, 10 k) nearest by the codes (asymmetric distance: the query stays
exact) and re-ranks them: by the exact vectors when the project's store is at hand, else by the
cosine to each candidate's decoded vector (the codes shrink a vector's length, so the raw inner
product understates a copy's similarity: 0.82 for a byte copy), and the result says which.
Measured (benchmarks/bench_compressed_index.py) on 2,440 real embeddings (crops of
../shared/corpus, 200 held-out queries): recall@10 0.82 by the codes' inner product, 0.88 by the
decoded cosine (top-1 similarity off by 0.026 on average), 1.000 re-ranked by the exact vectors.
At 100,000 synthetic vectors (a hard case: near-equal similarities inside each of 200 groups):
0.21 by the codes, 0.999 re-ranked; 14 ms a refined query, 0.09 s to load, 8.6 s to build. So
the bundle alone is a good "more like this" on real embeddings, and the store makes it exact.
Why PQ: at 64 bytes it kept more true neighbours than PCA to 64 or 96 dimensions with 8-bit
scalars (0.73 / 0.78), and trains in seconds (OPQ did not finish in 10 minutes on 2 cores).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.errors import BadInput, InputMissing
from pixelscope.io.atomic import atomic_path, write_bytes_atomic
from pixelscope.io.values import dumps

SUBQUANTIZERS = 64  # bytes per image at 8 bits
TRAIN_MAX = 20_000  # vectors k-means sees (78 per centroid at 8 bits)
CANDIDATES = 1000  # at least this many candidates are re-ranked (bench_compressed_index.py: 100 kept 0.63 of the
# true top 10 at 100,000 synthetic vectors, 300 kept 0.94, 1,000 kept 0.999, at 14 ms a query)
FILES = ("index.faiss", "model.json")


@dataclass
class Found:
    ids: list[str]
    similarities: list[float]
    how: str  # the search, in words


def nbits_for(n: int) -> int:
    return max(1, min(8, int(math.log2(max(n, 2)))))


def build(vectors: np.ndarray) -> faiss.Index:
    """A trained and filled IndexPQ (padded when 64 does not divide the dimension) over unit vectors."""
    n, d = vectors.shape
    padded = -(-d // SUBQUANTIZERS) * SUBQUANTIZERS
    pq_index = faiss.IndexPQ(padded, SUBQUANTIZERS, nbits_for(n), faiss.METRIC_INNER_PRODUCT)
    pq_index.pq.cp.min_points_per_centroid = 1  # small sets are expected: no warning
    index: faiss.Index = pq_index if padded == d else faiss.IndexPreTransform(
        faiss.RemapDimensionsTransform(d, padded, False), pq_index)  # type: ignore[arg-type]  # (d_in, d_out, uniform): an overload the stubs lack
    sample = np.sort(np.random.default_rng(0).choice(n, min(n, TRAIN_MAX), replace=False))
    index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
    for s in range(0, n, 16_384):
        index.add(np.ascontiguousarray(vectors[s:s + 16_384], dtype=np.float32))
    return index


def describe(index: faiss.Index, n: int) -> str:
    pq_index: Any = faiss.downcast_index(index.index if isinstance(index, faiss.IndexPreTransform) else index)
    return (f"faiss IndexPQ ({pq_index.pq.M} sub-quantizers x {pq_index.pq.nbits} bits, "
            f"{pq_index.pq.code_size} bytes per image, {n:,} images)")


def ids_sha256(ids: list[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def row_ids(manifest: Path) -> list[str]:
    """The rows of the index: a manifest's readable ids, sorted, once each."""
    t = pq.read_table(manifest, columns=["id", "status"])
    return sorted({i for i, s in zip(t.column("id").to_pylist(), t.column("status").to_pylist()) if s == "ok"})


def write(folder: Path, ids: list[str], vectors: np.ndarray, model: dict[str, Any]) -> dict[str, Any]:
    """search/ for these ids (sorted; rows of vectors: unit, any float dtype); returns model.json's content."""
    folder.mkdir(parents=True, exist_ok=True)
    index = build(vectors)
    with atomic_path(folder / "index.faiss") as tmp:
        faiss.write_index(index, str(tmp))
    size = (folder / "index.faiss").stat().st_size
    meta = {**model, "dim": int(vectors.shape[1]), "images": len(ids), "ids_sha256": ids_sha256(ids),
            "index": describe(index, len(ids)), "index_bytes": size,
            "bytes_per_image": round(size / max(len(ids), 1), 1)}
    write_bytes_atomic(folder / "model.json", dumps(meta, indent=1).encode())
    return meta


def reusable(previous: Path, ids: list[str], key: str) -> bool:
    """The last bundle's index covers exactly these ids from the same store key (publish keeps it)."""
    try:
        meta = json.loads((previous / "model.json").read_text())
        return (meta.get("key") == key and meta.get("ids_sha256") == ids_sha256(ids)
                and all((previous / f).is_file() for f in FILES))
    except (OSError, ValueError):
        return False


def keep(previous: Path, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        try:
            os.link(previous / name, folder / name)
        except OSError:  # another filesystem: copy
            shutil.copyfile(previous / name, folder / name)


class CompressedIndex:
    """A bundle's search/ folder and the ids of its rows, from the bundle's manifest (a file that is
    missing, unreadable or does not match is a clear error)."""

    def __init__(self, bundle: str | Path):
        self.folder = Path(bundle) / "search"
        if not (self.folder / "model.json").is_file():
            raise InputMissing(f"no search index in {bundle} (run `pixelscope embed` and `pixelscope publish`)")
        try:
            self.model: dict[str, Any] = json.loads((self.folder / "model.json").read_text())
            self.ids = row_ids(Path(bundle) / "manifest.parquet")
            self.index = faiss.read_index(str(self.folder / "index.faiss"))
        except (OSError, ValueError, KeyError, RuntimeError, pa.ArrowInvalid) as e:
            raise BadInput(f"{self.folder}: not a pixelscope search index ({type(e).__name__}: "
                           f"{str(e).splitlines()[0] if str(e) else ''})") from None
        if ids_sha256(self.ids) != self.model.get("ids_sha256") or self.index.ntotal != len(self.ids):
            raise BadInput(f"{self.folder}: the index holds {self.index.ntotal:,} images, not the "
                           f"{len(self.ids):,} readable ones of the bundle's manifest: republish")
        if self.index.d != self.model.get("dim"):
            raise BadInput(f"{self.folder}: the index is {self.index.d}-d, model.json says {self.model.get('dim')}-d")
        self.row = {i: r for r, i in enumerate(self.ids)}

    def vector(self, image_id: str) -> np.ndarray:
        """An indexed image's vector as the codes give it back (approximate), unit length."""
        v = np.asarray(self.index.reconstruct(self.row[image_id]), dtype=np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def search(self, query: np.ndarray, k: int, store: Any = None) -> Found:
        """The k nearest ids to a unit query; re-ranked by exact vectors when a store holding them is given."""
        want = min(len(self.ids), max(CANDIDATES, 10 * k))
        _, found = self.index.search(np.ascontiguousarray(query[None], dtype=np.float32), want)
        rows = found[0][found[0] >= 0]
        if store is not None:
            x = store.get([self.ids[r] for r in rows]).astype(np.float32)
            how = f"{len(rows)} candidates re-ranked by the exact vectors of the store"
        else:
            x = self.index.reconstruct_batch(rows)
            how = f"{len(rows)} candidates re-ranked by the cosine to their decoded vectors (approximate)"
        cos = (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)) @ query.astype(np.float32)
        order = np.argsort(-cos, kind="stable")[:k]
        return Found([self.ids[rows[o]] for o in order], [float(cos[o]) for o in order], f"{self.model['index']}; {how}")


__all__ = ["CompressedIndex", "Found", "build", "keep", "reusable", "write"]
