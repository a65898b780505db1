"""Neighbour search with faiss, shared by the issue finders and the profile.

- Hashes: every pair within a Hamming radius of 64-bit codes (IndexBinaryFlat range search).
- Embeddings: one kNN graph of unit vectors (cosine), computed once and read by every finder
  (near-duplicates, label votes, outliers) and by the profile (kNN distances).

Up to `exact_max` vectors the graph is exact (IndexFlatIP). Above, candidates come from an
IVF index over a PCA projection to `reduce_dim` dimensions and are re-ranked with the full
vectors (faiss IndexRefine): similarities are always cosines of the full embeddings (at
float16, the store's precision), so thresholds calibrated on full vectors stay valid; only a
true neighbour the coarse search missed can be lost (the index used is reported; recall is
measured in benchmarks/bench_issues_scale.py). Nothing compares all pairs in Python.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import faiss
import numpy as np

from pixelscope.io.store import ShardStore

NPROBE = 32  # approximate search: IVF lists visited per query ... (bench_issues_scale.py: recall@10 ~0.95 at 100k)
REFINE_FACTOR = 3.0  # ... and candidates per wanted neighbour, re-ranked with the full vectors
BLOCK = 16_384  # rows per float32 block handed to faiss
WIDEN_MAX = 4096  # near-duplicate search stops widening a row's neighbour list here (approximate index)


def hash_bits(hexes: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hex hashes -> (uint8 (n, 8) codes, mask of rows that had a hash)."""
    have = np.array([h is not None and len(h) == 16 for h in hexes], dtype=bool)
    codes = np.zeros((len(hexes), 8), dtype=np.uint8)
    if have.any():
        ints = np.array([int(h, 16) for h in hexes if h is not None and len(h) == 16], dtype=np.uint64)
        codes[have] = ints.astype(">u8").view(np.uint8).reshape(-1, 8)
    return codes, have


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits that differ between rows of two (n, 8) uint8 code arrays."""
    return np.unpackbits(np.bitwise_xor(a, b), axis=1).sum(axis=1, dtype=np.int32)


def pair_cosines(x: np.ndarray, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Cosines of the pairs (i[k], j[k]) of unit vectors x, one float32 block at a time."""
    out = np.empty(len(i), np.float32)
    for s in range(0, len(i), BLOCK):
        a = x[i[s:s + BLOCK]].astype(np.float32)
        out[s:s + BLOCK] = np.einsum("nd,nd->n", a, x[j[s:s + BLOCK]].astype(np.float32))
    return out


Widen = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def hamming_pairs(codes: np.ndarray, max_distance: int, queries: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) within max_distance bits: (i, j, distance). With queries (one code per row of
    codes, e.g. the hash of each image mirrored): pairs whose query of one is within max_distance of the
    other's code, the smaller distance of the two directions kept."""
    if len(codes) < 2:
        return (np.empty(0, np.int64),) * 2 + (np.empty(0, np.int32),)
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, dist, idx = index.range_search(codes if queries is None else queries, max_distance + 1)  # exclusive
    rows = np.repeat(np.arange(len(codes)), np.diff(lims).astype(np.int64))
    idx = idx.astype(np.int64)
    if queries is None:
        keep = rows < idx
        return rows[keep], idx[keep], dist[keep]
    keep = rows != idx
    i, j, d = np.minimum(rows, idx)[keep], np.maximum(rows, idx)[keep], dist[keep]
    order = np.lexsort((d, j, i))  # per pair, the smaller distance first
    i, j, d = i[order], j[order], d[order]
    first = np.ones(len(i), bool)
    first[1:] = (i[1:] != i[:-1]) | (j[1:] != j[:-1])
    return i[first], j[first], d[first]


