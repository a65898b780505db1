"""Class balance: cap each class (curate.balance.max_per_class, or a target share of the set)
and choose which images survive the cap.

- diverse: greedy k-center on the embeddings (start from the best image by the duplicate
  comparator, then always add the image farthest from those kept), so the kept images cover
  the class instead of crowding one mode;
- quality: the best images by the comparator (issues.representative);
- random: a seeded random choice.
"""

from __future__ import annotations

import numpy as np


def caps(counts: dict[str, int], max_per_class: int | None, target_share: dict[str, float] | None) -> dict[str, int]:
    """Images to keep per class. A target share caps a class at share x the size the set can have
    while every listed class meets its share."""
    cap = {c: n for c, n in counts.items()}
    if max_per_class is not None:
        cap = {c: min(n, max_per_class) for c, n in cap.items()}
    if target_share:
        listed = {c: s for c, s in target_share.items() if c in cap and s > 0}
        if listed:
            total = min(cap[c] / s for c, s in listed.items())  # the largest set all shares allow
            cap.update({c: min(cap[c], int(round(total * s))) for c, s in listed.items()})
    return cap


def k_center(vectors: np.ndarray, k: int, first: int = 0) -> list[int]:
    """Greedy farthest-point selection of k rows (cosine distance on unit vectors), from `first`."""
    x = vectors.astype(np.float32)
    chosen = [first]
    dist = 1.0 - x @ x[first]
    dist[first] = -np.inf
    for _ in range(1, min(k, len(x))):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, 1.0 - x @ x[nxt])
        dist[chosen] = -np.inf
    return chosen


def choose(rows: np.ndarray, k: int, mode: str, rank: np.ndarray, vectors: np.ndarray | None, seed: int) -> np.ndarray:
    """k of rows (manifest row numbers) by mode. rank: comparator rank per manifest row (0 = best);
    vectors: one per row of `rows` (None: diverse falls back to quality)."""
    if k >= len(rows):
        return rows
    order = np.argsort(rank[rows], kind="stable")
    if mode == "quality" or vectors is None:
        return np.sort(rows[order[:k]])
    if mode == "random":
        return np.sort(np.random.default_rng(seed).choice(rows, k, replace=False))
    return np.sort(rows[order[k_center(vectors[order], k, first=0)]])
