"""The publish bundle: one folder of small files that describes a dataset version.

    bundle = Bundle.open("reports/publish")
    bundle.summary()["manifest"]["ok"]
    bundle.table("images")            # manifest + issue columns, one row per file (pandas)
    bundle.thumbnails(ids)            # id -> WebP bytes

Every file but summary.json and profile.json is optional (a bundle without issues, a
curation, a reference or thumbnails is normal); `missing(name)` says which command makes
it. A file that is there but unreadable or foreign is a BundleError naming it. The reader
is light on purpose: pyarrow, pandas and the profile classes, nothing that runs a model.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.errors import BadInput, InputMissing
from pixelscope.profile import Profile


class BundleError(BadInput):
    """A bundle file that exists but cannot be read as what it should be."""


@dataclass(frozen=True)
class Part:
    file: str  # relative to the bundle folder
    what: str  # in words, for messages
    made_by: str  # the command that makes it
    columns: tuple[str, ...] = ()  # columns a Parquet part must have


PARTS: dict[str, Part] = {
    "summary": Part("summary.json", "the bundle summary", "pixelscope publish"),
    "profile": Part("profile.json", "the profile", "pixelscope profile && pixelscope publish"),
    "reference": Part("reference.json", "the reference profile",
                      "set validate.reference (a profile file) or `pixelscope reference set REV`, then "
                      "pixelscope validate && pixelscope publish"),
    "manifest": Part("manifest.parquet", "the manifest", "pixelscope ingest && pixelscope publish",
                     ("id", "path", "status")),
    "issues": Part("issues.parquet", "the issues table", "pixelscope issues && pixelscope publish", ("id", "path")),
    "pairs": Part("issues_pairs.parquet", "the duplicate / leakage pairs", "pixelscope issues && pixelscope publish",
                  ("a_id", "b_id", "kind")),
    "neighbours": Part("neighbours.parquet", "the nearest neighbours", "pixelscope embed && pixelscope issues && "
                       "pixelscope publish", ("id", "neighbours", "similarities")),
    "projection": Part("projection.parquet", "the 2-D embedding map", "pixelscope embed && pixelscope publish",
                       ("id", "x", "y")),
    "clusters": Part("clusters.parquet", "the clusters of the map", "pixelscope embed && pixelscope issues && "
                     "pixelscope publish", ("cluster", "size", "central")),
    "search": Part("search", "the compressed search index", "pixelscope embed && pixelscope publish"),
    "drift": Part("drift.parquet", "the drift table", "set a reference, then pixelscope validate && pixelscope publish",
                  ("feature", "segment", "test", "drift")),
    "validation": Part("validation.json", "the validation results", "pixelscope validate && pixelscope publish"),
    "ledger": Part("curation.parquet", "the curation ledger", "pixelscope curate && pixelscope publish",
                   ("id", "included", "reasons")),
    "card": Part("card.md", "the dataset card", "pixelscope curate && pixelscope publish"),
    "thumbnails": Part("thumbnails", "the thumbnails", "pixelscope publish"),
    "history": Part("history.parquet", "the version history", "pixelscope history && pixelscope publish",
                    ("key", "kind", "rev", "files")),
    "objects": Part("objects.parquet", "the annotated objects", "set ingest.annotations, then pixelscope objects && "
                    "pixelscope publish", ("path", "object", "class", "x0", "y0", "x1", "y1", "status")),
    "predicted_objects": Part("predicted_objects.parquet", "the model's boxes", "set ingest.annotations.predictions, "
                              "then pixelscope objects && pixelscope publish", ("path", "class", "x0", "y0", "x1", "y1")),
    "box_metrics": Part("box_metrics.json", "the COCO metrics of the model's boxes",
                        "set ingest.annotations.predictions, then pixelscope objects && pixelscope publish"),
    "box_errors": Part("box_errors.parquet", "the model's false positives and negatives",
                       "set ingest.annotations.predictions, then pixelscope objects && pixelscope publish",
                       ("path", "kind", "class")),
    "examples": Part("examples.parquet", "the service windows' example images",
                     "ImageLogger(keep_examples=K), then pixelscope publish", ("key", "k", "jpeg")),
}
THUMBNAIL_COLUMNS = ("id", "webp", "width", "height")


class Bundle:
    """Read-only access to a bundle folder; each reader checks the file it opens."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def open(cls, folder: str | Path) -> Bundle:
        folder = Path(folder)
        if not folder.is_dir():
            raise InputMissing(f"no bundle folder at {folder}: run `make demo` or `pixelscope publish`")
        if not (folder / PARTS["summary"].file).exists():
            raise InputMissing(f"{folder} is not a publish bundle (no summary.json): run `pixelscope publish`")
        return cls(folder)

    def path(self, name: str) -> Path:
        return self.folder / PARTS[name].file

    def has(self, name: str) -> bool:
        p = self.path(name)
        if name == "thumbnails":
            return any(p.glob("*.parquet"))
        return (p / "model.json").is_file() if name == "search" else p.exists()

    def missing(self, name: str) -> str:
        part = PARTS[name]
        return f"Not in this bundle: {part.what} ({part.file}). Make it with: {part.made_by}"

    # --- readers ---------------------------------------------------------------------------

    def json(self, name: str) -> Any:
        p = self.path(name)
        try:
            return json.loads(p.read_text())
        except FileNotFoundError:
            raise InputMissing(self.missing(name)) from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise BundleError(f"{p}: not valid JSON ({e})") from None

    def summary(self) -> dict[str, Any]:
        s = self.json("summary")
        if not isinstance(s, dict) or "manifest" not in s or "versions" not in s:
            raise BundleError(f"{self.path('summary')}: not a pixelscope bundle summary (no manifest / versions)")
        return s

    def profile(self, name: str = "profile") -> Profile:
        return Profile.load(self.path(name))

    def checked(self, name: str) -> Path:
        """The part's Parquet file, after checking it is one and has the part's columns."""
        p, part = self.path(name), PARTS[name]
        if not p.exists():
            raise InputMissing(self.missing(name))
        try:
            schema = pq.read_schema(p)
        except (pa.ArrowInvalid, OSError) as e:
            raise BundleError(f"{p}: not a Parquet file ({e})") from None
        lacking = [c for c in part.columns if c not in schema.names]
        if lacking:
            raise BundleError(f"{p}: not {part.what} (no column {', '.join(lacking)})")
        return p

    def arrow(self, name: str, columns: list[str] | None = None) -> pa.Table:
        return pq.read_table(self.checked(name), columns=columns)

    def table(self, name: str) -> Any:
        """A part as pandas; "images" is the manifest with the issue columns beside it (as the
        quality suite and curate's filters see it)."""
        if name != "images":
            return self.arrow(name).to_pandas()
        from pixelscope.io.manifest import manifest_frame

        return manifest_frame(self.checked("manifest"), self.checked("issues") if self.has("issues") else None)

    def card(self) -> str:
        p = self.path("card")
        if not p.exists():
            raise InputMissing(self.missing("card"))
        return p.read_text(errors="replace")

    # --- thumbnails ------------------------------------------------------------------------

    def thumbnail_parts(self) -> list[Path]:
        return sorted(self.path("thumbnails").glob("*.parquet"))

    def thumbnail_index(self) -> dict[str, tuple[int, int]]:
        """id -> (part number, row group): read from the id columns only."""
        out: dict[str, tuple[int, int]] = {}
        for k, p in enumerate(self.thumbnail_parts()):
            try:
                pf = pq.ParquetFile(p)
                if pf.schema_arrow.names[:len(THUMBNAIL_COLUMNS)] != list(THUMBNAIL_COLUMNS):
                    raise BundleError(f"{p}: not a thumbnails file (columns {pf.schema_arrow.names})")
                for g in range(pf.num_row_groups):
                    for i in pf.read_row_group(g, columns=["id"]).column(0).to_pylist():
                        out[i] = (k, g)
            except (pa.ArrowInvalid, OSError) as e:
                raise BundleError(f"{p}: not a Parquet file ({e})") from None
        return out

    def thumbnails(self, ids: list[str], index: dict[str, tuple[int, int]] | None = None) -> dict[str, bytes]:
        """WebP bytes of the ids that have one, reading only the row groups that hold them."""
        index = self.thumbnail_index() if index is None else index
        parts = self.thumbnail_parts()
        wanted: dict[tuple[int, int], set[str]] = {}
        for i in ids:
            if i in index:
                wanted.setdefault(index[i], set()).add(i)
        out: dict[str, bytes] = {}
        files: dict[int, pq.ParquetFile] = {}
        for (k, g), want in sorted(wanted.items()):
            pf = files.setdefault(k, pq.ParquetFile(parts[k]))
            t = pf.read_row_group(g, columns=["id", "webp"])
            for i, b in zip(t.column(0).to_pylist(), t.column(1).to_pylist()):
                if i in want:
                    out[i] = b
        return out
