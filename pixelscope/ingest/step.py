"""Ingest: every file of a raw folder (or object under a store prefix) -> one manifest row
(metadata + features or error).

Streaming: files are decoded in worker processes, rows come back in order and are written
to Parquet in chunks, so memory does not grow with the number of files. A bad file is an
error row with a reason code; the run always goes on. files seen = ok + errors. Only regular
files are read (a FIFO, a device or a socket named like an image is `not_a_file`), at most
ingest.max_file_bytes of them (`too_large`); running out of memory on one file is that file's
error row (`out_of_memory`), not the end of the run.

From a store (paths.raw = s3://bucket/prefix): the workers read the objects' bytes straight into
memory (pixelscope.io.location: no temp files), storage.concurrency at a time per worker so that
request latency overlaps decoding; an object that cannot be read is a row with a reason
(`gone`, `forbidden`, `timeout`, ...). Ids are content hashes: the same image in a bucket and on
disk has the same id.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from pixelscope.config import FeaturesConfig, IngestConfig, Params, StorageConfig
from pixelscope.errors import InputMissing, StepError
from pixelscope.features import ImageView, compute_features, feature_columns, load_plugins
from pixelscope.io.decode import FEATURE_ERROR, ImageError, decode
from pixelscope.io.discover import FileEntry, Walk, discover
from pixelscope.io.location import NOT_A_FILE, TOO_LARGE, Access, configure, fetch_many, read_file, retried
from pixelscope.io.manifest import BASE_COLUMNS, Column, ManifestWriter
from pixelscope.io.parallel import die_with_parent, pool_context, resolve_workers
from pixelscope.io.url import Url, is_url
from pixelscope.pipeline.steps import ProgressFn, StepResult, by_reason, reason_notes, write_metrics

__all__ = ["NOT_A_FILE", "TOO_LARGE", "ingest_step", "process_file", "read_file", "row_from_bytes"]

STAGE = "ingest"
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
    storage: StorageConfig = StorageConfig()
    access: Access = Access()  # a worker reads the store as this process does


def _init_worker(settings: _Settings, worker: bool = False) -> None:
    if worker:
        die_with_parent()
        settings.access.apply()
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    load_plugins(list(settings.plugins))


def process_file(entry: FileEntry, s: _Settings) -> dict[str, Any]:
    """One file -> one manifest row. Never raises for a bad file."""
    if entry.undecodable:
        return _row_for(entry, None, s)
    try:
        data: bytes | ImageError = read_file(entry.path, s.max_bytes)
    except ImageError as e:
        data = e
    except MemoryError:
        return _out_of_memory(entry)
    return _row_for(entry, data, s)


def process_batch(entries: list[FileEntry], s: _Settings) -> list[dict[str, Any]]:
    """Rows for entries whose bytes come from a store: fetched storage.concurrency at a time
    while this thread decodes the ones that have arrived."""
    todo = [e for e in entries if not e.undecodable]
    fetched = fetch_many(((e.path, e.size) for e in todo), s.max_bytes, s.storage)
    return [_row_for(e, None if e.undecodable else next(fetched), s) for e in entries]


def _base(entry: FileEntry) -> dict[str, Any]:
    return {"path": entry.rel, "source": entry.source, "label": entry.label, "split": entry.split}


def _out_of_memory(entry: FileEntry) -> dict[str, Any]:
    return {**_base(entry), "status": "error", "reason": OUT_OF_MEMORY,
            "detail": "ran out of memory reading or decoding this file"}


def _row_for(entry: FileEntry, data: bytes | ImageError | None, s: _Settings) -> dict[str, Any]:
    """The row of one entry from its bytes (or why they could not be read)."""
    if entry.undecodable:
        return {**_base(entry), "status": "error", "reason": UNDECODABLE_NAME,
                "detail": "the file name is not UTF-8 (shown with \\x escapes): rename the file to include it"}
    if isinstance(data, ImageError):
        return {**_base(entry), "status": "error", "reason": data.reason, "detail": data.detail}
    assert data is not None
    try:
        return row_from_bytes(data, s, _base(entry))
    except MemoryError:
        return _out_of_memory(entry)


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


def _batch_star(args: tuple[list[FileEntry], _Settings]) -> tuple[list[dict[str, Any]], int]:
    before = retried()
    rows = process_batch(*args)
    return rows, retried() - before  # the parent adds them up (the ingest metrics' `retried`)


def _counted(done: Iterator[tuple[list[dict[str, Any]], int]]) -> Iterator[dict[str, Any]]:
    for rows, retries in done:
        retried(retries)
        yield from rows


def _remote(entries: list[FileEntry]) -> bool:
    return bool(entries) and is_url(entries[0].path)


def _batches(entries: list[FileEntry], size: int) -> list[list[FileEntry]]:
    return [entries[i:i + size] for i in range(0, len(entries), size)]


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
        if _remote(entries):  # a batch per task: its fetches overlap the worker's decoding
            batches = _batches(entries, self.s.storage.concurrency * 4)
            if self.pool is None:
                return (row for b in batches for row in process_batch(b, self.s))
            return _counted(self.pool.imap(_batch_star, ((b, self.s) for b in batches)))
        if self.pool is None:
            return (process_file(e, self.s) for e in entries)
        chunk = max(1, min(16, len(entries) // (self.workers * 8) or 1))
        return self.pool.imap(_process_star, ((e, self.s) for e in entries), chunksize=chunk)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.terminate()
            self.pool.join()


def settings_for(ingest_cfg: IngestConfig, features_cfg: FeaturesConfig, storage: StorageConfig | None = None) -> _Settings:
    return _Settings(features_cfg.working_size, ingest_cfg.max_image_pixels, ingest_cfg.max_file_bytes, ingest_cfg.exif_errors,
                     features_cfg.dark_level, features_cfg.bright_level, tuple(features_cfg.plugins),
                     storage or StorageConfig(), Access.here())


def ingest_shard(entries: list[FileEntry], ingest_cfg: IngestConfig, features_cfg: FeaturesConfig,
                 storage: StorageConfig | None = None) -> list[dict[str, Any]]:
    """Manifest rows for one shard of files, in this process (e.g. on a Dask worker, which reads a
    store's objects itself: no shared filesystem needed)."""
    s = settings_for(ingest_cfg, features_cfg, storage)
    _init_worker(s)
    if _remote(entries):
        return [row for b in _batches(entries, s.storage.concurrency * 4) for row in process_batch(b, s)]
    return [process_file(e, s) for e in entries]


_SHARED: dict[tuple[_Settings, int], _Runner] = {}
_SHARED_LOCK = threading.Lock()


def process_shard_in_pool(entries: list[FileEntry], ingest_cfg: IngestConfig,
                          features_cfg: FeaturesConfig, storage: StorageConfig | None = None) -> list[dict[str, Any]]:
    """Manifest rows for one shard, on this machine's shared worker pool (ingest.workers processes).

    Several threads (e.g. an orchestrator's concurrent tasks) can feed the same pool, so
    shards never oversubscribe the cores. Even one worker is a process: the caller's
    threads (an orchestrator's engine) then never share a GIL with the decoding.
    close_shared_pools() ends the pools.
    """
    s = settings_for(ingest_cfg, features_cfg, storage)
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

    raw: Path | Url
    manifest: Path
    shards: list[list[FileEntry]]
    listing: Walk
    retried_before: int = 0  # this process's count of retried store reads when the plan was made

    @property
    def excluded(self) -> int:
        return self.listing.excluded

    @property
    def files(self) -> int:
        return sum(map(len, self.shards))


def plan_ingest(params: Params, project: str | Path) -> IngestPlan:
    """List the raw folder (labels, sources, splits from the paths) and cut it into shards."""
    paths = params.paths.under(project)
    if not isinstance(paths.raw, Url) and not paths.raw.exists():
        raise InputMissing(f"raw folder not found: {paths.raw}")
    cfg = params.ingest
    if cfg.labels_csv is not None:
        cfg = cfg.model_copy(update={"labels_csv": Path(project) / cfg.labels_csv})
    entries, listing = discover(paths.raw, cfg, params.storage)
    if not entries:
        paths.manifest.unlink(missing_ok=True)
        raise StepError(f"no files to ingest in {paths.raw} ({listing.excluded} excluded by ingest.exclude)")
    size = params.pipeline.shard_size
    return IngestPlan(paths.raw, paths.manifest, [entries[i:i + size] for i in range(0, len(entries), size)], listing,
                      retried())


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
        return process_shard_in_pool(entries, params.ingest, params.features, params.storage)
    return ingest_shard(entries, params.ingest, params.features, params.storage)


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
    if isinstance(plan.raw, Url):
        counts["retried_reads"] = retried() - plan.retried_before  # throttling / 5xx / timeouts that a retry got past
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
    configure(params.storage)
    workers = resolve_workers(params.ingest.workers)
    # The pool starts before the files are listed, so workers do not inherit the list.
    runner = _Runner(settings_for(params.ingest, params.features, params.storage), workers)
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
