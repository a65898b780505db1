"""Ingest: every file of a raw folder -> one manifest row (metadata + features or error).

Streaming: files are decoded in worker processes, rows come back in order and are written
to Parquet in chunks, so memory does not grow with the number of files. A bad file is an
error row with a reason code; the run always goes on. files seen = ok + errors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from pixelscope import __version__
from pixelscope.atomic import atomic_path
from pixelscope.columns import BASE_COLUMNS, Column
from pixelscope.config import FeaturesConfig, IngestConfig
from pixelscope.decode import FEATURE_ERROR, READ_ERROR, ImageError, decode
from pixelscope.discover import FileEntry, discover
from pixelscope.features import ImageView, compute_features, feature_columns, load_plugins

Progress = Callable[[int], None]


@dataclass
class IngestSummary:
    root: str
    manifest: str
    files_found: int
    excluded: int
    seen: int
    ok: int
    errors: int
    errors_by_reason: dict[str, int] = field(default_factory=dict)
    warnings: int = 0
    seconds: float = 0.0
    workers: int = 1

    @property
    def images_per_s(self) -> float:
        return self.seen / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "images_per_s": round(self.images_per_s, 1)}


def manifest_columns() -> list[Column]:
    return BASE_COLUMNS + feature_columns()


def manifest_schema(columns: list[Column]) -> pa.Schema:
    meta = {
        "pixelscope.version": __version__,
        "pixelscope.columns": json.dumps({c.name: c.kind for c in columns}),
    }
    return pa.schema([pa.field(c.name, c.type) for c in columns], metadata=meta)


@dataclass(frozen=True)
class _Settings:
    working_size: int
    max_pixels: int
    exif_errors: str
    dark_level: int
    bright_level: int
    plugins: tuple[str, ...]


def _init_worker(settings: _Settings) -> None:
    Image.MAX_IMAGE_PIXELS = settings.max_pixels
    load_plugins(list(settings.plugins))


def process_file(entry: FileEntry, s: _Settings) -> dict[str, Any]:
    """One file -> one manifest row. Never raises for a bad file."""
    row: dict[str, Any] = {"path": entry.rel, "source": entry.source, "label": entry.label, "split": entry.split}
    try:
        with open(entry.path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        return {**row, "status": "error", "reason": READ_ERROR, "detail": f"{type(e).__name__}: {e}"}
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


def resolve_workers(workers: int) -> int:
    if workers > 0:
        return workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


class _Runner:
    """Runs process_file over entries, in order, in a pool of worker processes.

    The pool is started before the file list is built, so workers do not inherit (and
    count in their RSS) the parent's list of every file.
    """

    def __init__(self, s: _Settings, workers: int, always_pool: bool = False):
        self.s = s
        self.pool = None
        if workers > 1 or always_pool:
            method = pool_start_method()
            ctx = get_context(method)
            if method == "forkserver":  # workers fork from a server that already imported the decoders
                ctx.set_forkserver_preload(["pixelscope.ingest"])
            self.pool = ctx.Pool(workers, initializer=_init_worker, initargs=(s,))
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


def pool_start_method() -> str:
    """fork when this process has one thread (fast; works from unguarded scripts and notebooks);
    forkserver when other threads run (Prefect's engine, say), whose held locks a forked child
    would inherit and could deadlock on."""
    import multiprocessing

    methods = multiprocessing.get_all_start_methods()
    if "fork" in methods and threading.active_count() == 1:
        return "fork"
    return "forkserver" if "forkserver" in methods else "spawn"


def ingest(
    root: str | Path,
    manifest_path: str | Path,
    ingest_cfg: IngestConfig,
    features_cfg: FeaturesConfig,
    progress: Callable[[int, int], None] | None = None,
) -> IngestSummary:
    """Ingest a raw folder into a Parquet manifest (atomic). progress(done, total) per file."""
    t0 = time.perf_counter()
    load_plugins(features_cfg.plugins)
    runner = _Runner(settings_for(ingest_cfg, features_cfg), resolve_workers(ingest_cfg.workers))
    try:
        return _ingest(root, manifest_path, ingest_cfg, runner, progress, t0)
    finally:
        runner.close()


class ManifestWriter:
    """Atomic, chunked Parquet writer that keeps the counts (ok, errors by reason, warnings).

    Used by every ingest path (one process pool, or shards from an orchestrator), so the
    manifest is the same bytes whichever way it was produced.
    """

    def __init__(self, path: str | Path, chunk_rows: int, plugins: list[str] | tuple[str, ...] = ()):
        load_plugins(list(plugins))  # plugin features are columns too
        self.path = Path(path)
        self.chunk_rows = chunk_rows
        self.schema = manifest_schema(manifest_columns())
        self._names = set(self.schema.names)
        self.ok = self.warnings = 0
        self.reasons: Counter[str] = Counter()
        self._buf: list[dict[str, Any]] = []
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> ManifestWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer = self._stack.enter_context(pq.ParquetWriter(tmp, self.schema, compression="zstd"))
        return self

    def add(self, row: dict[str, Any]) -> None:
        unknown = row.keys() - self._names
        if unknown:  # pyarrow would drop them silently
            raise ValueError(f"manifest row has columns the schema lacks: {sorted(unknown)} (plugins not loaded?)")
        if row["status"] == "ok":
            self.ok += 1
        else:
            self.reasons[row["reason"]] += 1
        self.warnings += bool(row.get("warning"))
        self._buf.append(row)
        if len(self._buf) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        self._writer.write_table(pa.Table.from_pylist(self._buf, schema=self.schema))
        self._buf.clear()

    @property
    def seen(self) -> int:
        return self.ok + sum(self.reasons.values())

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and (self._buf or self.seen == 0):
            self._flush()
        return self._stack.__exit__(exc_type, exc, tb)

    def summary(self, root: str | Path, excluded: int, seconds: float, workers: int) -> IngestSummary:
        errors = sum(self.reasons.values())
        return IngestSummary(
            root=str(root), manifest=str(self.path), files_found=self.seen + excluded, excluded=excluded,
            seen=self.seen, ok=self.ok, errors=errors, errors_by_reason=dict(sorted(self.reasons.items())),
            warnings=self.warnings, seconds=seconds, workers=workers,
        )


def _ingest(root: str | Path, manifest_path: str | Path, ingest_cfg: IngestConfig, runner: _Runner,
            progress: Callable[[int, int], None] | None, t0: float) -> IngestSummary:
    entries, excluded = discover(root, ingest_cfg)
    with ManifestWriter(manifest_path, ingest_cfg.chunk_rows, runner.s.plugins) as writer:
        for i, row in enumerate(runner.rows(entries), 1):
            writer.add(row)
            if progress:
                progress(i, len(entries))
    assert writer.seen == len(entries), "every file seen must be ok or an error"
    return writer.summary(root, excluded, time.perf_counter() - t0, runner.workers)


def settings_for(ingest_cfg: IngestConfig, features_cfg: FeaturesConfig) -> _Settings:
    return _Settings(features_cfg.working_size, ingest_cfg.max_image_pixels, ingest_cfg.exif_errors,
                     features_cfg.dark_level, features_cfg.bright_level, tuple(features_cfg.plugins))


def ingest_shard(entries: list[FileEntry], ingest_cfg: IngestConfig, features_cfg: FeaturesConfig) -> list[dict[str, Any]]:
    """Manifest rows for one shard of files, in this process (e.g. on a Dask worker)."""
    s = settings_for(ingest_cfg, features_cfg)
    _init_worker(s)
    return [process_file(e, s) for e in entries]


_SHARED: dict[tuple[_Settings, int], _Runner] = {}
_SHARED_LOCK = threading.Lock()


def process_shard_in_pool(entries: list[FileEntry], ingest_cfg: IngestConfig, features_cfg: FeaturesConfig) -> list[dict[str, Any]]:
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


def column_kinds(path_or_schema: str | Path | pa.Schema) -> dict[str, str]:
    """Column -> profiling kind, as recorded in the manifest (plugins included)."""
    schema = path_or_schema if isinstance(path_or_schema, pa.Schema) else pq.read_schema(path_or_schema)
    raw = (schema.metadata or {}).get(b"pixelscope.columns")
    if raw is None:
        raise ValueError("not a pixelscope manifest (no pixelscope.columns metadata)")
    return json.loads(raw)
