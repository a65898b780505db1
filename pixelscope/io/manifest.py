"""The manifest: one Parquet row per file. Its columns, its schema, its writer.

Each column's kind is recorded in the file's schema metadata, so readers (the profile,
the dashboard) know how to summarise a column without importing the code that made it.

kind decides the sketch a column gets in the profile:
- numeric:      KLL quantiles + exact count/nulls/min/max/mean/variance
- categorical:  frequent-items + HLL distinct count
- distinct:     HLL distinct count only (ID-like: hashes, paths, timestamps; never drift-tested)
- none:         stored in the manifest, not profiled (free text such as error details)
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixelscope import __version__
from pixelscope.errors import BadInput
from pixelscope.io.atomic import atomic_path

Kind = Literal["numeric", "categorical", "distinct", "none"]


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    kind: Kind
    doc: str = ""


# Columns every manifest has, filled by ingest (features append their own after these).
BASE_COLUMNS: list[Column] = [
    Column("id", pa.string(), "distinct", "sha256 of the file bytes (the image id)"),
    Column("path", pa.string(), "distinct", "path relative to the raw folder (POSIX)"),
    Column("source", pa.string(), "categorical", "top-level folder under the raw folder"),
    Column("label", pa.string(), "categorical", "class label (parent folder or labels CSV)"),
    Column("split", pa.string(), "categorical", "train/val/test when a path component says so"),
    Column("status", pa.string(), "categorical", "ok | error"),
    Column("reason", pa.string(), "categorical", "error reason code (null when ok)"),
    Column("detail", pa.string(), "none", "human-readable error detail"),
    Column("warning", pa.string(), "none", "non-fatal problem, e.g. unreadable EXIF"),
    Column("bytes", pa.int64(), "numeric", "file size in bytes"),
    Column("format", pa.string(), "categorical", "container format as identified by the decoder"),
    Column("mode", pa.string(), "categorical", "pixel mode as stored (RGB, L, P, CMYK, I;16, ...)"),
    Column("decoder", pa.string(), "categorical", "pillow | opencv"),
    Column("width", pa.int32(), "numeric", "displayed width (after EXIF orientation)"),
    Column("height", pa.int32(), "numeric", "displayed height (after EXIF orientation)"),
    Column("frames", pa.int32(), "numeric", "number of frames/pages"),
    Column("has_alpha", pa.bool_(), "categorical", "has an alpha channel or transparency"),
    Column("exif_make", pa.string(), "categorical", "EXIF Make"),
    Column("exif_model", pa.string(), "categorical", "EXIF Model"),
    Column("exif_datetime_original", pa.string(), "distinct", "EXIF DateTimeOriginal"),
    Column("exif_exposure_time", pa.float64(), "numeric", "EXIF ExposureTime (s)"),
    Column("exif_f_number", pa.float64(), "numeric", "EXIF FNumber"),
    Column("exif_iso", pa.float64(), "numeric", "EXIF ISOSpeedRatings"),
    Column("exif_focal_length", pa.float64(), "numeric", "EXIF FocalLength (mm)"),
    Column("exif_orientation", pa.int32(), "categorical", "EXIF Orientation 1-8 (null if absent)"),
    Column("exif_gps", pa.bool_(), "categorical", "EXIF GPS block present"),
    Column("exif_software", pa.string(), "categorical", "EXIF Software"),
]


def manifest_schema(columns: list[Column]) -> pa.Schema:
    meta = {
        "pixelscope.version": __version__,
        "pixelscope.columns": json.dumps({c.name: c.kind for c in columns}),
    }
    return pa.schema([pa.field(c.name, c.type) for c in columns], metadata=meta)


def column_kinds(path_or_schema: str | Path | pa.Schema) -> dict[str, str]:
    """Column -> profiling kind, as recorded in the manifest (plugins included)."""
    schema = path_or_schema if isinstance(path_or_schema, pa.Schema) else pq.read_schema(path_or_schema)
    raw = (schema.metadata or {}).get(b"pixelscope.columns")
    if raw is None:
        raise BadInput("not a pixelscope manifest (no pixelscope.io.manifest metadata)")
    return json.loads(raw)


def rows_to_batch(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.RecordBatch:
    """Manifest rows -> one Arrow record batch (what ingest workers send: columns, not pickled dicts)."""
    unknown = set().union(*(r.keys() for r in rows)) - set(schema.names)
    if unknown:  # pyarrow would drop them silently
        raise ValueError(f"manifest row has columns the schema lacks: {sorted(unknown)} (plugins not loaded?)")
    return pa.RecordBatch.from_pylist(rows, schema=schema)


class ManifestWriter:
    """Atomic, chunked Parquet writer that keeps the counts (ok, errors by reason, warnings).

    Used by every ingest path (one process pool, or shards from an orchestrator), so the
    manifest is the same bytes whichever way it was produced: rows arrive as record batches
    (or lists of row dicts) of any size and leave in row groups of exactly chunk_rows.
    """

    def __init__(self, path: str | Path, chunk_rows: int, columns: list[Column]):
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        self.schema = manifest_schema(columns)
        self.ok = self.warnings = 0
        self.reasons: Counter[str] = Counter()
        self._buf: list[pa.RecordBatch] = []
        self._buffered = 0
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ManifestWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer = self._stack.enter_context(pq.ParquetWriter(tmp, self.schema, compression="zstd"))
        return self

    def add(self, part: pa.RecordBatch | list[dict[str, Any]]) -> int:
        """Count and buffer a batch of rows (or a list of row dicts); returns how many rows."""
        batch = part if isinstance(part, pa.RecordBatch) else rows_to_batch(part, self.schema)
        if not batch.schema.equals(self.schema, check_metadata=False):
            raise ValueError(f"manifest batch schema differs from the manifest's: {batch.schema}")
        ok = pc.equal(batch.column("status"), "ok")
        self.ok += pc.sum(ok).as_py() or 0
        for item in pc.value_counts(pc.filter(batch.column("reason"), pc.invert(ok))).to_pylist():
            self.reasons[item["values"]] += item["counts"]
        self.warnings += pc.sum(pc.greater(pc.utf8_length(batch.column("warning")), 0)).as_py() or 0
        self._buf.append(batch)
        self._buffered += batch.num_rows
        if self._buffered >= self.chunk_rows:
            self._flush(final=False)
        return batch.num_rows

    def _flush(self, final: bool) -> None:
        table = pa.Table.from_batches(self._buf, schema=self.schema)
        start = 0
        while table.num_rows - start >= self.chunk_rows or (final and (start < table.num_rows or self.seen == 0)):
            rows = table.slice(start, self.chunk_rows)
            self._writer.write_table(rows)
            start += rows.num_rows
            if rows.num_rows == 0:
                break
        rest = table.slice(start).combine_chunks()
        self._buf = rest.to_batches() if rest.num_rows else []
        self._buffered = rest.num_rows

    @property
    def seen(self) -> int:
        return self.ok + sum(self.reasons.values())

    @property
    def errors(self) -> int:
        return sum(self.reasons.values())

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and (self._buffered or self.seen == 0):
            self._flush(final=True)
        return self._stack.__exit__(exc_type, exc, tb)
