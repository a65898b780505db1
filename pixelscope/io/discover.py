"""Find the files of a raw folder (or the objects under a store prefix) and attach label, source
and split from their paths.

A store prefix (s3://bucket/photos) is listed with its objects' size, ETag and version id, and the
same ingest.exclude / label / split rules apply to the keys below the prefix as to a folder's paths.

Directory symlinks are not followed (a link can lead anywhere, or in a loop); they and the
folders that cannot be read are counted, and the ingest step names the counts in its notes. A
name that is not valid UTF-8 (bytes that os.walk hands over surrogate-escaped) is kept, shown
with backslash escapes, and marked: the ingest step makes it an error row (`undecodable_name`)
instead of failing to write the manifest.
"""

from __future__ import annotations

import csv
import fnmatch
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from pixelscope.config import IngestConfig, StorageConfig
from pixelscope.errors import BadInput, ConfigError, InputMissing
from pixelscope.io.location import ObjectInfo, list_objects
from pixelscope.io.url import Url

SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "dev", "test", "testing"}


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # absolute
    rel: str  # relative to the raw root, POSIX (backslash-escaped where the name is not UTF-8)
    source: str | None
    label: str | None
    split: str | None
    undecodable: bool = False  # the real name is not UTF-8: rel shows it escaped
    size: int | None = None  # a store object's listed size (read without asking again)
    etag: str | None = None  # a store object's listed ETag (its content's version: the flow's shard cache key)


@dataclass
class Walk:
    """A raw folder's files (relative POSIX paths, sorted) and what the listing left out."""

    files: list[str]
    excluded: int = 0  # by ingest.exclude
    unreadable_dirs: list[str] = field(default_factory=list)  # permission denied and the like
    linked_dirs: list[str] = field(default_factory=list)  # directory symlinks: not followed


def shown(name: str) -> str:
    """A name as text that UTF-8 can hold: undecodable bytes as \\xNN."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def decodable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _matcher(patterns: list[str]) -> Callable[[str], bool]:
    """fnmatch against every pattern at once (one compiled regex: file lists run to millions)."""
    if not patterns:
        return lambda name: False
    rx = re.compile("|".join(fnmatch.translate(p) for p in patterns))
    return lambda name: rx.match(os.path.normcase(name)) is not None


def walk(root: Path, exclude: list[str]) -> Walk:
    """Every file under root (relative POSIX paths, sorted), and what was left out and why."""
    excluded = _matcher(exclude)
    out = Walk([])
    unreadable = out.unreadable_dirs

    def not_listed(e: OSError) -> None:
        unreadable.append(shown(os.path.relpath(str(e.filename), root)) if e.filename else str(e))

    for dirpath, dirnames, filenames in os.walk(root, onerror=not_listed):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        out.linked_dirs += [shown(prefix + d) for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        kept_dirs = [d for d in dirnames if not excluded(d)]
        out.excluded += sum(_count_files(Path(dirpath, d)) for d in dirnames if d not in kept_dirs)
        dirnames[:] = kept_dirs
        for name in filenames:
            if excluded(name):
                out.excluded += 1
            else:
                out.files.append(prefix + name)
    out.files.sort()
    return out


def _count_files(folder: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(folder))


def _label_from_folders(parts: tuple[str, ...]) -> str | None:
    for folder in reversed(parts[:-1]):
        if folder.lower() not in SPLIT_NAMES:
            return folder
    return None


def _split_from_folders(parts: tuple[str, ...]) -> str | None:
    for folder in parts[:-1]:
        if folder.lower() in SPLIT_NAMES:
            return folder.lower()
    return None


def read_labels_csv(path: Path) -> dict[str, str]:
    """A CSV with `path,label` columns; path relative to the raw folder."""
    try:
        with open(path, newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"path", "label"} <= set(reader.fieldnames):
                raise ConfigError(
                    f"ingest.labels_csv: {path} needs a header with 'path' and 'label' columns, "
                    f"found {reader.fieldnames}"
                )
            return {PurePosixPath(r["path"]).as_posix(): r["label"] for r in reader if r.get("label")}
    except FileNotFoundError:
        raise ConfigError(f"ingest.labels_csv: file not found: {path}") from None


def _intern(value: str | None) -> str | None:
    return None if value is None else sys.intern(value)


def list_prefix(url: Url, exclude: list[str], storage: StorageConfig | None = None) -> tuple[Walk, dict[str, ObjectInfo]]:
    """The objects under a store prefix as a Walk (keys relative to it), and what the listing said of each.
    A key is left out when its name or any folder above it matches ingest.exclude, as in a folder."""
    excluded = _matcher(exclude)
    out = Walk([])
    objects: dict[str, ObjectInfo] = {}
    for obj in list_objects(url, storage):
        if any(excluded(part) for part in obj.rel.split("/")):
            out.excluded += 1
        else:
            out.files.append(obj.rel)
            objects[obj.rel] = obj
    return out, objects


def discover(root: str | Path | Url, cfg: IngestConfig, storage: StorageConfig | None = None
             ) -> tuple[list[FileEntry], Walk]:
    """List files to ingest with their label/source/split; returns the entries and the listing."""
    if isinstance(root, Url):
        url = root
        listing, objects = list_prefix(url, cfg.exclude, storage)
        if not listing.files and not listing.excluded:
            raise InputMissing(f"no objects under {url}")
        return _entries(listing, cfg, lambda rel: str(url / rel), objects), listing
    root = Path(root)
    if not root.exists():
        raise InputMissing(f"raw folder not found: {root}")
    if not root.is_dir():
        raise BadInput(f"not a folder: {root}")
    listing = walk(root, cfg.exclude)
    base = str(root)  # string joins: a Path per file costs more than the rest of discovery
    return _entries(listing, cfg, (lambda rel: rel) if base == "." else (lambda rel: os.path.join(base, rel))), listing


def _entries(listing: Walk, cfg: IngestConfig, locate: Callable[[str], str],
             objects: dict[str, ObjectInfo] | None = None) -> list[FileEntry]:
    csv_labels = read_labels_csv(cfg.labels_csv) if cfg.labels == "csv" and cfg.labels_csv else {}
    entries = []
    for rel in listing.files:
        path = locate(rel)
        if not decodable(rel):
            rel = shown(rel)
            parts = tuple(rel.split("/"))
            entries.append(FileEntry(path, rel, parts[0] if len(parts) > 1 else None, None, None, undecodable=True))
            continue
        parts = tuple(rel.split("/"))
        if cfg.labels == "folder":
            label = _label_from_folders(parts)
        elif cfg.labels == "csv":
            label = csv_labels.get(rel)
        else:
            label = None
        source = parts[0] if len(parts) > 1 else None
        split = _split_from_folders(parts)
        obj = objects.get(rel) if objects else None
        entries.append(FileEntry(path, rel, _intern(source), _intern(label), _intern(split),
                                 size=obj.size if obj else None, etag=obj.etag if obj else None))
    return entries
