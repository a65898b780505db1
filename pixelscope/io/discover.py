"""Find the files of a raw folder and attach label, source and split from their paths."""

from __future__ import annotations

import csv
import fnmatch
import os
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from pixelscope.config import IngestConfig
from pixelscope.errors import BadInput, ConfigError, InputMissing

SPLIT_NAMES = {"train", "training", "val", "valid", "validation", "dev", "test", "testing"}


@dataclass(frozen=True, slots=True)
class FileEntry:
    path: str  # absolute
    rel: str  # relative to the raw root, POSIX
    source: str | None
    label: str | None
    split: str | None


def _matcher(patterns: list[str]) -> Callable[[str], bool]:
    """fnmatch against every pattern at once (one compiled regex: file lists run to millions)."""
    if not patterns:
        return lambda name: False
    rx = re.compile("|".join(fnmatch.translate(p) for p in patterns))
    return lambda name: rx.match(os.path.normcase(name)) is not None


def walk(root: Path, exclude: list[str]) -> tuple[list[str], int]:
    """Relative POSIX paths of every file under root (sorted), and how many were excluded."""
    excluded = _matcher(exclude)
    found: list[str] = []
    skipped = 0
    for dirpath, dirnames, filenames in os.walk(root):
        kept_dirs = [d for d in dirnames if not excluded(d)]
        skipped += sum(_count_files(Path(dirpath, d)) for d in dirnames if d not in kept_dirs)
        dirnames[:] = kept_dirs
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        prefix = "" if rel_dir == "." else rel_dir + "/"
        for name in filenames:
            if excluded(name):
                skipped += 1
            else:
                found.append(prefix + name)
    found.sort()
    return found, skipped


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


def discover(root: str | Path, cfg: IngestConfig) -> tuple[list[FileEntry], int]:
    """List files to ingest with their label/source/split; returns (entries, excluded count)."""
    root = Path(root)
    if not root.exists():
        raise InputMissing(f"raw folder not found: {root}")
    if not root.is_dir():
        raise BadInput(f"not a folder: {root}")
    rels, skipped = walk(root, cfg.exclude)
    csv_labels = read_labels_csv(cfg.labels_csv) if cfg.labels == "csv" and cfg.labels_csv else {}
    entries = []
    base = str(root)  # string joins: a Path per file costs more than the rest of discovery
    for rel in rels:
        parts = tuple(rel.split("/"))
        if cfg.labels == "folder":
            label = _label_from_folders(parts)
        elif cfg.labels == "csv":
            label = csv_labels.get(rel)
        else:
            label = None
        source = parts[0] if len(parts) > 1 else None
        split = _split_from_folders(parts)
        path = rel if base == "." else os.path.join(base, rel)
        entries.append(FileEntry(path, rel, *(_intern(v) for v in (source, label, split))))
    return entries, skipped
