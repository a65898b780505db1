"""Embedding statistics for the profile: small, constant-size, mergeable.

- mean vector and per-label centroids, from exact sums (merge = add);
- per label (and "(all)"): KLL sketches of the vector norm and of the cosine distance to
  the label's centroid;
- a KLL sketch of each image's kNN distance (mean cosine distance to its k nearest other
  images, the issue finders' outlier score), so a pinned reference fixes the outlier bar;
  after a merge, each part's distances are those within that part;
- a bottom-k sample of vectors: each image gets a fixed pseudo-random key from its id
  (its content hash), and the sample keeps the k smallest keys. Merging keeps the k
  smallest of the union, so merge(sample(A), sample(B)) == sample(A u B) exactly, and
  the sample is a uniform random one, ready for two-sample drift tests (MMD).

Distances are to the centroid of the data the statistics were built from (two passes
over the store). After a merge, each part's distances stay relative to its own centroid:
for parts of one dataset the centroids agree closely; rebuild to get exact ones.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pixelscope.errors import BadInput
from pixelscope.io.store import ShardStore
from pixelscope.profile.sketches import NumericSketch

ALL = "(all)"
OTHER = "(other)"
Chunks = Callable[[], Iterable[tuple[np.ndarray, np.ndarray, list[str | None]]]]  # ids, vectors, labels


def _enc(a: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")


def _dec(s: str, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(s), dtype=dtype).reshape(shape).copy()


def sample_keys(ids: Iterable[str]) -> np.ndarray:
    """Uniform keys in [0, 1) from sha256 ids: the same image always gets the same key."""
    return np.array([int(i[:13], 16) / 16 ** 13 for i in ids], dtype=np.float64)


class EmbeddingStats:
    def __init__(self, model: str, key: str, dim: int, kll_k: int = 100, sample_size: int = 512,
                 max_labels: int = 64):
        self.model, self.key, self.dim = model, key, dim
        self.kll_k, self.sample_size, self.max_labels = kll_k, sample_size, max_labels
        self.count: dict[str, int] = {}
        self.sums: dict[str, np.ndarray] = {}
        self.norms: dict[str, NumericSketch] = {}
        self.distances: dict[str, NumericSketch] = {}
        self.sample_ids: list[str] = []
        self.sample_labels: list[str] = []
        self.sample_keys = np.empty(0)
        self.sample = np.empty((0, dim), dtype=np.float16)
        self.knn: dict[str, Any] | None = None  # how the kNN distances were searched (k, index)
        self.knn_distance: NumericSketch | None = None

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def build(cls, model: str, key: str, dim: int, chunks: Chunks, **kw: Any) -> EmbeddingStats:
        """Two passes over (ids, vectors, labels) chunks: sums, then norms/distances/sample."""
        s = cls(model, key, dim, **kw)
        for _, vectors, labels in chunks():
            s._add_sums(vectors, s._slots(labels))
        centroids = {label: s.centroid(label) for label in s.count}
        for ids, vectors, labels in chunks():
            s._add_shape(ids, vectors, s._slots(labels), centroids)
        return s

    def _slots(self, labels: list[str | None]) -> list[str]:
        out = []
        for label in labels:
            label = "(none)" if label is None else str(label)
            if label not in self.count and len(self.count) - (ALL in self.count) >= self.max_labels:
                label = OTHER
            self.count.setdefault(label, 0)
            out.append(label)
        return out

    def _add_sums(self, vectors: np.ndarray, labels: list[str]) -> None:
        v = np.asarray(vectors, dtype=np.float64)
        for label in (ALL, *dict.fromkeys(labels)):
            rows = v if label == ALL else v[np.array(labels) == label]
            self.count[label] = self.count.get(label, 0) + len(rows)
            self.sums[label] = self.sums.get(label, np.zeros(self.dim)) + rows.sum(axis=0)

    def _add_shape(self, ids: np.ndarray, vectors: np.ndarray, labels: list[str],
                   centroids: dict[str, np.ndarray]) -> None:
        v = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(v, axis=1)
        lab = np.array(labels)
        for label in (ALL, *dict.fromkeys(labels)):
            mask = slice(None) if label == ALL else lab == label
            c = centroids[label]
            cos = v[mask] @ c / np.maximum(norms[mask] * np.linalg.norm(c), 1e-12)
            self.norms.setdefault(label, NumericSketch(self.kll_k)).update(norms[mask])
            self.distances.setdefault(label, NumericSketch(self.kll_k)).update(1.0 - cos)
        self._add_sample(list(ids), np.asarray(vectors, dtype=np.float16), labels, sample_keys(ids))

    def _add_sample(self, ids: list[str], vectors: np.ndarray, labels: list[str], keys: np.ndarray) -> None:
        all_keys = np.concatenate([self.sample_keys, keys])
        order = np.argsort(all_keys, kind="stable")[: self.sample_size]
        all_ids = self.sample_ids + list(ids)
        all_labels = self.sample_labels + list(labels)
        all_vec = np.concatenate([self.sample, vectors])
        self.sample_keys = all_keys[order]
        self.sample_ids = [all_ids[i] for i in order]
        self.sample_labels = [all_labels[i] for i in order]
        self.sample = all_vec[order]

    def add_knn_distances(self, distances: np.ndarray, k: int, index: str) -> None:
        self.knn = {"k": int(k), "index": index}
        self.knn_distance = NumericSketch(self.kll_k)
        self.knn_distance.update(np.asarray(distances, dtype=np.float64))

    # --- the verbs --------------------------------------------------------------------------

    def check_mergeable(self, other: EmbeddingStats) -> None:
        if (other.key, other.dim) != (self.key, self.dim):
            raise BadInput(f"cannot merge embedding statistics of different models ({self.key} vs {other.key})")

    def merge(self, other: EmbeddingStats) -> EmbeddingStats:
        self.check_mergeable(other)
        for label, n in other.count.items():
            room = len(self.count) - (ALL in self.count) < self.max_labels
            slot = label if label in self.count or room or label == ALL else OTHER
            self.count[slot] = self.count.get(slot, 0) + n
            self.sums[slot] = self.sums.get(slot, np.zeros(self.dim)) + other.sums[label]
            for mine, theirs in ((self.norms, other.norms), (self.distances, other.distances)):
                if label in theirs:
                    mine.setdefault(slot, NumericSketch(self.kll_k)).merge(theirs[label])
        self._add_sample(other.sample_ids, other.sample, other.sample_labels, other.sample_keys)
        if self.knn is not None and other.knn is not None and self.knn_distance is not None \
                and other.knn_distance is not None and self.knn["k"] == other.knn["k"]:
            self.knn_distance.merge(other.knn_distance)
            self.knn = {**self.knn, "merged": True}
        else:  # one side lacks them (or used another k): no sketch describes the union
            self.knn, self.knn_distance = None, None
        return self

    def centroid(self, label: str = ALL) -> np.ndarray:
        return self.sums[label] / max(1, self.count[label])

    @property
    def labels(self) -> list[str]:
        return sorted(k for k in self.count if k != ALL)

    def summary(self) -> dict[str, Any]:
        def one(label: str) -> dict[str, Any]:
            d, n = self.distances.get(label), self.norms.get(label)
            return {"images": self.count[label], "centroid_norm": round(float(np.linalg.norm(self.centroid(label))), 4),
                    "distance_p50": d and _r(d.quantiles([0.5])[0]), "distance_p90": d and _r(d.quantiles([0.9])[0]),
                    "norm_p50": n and _r(n.quantiles([0.5])[0])}
        return {"model": self.model, "key": self.key, "dim": self.dim, "sample": len(self.sample_ids),
                "all": one(ALL) if ALL in self.count else None, "labels": {label: one(label) for label in self.labels},
                "knn_distance": None if self.knn_distance is None else {
                    **(self.knn or {}), "p50": _r(self.knn_distance.quantiles([0.5])[0]),
                    "p99": _r(self.knn_distance.quantiles([0.99])[0])}}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model, "key": self.key, "dim": self.dim, "kll_k": self.kll_k,
            "sample_size": self.sample_size, "max_labels": self.max_labels,
            "labels": {label: {"count": self.count[label], "sum": _enc(self.sums[label]),
                               "norm": self.norms[label].to_dict() if label in self.norms else None,
                               "distance": self.distances[label].to_dict() if label in self.distances else None}
                       for label in sorted(self.count)},
            "sample": {"ids": self.sample_ids, "labels": self.sample_labels, "keys": self.sample_keys.tolist(),
                       "vectors": _enc(self.sample.astype(np.float16))},
            **({"knn": {**(self.knn or {}), "distance": self.knn_distance.to_dict()}}
               if self.knn_distance is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EmbeddingStats:
        s = cls(d["model"], d["key"], d["dim"], d["kll_k"], d["sample_size"], d["max_labels"])
        for label, e in d["labels"].items():
            s.count[label] = e["count"]
            s.sums[label] = _dec(e["sum"], "float64", (s.dim,))
            if e["norm"]:
                s.norms[label] = NumericSketch.from_dict(e["norm"])
            if e["distance"]:
                s.distances[label] = NumericSketch.from_dict(e["distance"])
        smp = d["sample"]
        s.sample_ids, s.sample_labels = list(smp["ids"]), list(smp["labels"])
        s.sample_keys = np.array(smp["keys"], dtype=np.float64)
        s.sample = _dec(smp["vectors"], "float16", (len(s.sample_ids), s.dim))
        if "knn" in d:  # profiles written before kNN distances were sketched have none
            s.knn = {k: v for k, v in d["knn"].items() if k != "distance"}
            s.knn_distance = NumericSketch.from_dict(d["knn"]["distance"])
        return s


def _r(x: float | None) -> float | None:
    return None if x is None else round(float(x), 4)


def stats_from_store(store: ShardStore, manifest: str | Path, kll_k: int = 100, sample_size: int = 512,
                     max_labels: int = 64) -> EmbeddingStats | None:
    """Statistics of the store's vectors for the readable images of this manifest (ids of
    earlier data versions that the store still holds are left out). None unless the store
    holds every one of them: statistics of a subset would not describe this dataset."""
    t = pq.read_table(manifest, columns=["id", "status", "label"]).to_pydict()
    labels = {i: lab for i, s, lab in zip(t["id"], t["status"], t["label"]) if s == "ok"}
    if not labels or not set(labels) <= store.ids():
        return None

    def chunks():
        seen: set[str] = set()
        for ids, rows in store.shards():
            keep = np.array([i in labels and i not in seen for i in ids], dtype=bool)
            seen.update(ids[keep])
            if keep.any():
                kept = ids[keep]
                yield kept, np.asarray(rows[keep]), [labels[i] for i in kept]

    return EmbeddingStats.build(store.meta["model"], store.meta["key"], store.meta["row_shape"][0], chunks,
                                kll_k=kll_k, sample_size=sample_size, max_labels=max_labels)
