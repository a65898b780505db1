"""The Python API behind `pixelscope decide` and the dashboard's actions: pick images, record a
decision about them, undo one, list them. Both call these functions with the same project, so a
decision taken in the browser and one typed in a terminal land in the same file the same way.

Images are picked by id (or an unambiguous prefix of at least 6 characters), by manifest path, or
by a filter (the curate engine, with the review `tags` column) — never by pasting text into SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pixelscope.config import Params
from pixelscope.curate import decisions
from pixelscope.curate.decisions import Decision
from pixelscope.errors import BadInput, ConfigError, InputMissing

MIN_PREFIX = 6


def decisions_file(params: Params, project: Path) -> Path:
    if params.curate.decisions is None:
        raise ConfigError("curate.decisions is null: set it (e.g. curation/decisions.jsonl) to record decisions")
    return project / params.curate.decisions


def images_frame(params: Params, project: Path) -> pd.DataFrame:
    """id, path, label, status and, when the issues table is there, suggested_label: what a pick needs."""
    import pyarrow.parquet as pq

    paths = params.paths.under(project)
    if not paths.manifest.exists():
        raise InputMissing(f"manifest not found: {paths.manifest} (run `pixelscope ingest` first)")
    frame = pq.read_table(paths.manifest, columns=["id", "path", "label", "status"]).to_pandas()
    if paths.issues.exists():
        names = pq.read_schema(paths.issues).names
        if "suggested_label" in names:
            issues = pq.read_table(paths.issues, columns=["path", "suggested_label"]).to_pandas()
            if len(issues) == len(frame) and (issues["path"].to_numpy() == frame["path"].to_numpy()).all():
                frame["suggested_label"] = issues["suggested_label"].to_numpy()
    return frame


def pick(params: Params, project: Path, *, ids: Sequence[str] = (), paths: Sequence[str] = (),
         where: str | None = None, frame: pd.DataFrame | None = None) -> list[int]:
    """Manifest rows named by ids / id prefixes, paths and a filter (their union, in manifest order)."""
    frame = images_frame(params, project) if frame is None else frame
    rows: set[int] = set()
    all_ids = frame["id"].to_numpy(dtype=object)
    for given in ids:
        key = given.strip().lower()
        if len(key) < MIN_PREFIX:
            raise ConfigError(f"--id {given!r}: give at least {MIN_PREFIX} characters of the id")
        hit = np.flatnonzero([i.startswith(key) for i in all_ids])
        if len({all_ids[r] for r in hit}) > 1:
            raise ConfigError(f"--id {given!r} matches {len({all_ids[r] for r in hit})} images: give more characters")
        if not len(hit):
            raise ConfigError(f"--id {given!r}: no image with that id in the manifest")
        rows.update(map(int, hit))
    by_path = {p: r for r, p in enumerate(frame["path"])}
    for given in paths:
        if given not in by_path:
            raise ConfigError(f"--path {given!r}: no such path in the manifest (paths are relative to the raw folder)")
        rows.add(by_path[given])
    if where:
        rows.update(map(int, np.flatnonzero(filter_mask(params, project, where))))
    return sorted(rows)


def filter_mask(params: Params, project: Path, where: str) -> np.ndarray:
    """The curate engine over manifest + issues + the review tags in force."""
    from pixelscope.curate.ledger import ReviewRows
    from pixelscope.curate.select import Images
    from pixelscope.io.manifest import manifest_frame

    paths = params.paths.under(project)
    issues = paths.issues if paths.issues.exists() else None
    review = decisions.load(decisions_file(params, project))[1]
    tags = ReviewRows(manifest_frame(paths.manifest, None), review).tags()
    return Images(paths.manifest, issues, tags=tags, object_images=paths.object_images).where(where, "--where")


def targets_of(frame: pd.DataFrame, rows: Sequence[int]) -> list[tuple[str, str]]:
    ids, paths = frame["id"].to_numpy(dtype=object), frame["path"].to_numpy(dtype=object)
    return [(str(ids[r]), str(paths[r])) for r in rows]


def suggestions_of(frame: pd.DataFrame, rows: Sequence[int]) -> list[str]:
    """Each row's current label suggestion; an image without one is an error."""
    if "suggested_label" not in frame:
        raise InputMissing("accept: no label suggestions (run `pixelscope issues` with labels and embeddings)")
    suggested, paths = frame["suggested_label"].to_numpy(dtype=object), frame["path"].to_numpy(dtype=object)
    lacking = [paths[r] for r in rows if not isinstance(suggested[r], str)]
    if lacking:
        raise BadInput(f"accept: {len(lacking)} of {len(rows)} images have no suggested label (e.g. {lacking[0]})")
    return [str(suggested[r]) for r in rows]


def record(params: Params, project: Path, action: str, targets: Sequence[tuple[str, str]], *,
           value: str | None = None, values: Sequence[str] | None = None, reason: str = "", where: str = "cli",
           author: str | None = None) -> list[Decision]:
    """One entry per target (id, path), one batch, appended to the decisions file. `values` gives each
    target its own value (accepting suggestions: each image's suggested label)."""
    if values is None:
        entries = decisions.make(action, targets, value=value, reason=reason, where=where, author=author,
                                 project=project)
    else:
        groups: dict[str, list[tuple[str, str]]] = {}
        for t, v in zip(targets, values, strict=True):
            groups.setdefault(v, []).append(t)
        entries, batch = [], None
        for v, group in groups.items():
            made = decisions.make(action, group, value=v, reason=reason, where=where, author=author, project=project)
            batch = batch or made[0].batch
            entries += [replace(d, batch=batch) for d in made]  # one action, one batch
    decisions.append(decisions_file(params, project), entries)
    return entries


def undo(params: Params, project: Path, targets: str | Sequence[str], *, reason: str = "", where: str = "cli",
         author: str | None = None) -> list[Decision]:
    """Take back entries or whole batches (the file is read once, the undos appended as one batch)."""
    path = decisions_file(params, project)
    entries = decisions.undo_entries(targets, decisions.read(path), reason=reason, where=where, author=author,
                                     project=project)
    decisions.append(path, entries)
    return entries


def listing(params: Params, project: Path) -> list[dict]:
    """Every entry, newest first, with `undone` — what `decide list --json` prints."""
    return decisions.history(decisions_file(params, project))


__all__ = ["decisions_file", "filter_mask", "images_frame", "listing", "pick", "record", "suggestions_of", "targets_of",
           "undo"]