@dataclass
class Graph:
    """The k nearest other vectors of every vector, best first (the vector itself left out)."""

    sims: np.ndarray  # (n, k) float32 exact cosine; -inf where a row has fewer neighbours
    nbrs: np.ndarray  # (n, k) int64; -1 where a row has fewer neighbours
    index: str  # the search used, in words
    _x: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.float16))
    _search: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]] | None = field(repr=False, default=None)  # self included

    @property
    def k(self) -> int:
        return self.sims.shape[1]

    def distance(self, k: int) -> np.ndarray:
        """Mean cosine distance to each vector's k nearest others."""
        s = self.sims[:, :k]
        return 1.0 - np.where(np.isfinite(s), s, 0.0).mean(axis=1)

    def pairs(self, min_cosine: float, widen: Widen | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair (i < j) with cosine >= min_cosine: (i, j, cosine). Rows whose whole list
        is above the threshold are searched wider, so big groups of copies are complete. With widen
        (rows, their last neighbours, those cosines -> mask): only the rows it picks are widened,
        e.g. those whose last neighbour would still be a duplicate (a floor low enough to fill every
        list of a dataset of tiny look-alike images must not search each row 4,096 deep)."""
        n = len(self.sims)
        rows = np.repeat(np.arange(n), self.k)
        sims, nbrs = self.sims.ravel(), self.nbrs.ravel()
        widen = widen or (lambda r, nb, s: s >= min_cosine)
        full = np.flatnonzero(widen(np.arange(n), self.nbrs[:, -1], self.sims[:, -1])) if self.k else np.arange(n)
        if len(full):
            r2, n2, s2 = self._wider(full, widen)
            rows, nbrs, sims = np.concatenate([rows, r2]), np.concatenate([nbrs, n2]), np.concatenate([sims, s2])
        keep = (nbrs >= 0) & (sims >= min_cosine) & (rows != nbrs)
        i, j, s = np.minimum(rows, nbrs)[keep], np.maximum(rows, nbrs)[keep], sims[keep]
        _, first = np.unique(i * n + j, return_index=True)
        return i[first], j[first].astype(np.int64), s[first]

    def _wider(self, rows: np.ndarray, widen: Widen) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, k = len(self._x), self.k
        out_r, out_n, out_s = [], [], []
        assert self._search is not None  # set by knn_graph, which made this graph
        while len(rows) and k < n:
            k = min(n, max(2 * k, 64), WIDEN_MAX)
            sims, nbrs = self._search(self._x[rows], k)
            out_r.append(np.repeat(rows, sims.shape[1]))
            out_n.append(nbrs.ravel())
            out_s.append(sims.ravel())
            rows = rows[widen(rows, nbrs[:, -1], sims[:, -1])]
            if k >= WIDEN_MAX:
                break
        if not out_r:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        return np.concatenate(out_r), np.concatenate(out_n), np.concatenate(out_s)


def unit_vectors(store: ShardStore, ids: list[str]) -> np.ndarray:
    """The store's vectors of ids, L2-normalised, as float16 (the store's precision: half the
    memory of float32; searches convert one block at a time)."""
    x = store.get(ids)
    out = np.empty(x.shape, dtype=np.float16)
    for s in range(0, len(x), BLOCK):
        b = x[s:s + BLOCK].astype(np.float32)
        out[s:s + BLOCK] = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return out


def blocks(x: np.ndarray):
    """Contiguous float32 blocks of x (faiss' input type), BLOCK rows at a time."""
    for s in range(0, len(x), BLOCK):
        yield np.ascontiguousarray(x[s:s + BLOCK], dtype=np.float32)


Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def searcher(vectors: np.ndarray, exact_max: int, reduce_dim: int = 128) -> tuple[Search, str]:
    """search(queries, k) -> (cosines, rows) over unit vectors, best first: exact up to exact_max,
    else IVF over a PCA, re-ranked with the full vectors; and the search used, in words. The kNN
    graph of the issue finders and `pixelscope similar` both search through this."""
    n, d = vectors.shape
    if n > exact_max:
        return _approximate(vectors, reduce_dim)
    flat = faiss.IndexFlatIP(d)
    for b in blocks(vectors):
        flat.add(b)

    def search(q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        return flat.search(np.ascontiguousarray(q, dtype=np.float32), min(kk, n))

    return search, "exact inner product (faiss IndexFlatIP)"


def knn_graph(vectors: np.ndarray, k: int, exact_max: int, reduce_dim: int = 128) -> Graph:
    """The kNN graph of unit vectors: exact up to exact_max, else IVF over a PCA, re-ranked."""
    n = len(vectors)
    search, used = searcher(vectors, exact_max, reduce_dim)
    found = [_drop_self(*search(b, k + 1), k, start) for start, b in zip(range(0, n, BLOCK), blocks(vectors))]
    sims = np.concatenate([f[0] for f in found]) if found else np.empty((0, k), np.float32)
    nbrs = np.concatenate([f[1] for f in found]) if found else np.empty((0, k), np.int64)
    return Graph(sims, nbrs, used, vectors, search)


def _approximate(x: np.ndarray, reduce_dim: int):
    """Coarse candidates (IVF-Flat on a PCA to reduce_dim) re-ranked by exact inner products of the
    full vectors (faiss IndexRefine over a float16 copy: the embedding store's own precision)."""
    n, d = x.shape
    r = min(reduce_dim, d)
    nlist = max(1, int(math.sqrt(n)))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(r), r, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.min_points_per_centroid = 5  # no warning on small training sets
    ivf.nprobe = min(nlist, NPROBE)
    base = faiss.IndexPreTransform(faiss.PCAMatrix(d, r), ivf) if r < d else ivf
    index = faiss.IndexRefine(base, faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16,
                                                                 faiss.METRIC_INNER_PRODUCT))
    index.k_factor = REFINE_FACTOR
    sample = np.random.default_rng(0).choice(n, min(n, max(40 * nlist, 20_000)), replace=False)
    index.train(np.ascontiguousarray(x[np.sort(sample)], dtype=np.float32))
    for b in blocks(x):  # bounded temporaries: one float32 block (and its PCA) at a time
        index.add(b)

    def search(q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return index.search(np.ascontiguousarray(q, dtype=np.float32), min(k, n))

    about = (f"IVF-Flat (faiss, nlist {nlist}, nprobe {ivf.nprobe}) on a {r}-d PCA, {REFINE_FACTOR:g}x candidates "
             f"re-ranked by exact inner products of the full {d}-d vectors (float16)")
    return search, about


def _drop_self(sims: np.ndarray, nbrs: np.ndarray, k: int, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Leave each row's own index (start + row) out of its list, keeping k entries (padded with -1)."""
    n = len(sims)
    other = nbrs != (start + np.arange(n))[:, None]
    pos = np.cumsum(other, axis=1) - 1
    keep = other & (pos < k)
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    out_n = np.full((n, k), -1, dtype=np.int64)
    r, c = np.nonzero(keep)
    out_s[r, pos[r, c]] = sims[r, c]
    out_n[r, pos[r, c]] = nbrs[r, c]
    out_s[out_n < 0] = -np.inf
    return out_s, out_n
