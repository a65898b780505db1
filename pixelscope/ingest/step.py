"""Ingest: every file of a raw folder -> one manifest row (metadata + features or error).

Streaming: files are decoded in worker processes, rows come back in order and are written
to Parquet in chunks, so memory does not grow with the number of files. A bad file is an
error row with a reason code; the run always goes on. files seen = ok + errors. Only regular
files are read (a FIFO, a device or a socket named like an image is `not_a_file`), at most
ingest.max_file_bytes of them (`too_large`); running out of memory on one file is that file's
error row (`out_of_memory`), not the end of the run.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pixelscope.config import FeaturesConfig, IngestConfig, Params
from pixelscope.errors import InputMissing, StepError
from pixelscope.features import ImageView, compute_features, feature_columns, load_plugins
from pixelscope.io.decode import FEATURE_ERROR, READ_ERROR, ImageError, decode
from pixelscope.io.discover import FileEntry, Walk, discover
from pixelscope.io.manifest import BASE_COLUMNS, Column, ManifestWriter
from pixelscope.io.parallel import die_with_parent, pool_context, resolve_workers
from pixelscope.pipeline.steps import ProgressFn, StepResult, by_reason, reason_notes, write_metrics

STAGE = "ingest"
NOT_A_FILE = "not_a_file"
TOO_LARGE = "too_large"
OUT_OF_MEMORY = "out_of_memory"
UNDECODABLE_NAME = "undecodable_name"


def manifest_columns(plugins: list[str] | tuple[str, ...] = ()) -> list[Column]:
    """The base columns, then one per registered feature (plugins load first: they are columns too)."""
    load_plugins(list(plugins))
    return BASE_COLUMNS + feature_columns()


@dataclass(frozen=True)
class _Settings:
    working_size: int
    max_pixels: int
    max_bytes: int
    exif_errors: str
    dark_level: int
    bright_level: int
    plugins: tuple[str, ...]


def _init_worker(settings: _Settings, worker: bool = False) -> None:
    if worker:
        die_with_parent()
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    load_plugins(list(settings.plugins))


def read_file(path: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes; ImageError otherwise. Opened without
    blocking (a FIFO with no writer would hang a plain open) and checked on the open descriptor."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ImageError(READ_ERROR, f"{type(e).__name__}: {e}") from None
    with open(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) or
                    stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) else "not a regular file")
            raise ImageError(NOT_A_FILE, f"{kind}, not a regular file")
        if st.st_size > max_bytes:
            raise ImageError(TOO_LARGE, f"{st.st_size:,} bytes, more than ingest.max_file_bytes ({max_bytes:,})")
        try:
            data = fh.read(max_bytes + 1)
        except OSError as e:
            raise ImageError(READ_ERROR, f"{type(e).__name__}: {e}") from None
    if len(data) > max_bytes:  # it grew while it was read
        raise ImageError(TOO_LARGE, f"more than ingest.max_file_bytes ({max_bytes:,}) bytes")
    return data


def process_file(entry: FileEntry, s: _Settings) -> dict[str, Any]:
    """One file -> one manifest row. Never raises for a bad file."""
    row: dict[str, Any] = {"path": entry.rel, "source": entry.source, "label": entry.label, "split": entry.split}
    if entry.undecodable:
        return {**row, "status": "error", "reason": UNDECODABLE_NAME,
                "detail": "the file name is not UTF-8 (shown with \\x escapes): rename the file to include it"}
    try:
        return _process(entry, s, row)
    except MemoryError:
        return {**{k: row[k] for k in ("path", "source", "label", "split")}, "status": "error",
                "reason": OUT_OF_MEMORY, "detail": "ran out of memory reading or decoding this file"}


def _process(entry: FileEntry, s: _Settings, row: dict[str, Any]) -> dict[str, Any]:
    try:
        data = read_file(entry.path, s.max_bytes)
    except ImageError as e:
        return {**row, "status": "error", "reason": e.reason, "detail": e.detail}
    return row_from_bytes(data, s, row)


def row_from_bytes(data: bytes, s: _Settings, row: dict[str, Any]) -> dict[str, Any]:
    """Encoded image bytes -> a manifest row (row: the columns known before decoding). Ingest and
    pixelscope.image_logger share it, so a logged file has the features ingest gives it."""
    row["id"] = hashlib.sha256(data).hexdigest()
    row["bytes"] = len(data)
    try:
        d = decode(data, s.working_size, s.max_pixels, s.exif_errors)
        meta = {"format": d.format, "mode": d.mode, "decoder": d.decoder, "width": d.width,
                "height": d.height, "frames": d.frames, "has_alpha": d.has_alpha}
        row.update(meta)
        row.update(d.exif)
        view = ImageView(d.rgb, {**meta, "bytes": len(data)}, s.dark_level, s.bright_level)
        try:
            values, problems = compute_features(view)
        except Exception as e:  # noqa: BLE001 - a built-in feature bug must not stop the run
            raise ImageError(FEATURE_ERROR, f"{type(e).__name__}: {e}") from None
        row.update(values)
        warnings = ([d.warning] if d.warning else []) + problems
        row["warning"] = "; ".join(warnings) or None
        row["status"] = "ok"
    except ImageError as e:
        for k in ("width", "height", "frames"):  # keep what was read, drop partial pixel data
            row.pop(k, None)
        row.update(status="error", reason=e.reason, detail=e.detail)
    return row


def _process_star(args: tuple[FileEntry, _Settings]) -> dict[str, Any]:
    return process_file(*args)


class _Runner:
    """Runs process_file over entries, in order, in a pool of worker processes.

    The pool is started before the file list is built, so workers do not inherit (and
    count in their RSS) the parent's list of every file.
    """

    def __init__(self, s: _Settings, workers: int, always_pool: bool = False):
        self.s = s
        self.pool = None
        if workers > 1 or always_pool:
            ctx = pool_context("pixelscope.ingest")  # a fork server preloads the decoders
            self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(s, True))
        else:
            _init_worker(s)
        self.workers = workers

    def rows(self, entries: list[FileEntry]) -> Iterator[dict[str, Any]]:
        if self.pool is None:
            return (process_file(e, self.s) for e in entries)
        chunk = max(1, min(16, len(entries) // (self.workers * 8) or 1))
        return self.pool.imap(_process_star, ((e, self.s) for e in entries), chunksize=chunk)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def settings_for(ingest_cfg: IngestConfig, features_cfg: FeaturesConfig) -> _Settings:
    return _Settings(features_cfg.working_size, ingest_cfg.max_image_pixels, ingest_cfg.max_file_bytes, ingest_cfg.exif_errors,
                     features_cfg.dark_level, features_cfg.bright_level, tuple(features_cfg.plugins))


def ingest_shard(entries: list[FileEntry], ingest_cfg: IngestConfig, features_cfg: FeaturesConfig) -> list[dict[str, Any]]:
    """Manifest rows for one shard of files, in this process (e.g. on a Dask worker)."""
    s = settings_for(ingest_cfg, features_cfg)
    _init_worker(s)
    return [process_file(e, s) for e in entries]


_SHARED: dict[tuple[_Settings, int], _Runner] = {}
_SHARED_LOCK = threading.Lock()


def process_shard_in_pool(entries: list[FileEntry], ingest_cfg: IngestConfig,
                          features_cfg: FeaturesConfig) -> list[dict[str, Any]]:
    """Manifest rows for one shard, on this machine's shared worker pool (ingest.workers processes).

    Several threads (e.g. an orchestrator's concurrent tasks) can feed the same pool, so
    shards never oversubscribe the cores. Even one worker is a process: the caller's
    threads (an orchestrator's engine) then never share a GIL with the decoding.
    close_shared_pools() ends the pools.
    """
    s = settings_for(ingest_cfg, features_cfg)
    workers = resolve_workers(ingest_cfg.workers)
    with _SHARED_LOCK:  # one pool, however many threads ask at once
        runner = _SHARED.get((s, workers))
        if runner is None:
            runner = _SHARED[(s, workers)] = _Runner(s, workers, always_pool=True)
    return list(runner.rows(entries))


def close_shared_pools() -> None:
    with _SHARED_LOCK:
        while _SHARED:
            _SHARED.popitem()[1].close()




# --- the step: plan -> parts -> finish (a flow maps the parts over tasks; ingest_step loops) ---


@dataclass
class IngestPlan:
    """What to ingest: the raw folder's files in shards of pipeline.shard_size."""

    raw: Path
    manifest: Path
    shards: list[list[FileEntry]]
    listing: Walk

    @property
    def excluded(self) -> int:
        return self.listing.excluded

    @property
    def files(self) -> int:
        return sum(map(len, self.shards))


def plan_ingest(params: Params, project: str | Path) -> IngestPlan:
    """List the raw folder (labels, sources, splits from the paths) and cut it into shards."""
    paths = params.paths.under(project)
    if not paths.raw.exists():
        raise InputMissing(f"raw folder not found: {paths.raw}")
    cfg = params.ingest
    if cfg.labels_csv is not None:
        cfg = cfg.model_copy(update={"labels_csv": Path(project) / cfg.labels_csv})
    entries, listing = discover(paths.raw, cfg)
    if not entries:
        paths.manifest.unlink(missing_ok=True)
        raise StepError(f"no files to ingest in {paths.raw} ({listing.excluded} excluded by ingest.exclude)")
    size = params.pipeline.shard_size
    return IngestPlan(paths.raw, paths.manifest, [entries[i:i + size] for i in range(0, len(entries), size)], listing)


def listing_notes(listing: Walk) -> list[str]:
    """What the listing left out besides ingest.exclude, named (a few) and counted."""
    def some(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f", ... ({len(names)} in all)" if len(names) > 5 else "")

    notes = []
    if listing.unreadable_dirs:
        notes.append(f"folders that could not be read (skipped): {some(listing.unreadable_dirs)}")
    if listing.linked_dirs:
        notes.append(f"folder symlinks (not followed; link the files, or copy the folder in): {some(listing.linked_dirs)}")
    return notes


def ingest_part(entries: list[FileEntry], params: Params, *, in_pool: bool) -> list[dict[str, Any]]:
    """Manifest rows of one shard: on this machine's shared pool (in_pool), or in this process
    (a Dask worker). A broken file is an error row, never an exception."""
    if in_pool:
        return process_shard_in_pool(entries, params.ingest, params.features)
    return ingest_shard(entries, params.ingest, params.features)


def finish_ingest(params: Params, project: str | Path, plan: IngestPlan, parts: Iterable[Iterable[dict[str, Any]]],
                  t0: float, workers: int, progress: ProgressFn | None = None) -> StepResult:
    """Write the parts' rows, in order, into the manifest (atomic); count; write the metrics."""
    done = 0
    with ManifestWriter(plan.manifest, params.ingest.chunk_rows, manifest_columns(params.features.plugins)) as writer:
        for rows in parts:
            for row in rows:
                writer.add(row)
                done += 1
                if progress:
                    progress(done, plan.files)
    if writer.seen != plan.files:
        raise AssertionError(f"every file seen must be ok or an error: {writer.seen} rows for {plan.files} files")
    seconds = time.perf_counter() - t0
    reasons = dict(sorted(writer.reasons.items()))
    counts = {"files_seen": writer.seen, "ok": writer.ok, "errors": writer.errors, "excluded": plan.excluded,
              "warnings": writer.warnings, "unreadable_folders": len(plan.listing.unreadable_dirs),
              "linked_folders": len(plan.listing.linked_dirs)}
    rate = writer.seen / seconds if seconds > 0 else 0.0
    metrics = {**counts, "seconds": round(seconds, 3), "images_per_s": round(rate, 1), **by_reason("errors_", reasons)}
    summary = (f"ingested {writer.seen} files from {plan.raw} in {seconds:.1f}s ({rate:,.0f} img/s, {workers} workers): "
               f"{writer.ok} ok, {writer.errors} errors" + (f", {plan.excluded} excluded" if plan.excluded else ""))
    result = StepResult(stage=STAGE, summary=summary, seconds=seconds, counts=counts,
                        outputs={"manifest": str(plan.manifest)}, metrics=metrics,
                        notes=reason_notes(reasons) + listing_notes(plan.listing),
                        details={"root": str(plan.raw), "workers": workers, "errors_by_reason": reasons,
                                 "images_per_s": round(rate, 1)})
    return write_metrics(params, project, result)


def ingest_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Raw folder -> manifest Parquet (metadata + features, or an error row per bad file)."""
    t0 = time.perf_counter()
    load_plugins(params.features.plugins)
    workers = resolve_workers(params.ingest.workers)
    # The pool starts before the files are listed, so workers do not inherit the list.
    runner = _Runner(settings_for(params.ingest, params.features), workers)
    try:
        plan = plan_ingest(params, project)
        return finish_ingest(params, project, plan, _ahead(runner, plan.shards), t0, workers, progress)
    finally:
        runner.close()


def _ahead(runner: _Runner, shards: list[list[FileEntry]]) -> Iterator[Iterator[dict[str, Any]]]:
    """The shards' row streams, the next one already submitted, so workers never wait at a shard's end."""
    pending: deque[Iterator[dict[str, Any]]] = deque()
    for shard in shards:
        pending.append(runner.rows(shard))
        if len(pending) > 1:
            yield pending.popleft()
    yield from pending
