"""Neighbour search with faiss: Hamming radius over 64-bit hashes, cosine radius / kNN over embeddings.

Exact search (IndexBinaryFlat, IndexFlatIP) up to `exact_max` items; above that an HNSW
graph (approximate, the index used is reported), so nothing compares all pairs in Python.
"""

from __future__ import annotations

import faiss
import numpy as np


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


def cosine_pairs(vectors: np.ndarray, min_cosine: float, exact_max: int, k: int = 32
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """All pairs (i < j) with cosine >= min_cosine (unit vectors): (i, j, cosine, index used)."""
    n = len(vectors)
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32), "none"
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if n <= exact_max:
        index = faiss.IndexFlatIP(x.shape[1])
        index.add(x)
        lims, sim, idx = index.range_search(x, float(min_cosine) - 1e-6)
        rows = np.repeat(np.arange(n), np.diff(lims).astype(np.int64))
        used = "exact inner product (faiss IndexFlatIP)"
    else:
        sim, idx = knn(x, min(k, n - 1) + 1, exact_max)[:2]
        rows = np.repeat(np.arange(n), sim.shape[1])
        sim, idx = sim.ravel(), idx.ravel()
        keep = (idx >= 0) & (sim >= min_cosine)
        rows, sim, idx = rows[keep], sim[keep], idx[keep]
        used = f"HNSW (faiss IndexHNSWFlat, M=32, {k} neighbours)"
    keep = rows < idx
    return rows[keep], idx[keep].astype(np.int64), sim[keep], used


def knn(vectors: np.ndarray, k: int, exact_max: int) -> tuple[np.ndarray, np.ndarray, str]:
    """k nearest neighbours by inner product of every vector (itself included): (sims, ids, index used)."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    k = min(k, len(x))
    if len(x) <= exact_max:
        index = faiss.IndexFlatIP(x.shape[1])
        used = "exact inner product (faiss IndexFlatIP)"
    else:
        index = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efSearch = max(64, 2 * k)
        used = "HNSW (faiss IndexHNSWFlat, M=32)"
    index.add(x)
    sims, ids = index.search(x, k)
    return sims, ids, used
