"""The finder interface: what every issue finder reads, what it returns, and the registry.

A finder is a function `(data: Dataset, found: dict[str, Finding]) -> Finding`, registered
with `@finder("name")`. It reads the manifest (one row per file), the embeddings and
hashes when there are any, and the findings of finders that ran before it (leakage reads
the duplicate groups). It returns per-row columns — `<name>` (bool) and `<name>_score`
(float, higher = surer or worse) — the reasons per row, pairs (for duplicates and
leakage), and a summary (counts, thresholds used and where they came from). A finder that
cannot run (no labels, no embeddings) returns `Finding.skip(name, why)`; the others run.

    from pixelscope.issues import Finding, finder

    @finder("watermark")
    def watermark(data, found):
        flagged = data.frame["entropy"] > 7.5
        return Finding.flags("watermark", flagged, score=data.frame["entropy"] / 8, reason="high entropy")

then list the module under `issues.plugins` and the name under `issues.finders`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pixelscope.config import IssuesConfig, Params
from pixelscope.io.store import current_store
from pixelscope.neighbours import Graph, knn_graph, unit_vectors
from pixelscope.profile import Profile
from pixelscope.registry import Registry


@dataclass
class Embeddings:
    """L2-normalised vectors, one per distinct readable image id."""

    ids: list[str]
    vectors: np.ndarray  # (n, dim) unit norm, float16 as stored (`.astype(np.float32)` before heavy math)
    model: str

    def index_of(self) -> dict[str, int]:
        return {i: k for k, i in enumerate(self.ids)}


def load_embeddings(params: Params, project: str | Path, frame: pd.DataFrame) -> tuple[Embeddings | None, str]:
    """Unit vectors of every readable image, or None (and why) when the store lacks some. Read by the
    issues step and by curate (balance.keep: diverse)."""
    store = current_store(params.paths.under(project).embeddings)
    if store is None:
        return None, "no embedding store (run the embed step)"
    ids = sorted(set(frame.loc[frame["status"] == "ok", "id"]))
    missing = set(ids) - store.ids()
    if not ids or missing:
        return None, f"the embedding store lacks {len(missing)} of {len(ids)} images (run the embed step)"
    x = unit_vectors(store, ids)
    return Embeddings(ids, x, store.meta.get("model", "")), f"{store.meta.get('model')} ({x.shape[1]}-d)"


@dataclass
class Dataset:
    """What finders read. `frame` is the manifest (every row, errors included, in file order)."""

    frame: pd.DataFrame
    cfg: IssuesConfig
    embeddings: Embeddings | None = None
    reference: Profile | None = None
    reference_name: str = ""
    raw: Any = None  # the raw folder (Path), for finders that re-read files
    objects: pd.DataFrame | None = None  # the objects table (ingest.annotations), when it describes this manifest
    predicted: pd.DataFrame | None = None  # the model's boxes (ingest.annotations.predictions), likewise
    _graph: Graph | None = field(default=None, repr=False)

    def graph(self) -> Graph:
        """The kNN graph of the embeddings (rows = Embeddings.ids), searched once for all finders."""
        if self._graph is None:
            assert self.embeddings is not None
            self._graph = knn_graph(self.embeddings.vectors, self.cfg.graph_k, self.cfg.exact_index_max,
                                    self.cfg.reduce_dim)
        return self._graph

    @property
    def ok(self) -> pd.Series:
        return self.frame["status"] == "ok"

    def threshold(self, column: str, q: float) -> tuple[float | None, str]:
        """The q-quantile of a feature: from the reference profile when one is set (so adding a
        batch never moves the flags of images already there), else from this dataset."""
        why = "no reference set"
        if self.reference is not None and column in self.reference.columns:
            got = self.reference.quantiles(column, [q])[0]
            if got is not None:
                return float(got), f"reference {self.reference_name} q{q:g}"
            why = f"reference {self.reference_name} has no {column} values"
        values = self.frame.loc[self.ok, column].dropna() if column in self.frame else pd.Series(dtype=float)
        if values.empty:
            return None, "no values"
        return float(values.quantile(q)), f"this dataset q{q:g} ({why})"


    def knn_threshold(self, distances: np.ndarray, q: float) -> tuple[float, str]:
        """The q-quantile of kNN distances: the reference profile's sketch when it has one made with
        this model and issues.knn, else this dataset's."""
        ref = self.reference.embedding if self.reference is not None else None
        model = self.embeddings.model if self.embeddings is not None else None
        if ref is not None and ref.knn is not None and ref.knn_distance is not None and ref.knn["k"] == self.cfg.knn \
                and ref.model == model:
            value = ref.knn_distance.quantiles([q])[0]
            if value is not None:  # None: the reference sketch is empty
                return value, f"reference {self.reference_name} q{q:g}"
        why = "no reference set" if self.reference is None else "the reference has no kNN distances of this model and k"
        return float(np.quantile(distances, q)), f"this dataset q{q:g} ({why})"


@dataclass
class Finding:
    name: str
    columns: dict[str, pd.Series] = field(default_factory=dict)  # per manifest row
    reasons: dict[int, list[str]] = field(default_factory=dict)  # manifest row -> reasons
    pairs: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    shared: dict[str, Any] = field(default_factory=dict, repr=False)  # for later finders, never written

    @classmethod
    def skip(cls, name: str, why: str) -> Finding:
        return cls(name, summary={"skipped": why}, skipped=why)

    @classmethod
    def flags(cls, name: str, flagged: pd.Series, score: pd.Series, reason: str | Callable[[int], str],
              **summary: Any) -> Finding:
        """The common case: one bool column and its score, a reason for each flagged row."""
        flagged = flagged.fillna(False).astype(bool)
        rows = flagged.index[flagged]
        why = (lambda r: reason) if isinstance(reason, str) else reason
        return cls(name, {name: flagged, f"{name}_score": score.astype(float).where(score.notna(), 0.0)},
                   {int(r): [why(int(r))] for r in rows}, summary={"flagged": int(flagged.sum()), **summary})

    @property
    def flagged(self) -> int:
        col = self.columns.get(self.name)
        return int(col.sum()) if col is not None else 0


Finder = Callable[[Dataset, dict[str, Finding]], Finding]
FINDERS: Registry[Finder] = Registry("issue finder", plugins_key="issues.plugins")


def finder(name: str, *, replace: bool = False, _builtin: bool = False) -> Callable[[Finder], Finder]:
    """Register an issue finder. A name is taken once: replacing one needs replace=True."""
    def register(fn: Finder) -> Finder:
        return FINDERS.register(name, fn, builtin=_builtin, replace=replace)
    return register
