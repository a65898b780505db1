"""Neighbour search with faiss, shared by the issue finders and the profile.

- Hashes: every pair within a Hamming radius of 64-bit codes (IndexBinaryFlat range search).
- Embeddings: one kNN graph of unit vectors (cosine), computed once and read by every finder
  (near-duplicates, label votes, outliers) and by the profile (kNN distances).

Up to `exact_max` vectors the graph is exact (IndexFlatIP). Above, candidates come from an
IVF index over a PCA projection to `reduce_dim` dimensions and are re-scored with the full
vectors: similarities are always exact cosines of the full embeddings, so thresholds
calibrated on full vectors stay valid; only a true neighbour the coarse search missed can be
lost (the index used is reported). Nothing compares all pairs in Python.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import faiss
import numpy as np

from pixelscope.io.store import ShardStore

CANDIDATES_EXTRA = 16  # approximate search: this many more candidates than k, re-scored exactly
WIDEN_MAX = 4096  # near-duplicate search stops widening a row's neighbour list here (approximate index)


def hash_bits(hexes: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hex hashes -> (uint8 (n, 8) codes, mask of rows that had a hash)."""
    have = np.array([h is not None and len(h) == 16 for h in hexes], dtype=bool)
    codes = np.zeros((len(hexes), 8), dtype=np.uint8)
    if have.any():
        ints = np.array([int(h, 16) for h, ok in zip(hexes, have) if ok], dtype=np.uint64)
        codes[have] = ints.astype(">u8").view(np.uint8).reshape(-1, 8)
    return codes, have


