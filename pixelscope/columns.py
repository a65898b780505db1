"""Manifest columns and how each is profiled.

kind decides the sketch a column gets in the profile:
- numeric:      KLL quantiles + exact count/nulls/min/max/mean/variance
- categorical:  frequent-items + HLL distinct count
- distinct:     HLL distinct count only (ID-like: hashes, paths, timestamps; never drift-tested)
- none:         stored in the manifest, not profiled (free text such as error details)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

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
