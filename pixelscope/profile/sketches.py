"""Mergeable column sketches (Apache DataSketches + exact moments).

Each sketch has the same few verbs: update(values), merge(other), to_dict()/from_dict().
Memory and serialized size are bounded by the sketch parameters, not by the row count.
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import datasketches as ds
import numpy as np

from pixelscope.errors import BadInput


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _unb64(s: str) -> bytes:
    return base64.b64decode(s.encode("ascii"))


class NumericSketch:
    """KLL quantiles + exact count, nulls, min, max, mean and variance (Chan/Welford merge)."""

    kind = "numeric"

    def __init__(self, k: int = 200):
        self.kll = ds.kll_floats_sketch(k)
        self.count = 0
        self.nulls = 0
        self.min = math.inf
        self.max = -math.inf
        self.mean = 0.0
        self.m2 = 0.0

    def update(self, values: np.ndarray) -> None:
        """values: float array; NaN means null."""
        v = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(v)
        self.nulls += int(v.size - finite.sum())
        v = v[finite]
        if v.size == 0:
            return
        self.kll.update(v.astype(np.float32))
        self._merge_moments(int(v.size), float(v.min()), float(v.max()), float(v.mean()), float(((v - v.mean()) ** 2).sum()))

    def _merge_moments(self, n: int, lo: float, hi: float, mean: float, m2: float) -> None:
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.min = min(self.min, lo)
        self.max = max(self.max, hi)

    def merge(self, other: NumericSketch) -> None:
        self.nulls += other.nulls
        if other.count:
            self.kll.merge(other.kll)
            self._merge_moments(other.count, other.min, other.max, other.mean, other.m2)

    @property
    def variance(self) -> float:
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def std(self) -> float:
        return math.sqrt(self.variance)

    @property
    def rank_error(self) -> float:
        """Normalized rank error (single-sided, ~99% confidence) of the KLL quantiles."""
        return self.kll.normalized_rank_error(False)

    @property
    def resolution(self) -> float:
        """The rank error that applies: 0 while the sketch still holds every value (exact)."""
        return self.rank_error if self.kll.is_estimation_mode() else 0.0

    def quantiles(self, qs: Sequence[float] | np.ndarray) -> list[float | None]:
        if self.count == 0:
            return [None] * len(qs)
        return [float(x) for x in self.kll.get_quantiles(list(qs))]

    def cdf(self, split_points: Sequence[float] | np.ndarray) -> list[float]:
        return list(self.kll.get_cdf(list(split_points))) if self.count else []

    def pmf(self, split_points: Sequence[float]) -> list[float]:
        return list(self.kll.get_pmf(list(split_points))) if self.count else []

    def histogram(self, bins: int = 20) -> tuple[list[float], list[float]]:
        """Equal-width bin edges over [min, max] and the (approximate) count per bin."""
        if self.count == 0:
            return [], []
        if self.max <= self.min:
            return [self.min, self.max], [float(self.count)]
        edges = np.linspace(self.min, self.max, bins + 1).tolist()
        pmf = self.kll.get_pmf(edges[1:-1])
        return edges, [p * self.count for p in pmf]

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "count": self.count, "nulls": self.nulls,
            "min": self.min if self.count else None, "max": self.max if self.count else None,
            "mean": self.mean, "m2": self.m2, "kll": _b64(self.kll.serialize()),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NumericSketch:
        s = cls.__new__(cls)
        s.kll = ds.kll_floats_sketch.deserialize(_unb64(d["kll"]))
        s.count, s.nulls, s.mean, s.m2 = d["count"], d["nulls"], d["mean"], d["m2"]
        s.min = d["min"] if d["min"] is not None else math.inf
        s.max = d["max"] if d["max"] is not None else -math.inf
        return s


class DistinctSketch:
    """HLL distinct count for ID-like columns (hashes, paths, timestamps)."""

    kind = "distinct"

    def __init__(self, lg_k: int = 12):
        self.lg_k = lg_k
        self.hll = ds.hll_sketch(lg_k, ds.tgt_hll_type.HLL_4)
        self.count = 0
        self.nulls = 0

    def _update_strings(self, values: Sequence[str | None]) -> Counter[str]:
        counts = Counter(v for v in values if v is not None)
        n = sum(counts.values())
        self.count += n
        self.nulls += len(values) - n
        for v in counts:
            self.hll.update(v)
        return counts

    def update(self, values: Sequence[str | None]) -> None:
        self._update_strings(values)

    def _merge_hll(self, other: DistinctSketch) -> None:
        u = ds.hll_union(max(self.lg_k, other.lg_k))
        u.update(self.hll)
        u.update(other.hll)
        self.hll = u.get_result(ds.tgt_hll_type.HLL_4)

    def merge(self, other: DistinctSketch) -> None:
        self.count += other.count
        self.nulls += other.nulls
        self._merge_hll(other)

    @property
    def distinct(self) -> float:
        return float(self.hll.get_estimate())

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "nulls": self.nulls, "lg_k": self.lg_k,
                "hll": _b64(self.hll.serialize_compact())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DistinctSketch:
        s = cls.__new__(cls)
        s._load_common(d)
        return s

    def _load_common(self, d: dict[str, Any]) -> None:
        self.lg_k, self.count, self.nulls = d["lg_k"], d["count"], d["nulls"]
        self.hll = ds.hll_sketch.deserialize(_unb64(d["hll"]))


class CategoricalSketch(DistinctSketch):
    """Frequent items (with error bounds) + HLL distinct count."""

    kind = "categorical"

    def __init__(self, lg_max_k: int = 7, lg_k: int = 12):
        super().__init__(lg_k)
        self.fi = ds.frequent_strings_sketch(lg_max_k)

    def update(self, values: Sequence[str | None]) -> None:
        for v, n in self._update_strings(values).items():
            self.fi.update(v, n)

    def merge(self, other: CategoricalSketch) -> None:  # type: ignore[override]  # merges only its own kind
        super().merge(other)
        self.fi.merge(other.fi)

    def top(self, n: int = 10) -> list[tuple[str, int, int, int]]:
        """(value, estimate, lower bound, upper bound), most frequent first."""
        items = self.fi.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)
        return [tuple(i) for i in items[:n]]

    def frequencies(self) -> dict[str, int]:
        """Estimated count per tracked value (exact while distinct values < 0.75 * 2^lg_max_k)."""
        return {i[0]: int(i[1]) for i in self.fi.get_frequent_items(ds.frequent_items_error_type.NO_FALSE_NEGATIVES)}

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "kind": self.kind, "fi": _b64(self.fi.serialize())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CategoricalSketch:
        s = cls.__new__(cls)
        s._load_common(d)
        s.fi = ds.frequent_strings_sketch.deserialize(_unb64(d["fi"]))
        return s


Sketch = NumericSketch | CategoricalSketch | DistinctSketch
_BY_KIND: dict[str, type[NumericSketch] | type[CategoricalSketch] | type[DistinctSketch]] = {
    "numeric": NumericSketch, "categorical": CategoricalSketch, "distinct": DistinctSketch}


def sketch_from_dict(d: dict[str, Any]) -> Sketch:
    try:
        return _BY_KIND[d["kind"]].from_dict(d)
    except KeyError as e:
        raise BadInput(f"unknown sketch kind in profile: {d.get('kind')!r}") from e