def hamming_pairs(codes: np.ndarray, max_distance: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs (i < j) within max_distance bits: (i, j, distance)."""
    if len(codes) < 2:
        return (np.empty(0, np.int64),) * 2 + (np.empty(0, np.int32),)  # type: ignore[return-value]
    index = faiss.IndexBinaryFlat(64)
    index.add(codes)
    lims, dist, idx = index.range_search(codes, max_distance + 1)  # radius is exclusive
    rows = np.repeat(np.arange(len(codes)), np.diff(lims).astype(np.int64))
    keep = rows < idx
    return rows[keep], idx[keep].astype(np.int64), dist[keep]


@dataclass
class Graph:
    """The k nearest other vectors of every vector, best first (the vector itself left out)."""

    sims: np.ndarray  # (n, k) float32 exact cosine; -inf where a row has fewer neighbours
    nbrs: np.ndarray  # (n, k) int64; -1 where a row has fewer neighbours
    index: str  # the search used, in words
    _x: np.ndarray = field(repr=False, default_factory=lambda: np.empty((0, 0), np.float32))
    _search: object = field(repr=False, default=None)  # (queries, k) -> (sims, nbrs), self included

    @property
    def k(self) -> int:
        return self.sims.shape[1]

    def distance(self, k: int) -> np.ndarray:
        """Mean cosine distance to each vector's k nearest others."""
        s = self.sims[:, :k]
        return 1.0 - np.where(np.isfinite(s), s, 0.0).mean(axis=1)

    def pairs(self, min_cosine: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every pair (i < j) with cosine >= min_cosine: (i, j, cosine). Rows whose whole list
        is above the threshold are searched wider, so big groups of copies are complete."""
        n = len(self.sims)
        rows = np.repeat(np.arange(n), self.k)
        sims, nbrs = self.sims.ravel(), self.nbrs.ravel()
        full = np.flatnonzero(self.sims[:, -1] >= min_cosine) if self.k else np.arange(n)
        if len(full):
            r2, n2, s2 = self._wider(full, min_cosine)
            rows, nbrs, sims = np.concatenate([rows, r2]), np.concatenate([nbrs, n2]), np.concatenate([sims, s2])
        keep = (nbrs >= 0) & (sims >= min_cosine) & (rows != nbrs)
        i, j, s = np.minimum(rows, nbrs)[keep], np.maximum(rows, nbrs)[keep], sims[keep]
        _, first = np.unique(i * n + j, return_index=True)
        return i[first], j[first].astype(np.int64), s[first]

    def _wider(self, rows: np.ndarray, min_cosine: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, k = len(self._x), self.k
        out_r, out_n, out_s = [], [], []
        while len(rows) and k < n:
            k = min(n, max(2 * k, 64), WIDEN_MAX)
            sims, nbrs = self._search(self._x[rows], k)  # type: ignore[operator]
            out_r.append(np.repeat(rows, sims.shape[1]))
            out_n.append(nbrs.ravel())
            out_s.append(sims.ravel())
            rows = rows[sims[:, -1] >= min_cosine]
            if k >= WIDEN_MAX:
                break
        if not out_r:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        return np.concatenate(out_r), np.concatenate(out_n), np.concatenate(out_s)


def unit_vectors(store: ShardStore, ids: list[str]) -> np.ndarray:
    """The store's vectors of ids, L2-normalised in place (float32), ready for cosine search."""
    x = np.ascontiguousarray(store.get(ids), dtype=np.float32)
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    return x


def knn_graph(vectors: np.ndarray, k: int, exact_max: int, reduce_dim: int = 128) -> Graph:
    """The kNN graph of unit vectors: exact up to exact_max, else IVF over a PCA, re-scored."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, d = x.shape
    if n <= exact_max:
        index = faiss.IndexFlatIP(d)
        index.add(x)

        def search(q: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
            sims, nbrs = index.search(q, min(kk, n))
            return sims, nbrs

        used = "exact inner product (faiss IndexFlatIP)"
    else:
        search, used = _approximate(x, reduce_dim)
    sims, nbrs = search(x, k + 1)
    sims, nbrs = _drop_self(sims, nbrs, k)
    return Graph(sims, nbrs, used, x, search)


def _approximate(x: np.ndarray, reduce_dim: int):
    """Coarse candidates (IVF-Flat on a PCA to reduce_dim) re-scored with the full vectors."""
    n, d = x.shape
    rng = np.random.default_rng(0)
    r = min(reduce_dim, d)
    if r < d:
        pca = faiss.PCAMatrix(d, r)
        pca.train(x[rng.choice(n, min(n, 20_000), replace=False)])
        y = pca.apply(x)
        faiss.normalize_L2(y)
    else:
        y = x
    nlist = max(1, int(math.sqrt(n)))
    nprobe = min(nlist, 16)
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(r), r, nlist, faiss.METRIC_INNER_PRODUCT)
    index.cp.min_points_per_centroid = 5  # silence faiss' warning on small training sets
    index.train(y[rng.choice(n, min(n, 40 * nlist), replace=False)])
    index.add(y)
    index.nprobe = nprobe

    def search(q_full: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        q = pca.apply(q_full) if r < d else np.ascontiguousarray(q_full)
        if r < d:
            faiss.normalize_L2(q)
        _, cand = index.search(q, min(n, k + CANDIDATES_EXTRA))
        sims = np.full(cand.shape, -np.inf, dtype=np.float32)
        for s in range(0, len(q_full), 256):  # exact cosines of the full vectors, in small blocks
            c = cand[s:s + 256]
            safe = np.maximum(c, 0)
            block = np.einsum("qd,qkd->qk", q_full[s:s + 256], x[safe])
            sims[s:s + 256] = np.where(c >= 0, block, -np.inf)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, order, 1), np.take_along_axis(cand, order, 1)

    about = (f"IVF-Flat (faiss, nlist {nlist}, nprobe {nprobe}) on a {r}-d PCA, candidates re-scored "
             f"on the full {d}-d vectors")
    return search, about


def _drop_self(sims: np.ndarray, nbrs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Leave each row's own index out of its list, keeping k entries (padded with -1)."""
    n = len(sims)
    other = nbrs != np.arange(n)[:, None]
    pos = np.cumsum(other, axis=1) - 1
    keep = other & (pos < k)
    out_s = np.full((n, k), -np.inf, dtype=np.float32)
    out_n = np.full((n, k), -1, dtype=np.int64)
    r, c = np.nonzero(keep)
    out_s[r, pos[r, c]] = sims[r, c]
    out_n[r, pos[r, c]] = nbrs[r, c]
    out_s[out_n < 0] = -np.inf
    return out_s, out_n
