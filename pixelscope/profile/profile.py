"""The dataset profile: mergeable sketches per column, overall and per segment.

    profile = Profile.empty(kinds, cfg)
    profile.update(table)            # a batch of manifest rows (pyarrow Table)
    profile.merge(other)             # profile(A) + profile(B) ~= profile(A u B)
    data = profile.serialize()       # versioned JSON (sketches as base64), no pickle
    profile = Profile.deserialize(data)

Pixel and metadata sketches cover the readable (status == ok) images; unreadable files are
counted by reason, so files_seen = ok + errors holds in every profile and every merge.
See docs/profile-format.md for the file format.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixelscope import __version__
from pixelscope.config import ProfileConfig
from pixelscope.errors import BadInput, ConfigError, InputMissing
from pixelscope.io.atomic import write_bytes_atomic
from pixelscope.io.manifest import column_kinds
from pixelscope.profile.embedding import EmbeddingStats
from pixelscope.profile.sketches import CategoricalSketch, DistinctSketch, NumericSketch, Sketch, sketch_from_dict

if TYPE_CHECKING:
    from pixelscope.profile.outputs import Outputs

FORMAT = "pixelscope-profile"
FORMAT_VERSION = 1
NONE_SEGMENT = "(none)"
OTHER_SEGMENT = "(other)"
# Columns that describe the row's bookkeeping rather than the image (never profiled per column)
_NOT_PROFILED = {"status", "reason"}


@dataclass
class Profile:
    kinds: dict[str, str]  # column -> numeric | categorical | distinct | none
    cfg: ProfileConfig
    files_seen: int = 0
    ok: int = 0
    errors_by_reason: Counter[str] = field(default_factory=Counter)
    columns: dict[str, Sketch] = field(default_factory=dict)
    # segment column -> segment value -> (rows, column sketches)
    segments: dict[str, dict[str, dict[str, Sketch]]] = field(default_factory=dict)
    segment_rows: dict[str, Counter[str]] = field(default_factory=dict)
    embedding: EmbeddingStats | None = None  # when the embed step ran: centroids, distances, a sample
    objects: Profile | None = None  # with annotations: the objects' own profile (pixelscope.profile.objects)

    # --- construction --------------------------------------------------------------

    @classmethod
    def empty(cls, kinds: dict[str, str], cfg: ProfileConfig | None = None) -> Profile:
        cfg = cfg or ProfileConfig()
        unknown = [s for s in cfg.segments if s not in kinds]
        if unknown:
            raise ConfigError(f"profile.segments: no such manifest column(s): {unknown}")
        p = cls(kinds=dict(kinds), cfg=cfg)
        p.columns = p._new_sketches(segment=False)
        p.segments = {s: {} for s in cfg.segments}
        p.segment_rows = {s: Counter() for s in cfg.segments}
        return p

    def _profiled(self, segment: bool) -> list[tuple[str, str]]:
        out = []
        for name, kind in self.kinds.items():
            if kind == "none" or name in _NOT_PROFILED:
                continue
            if segment and kind == "distinct":  # ID-like columns: overall only (keeps size bounded)
                continue
            out.append((name, kind))
        return out

    def _new_sketches(self, segment: bool) -> dict[str, Sketch]:
        c = self.cfg
        k = c.segment_kll_k if segment else c.kll_k
        lg_k = max(4, c.hll_lg_k - 2) if segment else c.hll_lg_k
        made: dict[str, Sketch] = {}
        for name, kind in self._profiled(segment):
            if kind == "numeric":
                made[name] = NumericSketch(k)
            elif kind == "categorical":
                made[name] = CategoricalSketch(c.frequent_items_lg_max_k, lg_k)
            else:
                made[name] = DistinctSketch(lg_k)
        return made

    @classmethod
    def from_manifest(cls, path: str | Path, cfg: ProfileConfig | None = None, batch_rows: int = 8192,
                      row_groups: Sequence[int] | None = None, outputs: Outputs | None = None) -> Profile:
        """Stream a Parquet manifest (or some of its row groups) into a profile, batch by batch;
        outputs (pixelscope.profile.outputs) adds the models' columns to every row, and a
        segment per predicted class."""
        pf = pq.ParquetFile(path)
        kinds = column_kinds(pf.schema_arrow)
        cfg = cfg or ProfileConfig()
        if outputs is not None:
            kinds.update(outputs.kinds)
            extra = [s for s in outputs.segments if s not in cfg.segments]
            cfg = cfg.model_copy(update={"segments": [*cfg.segments, *extra]}) if extra else cfg
        profile = cls.empty(kinds, cfg)
        for batch in pf.iter_batches(batch_size=batch_rows, row_groups=row_groups):
            table = pa.Table.from_batches([batch])
            profile.update(outputs.join(table) if outputs is not None else table)
        return profile

    # --- update / merge ----------------------------------------------------------------

    def update(self, table: pa.Table) -> None:
        """Add a batch of manifest rows."""
        status = table.column("status")
        is_ok = pc.equal(status, "ok")
        n_ok = int(pc.sum(is_ok).as_py() or 0)
        self.files_seen += table.num_rows
        self.ok += n_ok
        if n_ok < table.num_rows:
            bad = table.filter(pc.invert(is_ok)).column("reason").to_pylist()
            self.errors_by_reason.update(r or "unknown" for r in bad)
        good = table.filter(is_ok) if n_ok < table.num_rows else table
        if good.num_rows == 0:
            return
        _update_sketches(self.columns, good)
        for seg in self.cfg.segments:
            values = [NONE_SEGMENT if v is None else str(v) for v in good.column(seg).to_pylist()]
            groups: dict[str, list[int]] = {}
            for i, v in enumerate(values):
                groups.setdefault(v, []).append(i)
            for value, idx in groups.items():
                value = self._segment_slot(seg, value)
                self.segment_rows[seg][value] += len(idx)
                _update_sketches(self.segments[seg][value], good.take(pa.array(idx, type=pa.int64())))

    def _segment_slot(self, seg: str, value: str) -> str:
        """The segment a value goes to; beyond max_segment_values new values share '(other)'."""
        slots = self.segments[seg]
        if value not in slots:
            if len(slots) >= self.cfg.max_segment_values:
                value = OTHER_SEGMENT
            if value not in slots:
                slots[value] = self._new_sketches(segment=True)
        return value

    def merge(self, other: Profile) -> Profile:
        """Merge other into self (in place) and return self. Every check runs before anything changes,
        so a merge that fails leaves both profiles as they were."""
        self.check_mergeable(other)
        self.files_seen += other.files_seen
        self.ok += other.ok
        self.errors_by_reason.update(other.errors_by_reason)
        for name, sk in other.columns.items():
            self.columns[name].merge(sk)  # type: ignore[arg-type]  # same kinds (checked above), so the same sketch type
        for seg, values in other.segments.items():
            for value, sketches in values.items():
                slot = self._segment_slot(seg, value)
                self.segment_rows[seg][slot] += other.segment_rows[seg][value]
                for name, sk in sketches.items():
                    self.segments[seg][slot][name].merge(sk)  # type: ignore[arg-type]  # same kinds, same types
        if self.embedding is not None and other.embedding is not None:
            self.embedding.merge(other.embedding)
        if self.objects is not None and other.objects is not None:
            self.objects.merge(other.objects)
        return self

    def check_mergeable(self, other: Profile) -> None:
        """Raise (changing nothing) when merge(other) would fail; merge runs these checks first."""
        if other.kinds != self.kinds:
            diff = sorted(set(other.kinds.items()) ^ set(self.kinds.items()))
            raise BadInput(f"cannot merge profiles with different columns: {diff[:5]}")
        if (other.cfg.kll_k, other.cfg.segments) != (self.cfg.kll_k, self.cfg.segments):
            raise BadInput("cannot merge profiles built with different profile.kll_k or profile.segments")
        if (self.embedding is None) != (other.embedding is None):
            raise BadInput("cannot merge a profile with embedding statistics and one without")
        if self.embedding is not None and other.embedding is not None:
            self.embedding.check_mergeable(other.embedding)
        if (self.objects is None) != (other.objects is None):
            raise BadInput("cannot merge a profile with objects (annotations) and one without")
        if self.objects is not None and other.objects is not None:
            self.objects.check_mergeable(other.objects)

    @property
    def errors(self) -> int:
        return sum(self.errors_by_reason.values())

    # --- queries -------------------------------------------------------------------------

    def sketch(self, column: str, segment: tuple[str, str] | None = None) -> Sketch:
        where = self.columns if segment is None else self.segments[segment[0]][segment[1]]
        if column not in where:
            known = ", ".join(sorted(where))
            raise KeyError(f"no profiled column {column!r}; profiled: {known}")
        return where[column]

    def quantiles(self, column: str, qs: Sequence[float], segment: tuple[str, str] | None = None) -> list[float | None]:
        sk = self.sketch(column, segment)
        if not isinstance(sk, NumericSketch):
            raise TypeError(f"{column!r} is {sk.kind}, quantiles need a numeric column")
        return sk.quantiles(qs)

    def summary(self, segment: tuple[str, str] | None = None) -> list[dict[str, Any]]:
        """One row per profiled column: counts, distinct, quantiles, moments or top values."""
        where = self.columns if segment is None else self.segments[segment[0]][segment[1]]
        rows = []
        for name, sk in where.items():
            row: dict[str, Any] = {"column": name, "kind": sk.kind, "count": sk.count, "nulls": sk.nulls}
            if isinstance(sk, NumericSketch):
                q = sk.quantiles([0.05, 0.5, 0.95])
                row.update(min=_num(sk.min if sk.count else None), p05=q[0], median=q[1], p95=q[2],
                           max=_num(sk.max if sk.count else None), mean=sk.mean if sk.count else None,
                           std=sk.std if sk.count else None)
            else:
                row["distinct"] = round(sk.distinct)
                if isinstance(sk, CategoricalSketch):
                    row["top"] = [[v, int(c)] for v, c, *_ in sk.top(5)]
            rows.append(row)
        return rows

    # --- serialization ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": FORMAT_VERSION, "pixelscope": __version__,
            "config": self.cfg.model_dump(mode="json"), "kinds": self.kinds,
            "files_seen": self.files_seen, "ok": self.ok,
            "errors_by_reason": dict(sorted(self.errors_by_reason.items())),
            "columns": {n: s.to_dict() for n, s in self.columns.items()},
            "segments": {
                seg: {v: {"rows": self.segment_rows[seg][v], "columns": {n: s.to_dict() for n, s in sks.items()}}
                      for v, sks in sorted(values.items())}
                for seg, values in self.segments.items()
            },
            **({"embedding": self.embedding.to_dict()} if self.embedding is not None else {}),
            **({"objects": self.objects.to_dict()} if self.objects is not None else {}),
        }

    def serialize(self) -> bytes:
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")

    @classmethod
    def deserialize(cls, data: bytes) -> Profile:
        try:
            d = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BadInput(f"not a pixelscope profile (not JSON): {e}") from None
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: Any) -> Profile:
        if not isinstance(d, dict) or d.get("format") != FORMAT:
            raise BadInput("not a pixelscope profile (missing format marker)")
        if d.get("version") != FORMAT_VERSION:
            raise BadInput(f"profile format version {d.get('version')} is not supported (expected {FORMAT_VERSION})")
        p = cls(kinds=d["kinds"], cfg=ProfileConfig.model_validate(d["config"]),
                files_seen=d["files_seen"], ok=d["ok"], errors_by_reason=Counter(d["errors_by_reason"]))
        p.columns = {n: sketch_from_dict(s) for n, s in d["columns"].items()}
        p.segments = {seg: {v: {n: sketch_from_dict(s) for n, s in entry["columns"].items()}
                            for v, entry in values.items()} for seg, values in d["segments"].items()}
        p.segment_rows = {seg: Counter({v: entry["rows"] for v, entry in values.items()})
                          for seg, values in d["segments"].items()}
        if d.get("embedding"):
            p.embedding = EmbeddingStats.from_dict(d["embedding"])
        if d.get("objects"):
            p.objects = cls.from_dict(d["objects"])
        return p

    def save(self, path: str | Path) -> int:
        data = self.serialize()
        write_bytes_atomic(path, data)
        return len(data)

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile file; a missing or foreign file is an error naming it."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputMissing(f"profile not found: {path}") from None
        try:
            return cls.deserialize(data)
        except BadInput as e:
            raise BadInput(f"{path}: {e}") from None


def _num(x: float | None) -> float | None:
    return None if x is None else float(x)


def _update_sketches(sketches: dict[str, Sketch], table: pa.Table) -> None:
    for name, sk in sketches.items():
        col = table.column(name)
        if isinstance(sk, NumericSketch):
            if pa.types.is_boolean(col.type):
                col = pc.cast(col, pa.int8())
            sk.update(col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
                      if col.null_count == 0 else
                      pc.fill_null(pc.cast(col, pa.float64()), float("nan")).to_numpy(zero_copy_only=False))
        else:
            sk.update(_as_strings(col))


def _as_strings(col: pa.ChunkedArray) -> list[str | None]:
    if pa.types.is_boolean(col.type):
        return [None if v is None else ("true" if v else "false") for v in col.to_pylist()]
    if not pa.types.is_string(col.type):
        col = pc.cast(col, pa.string())
    return col.to_pylist()


def merge_all(profiles: Iterable[Profile]) -> Profile:
    it = iter(profiles)
    try:
        first = next(it)
    except StopIteration:
        raise ValueError("merge_all needs at least one profile") from None
    for p in it:
        first.merge(p)
    return first
