"""Log images from inside a running process (a model service): the features and sketches of
ingest, in UTC windows, written as the profiles `pixelscope show / merge / drift` read.

    from pixelscope import ImageLogger
    with ImageLogger(window="1h", out="reports/monitor/service") as images:
        images.log(array, prediction="cat", confidence=0.93)   # enqueues only

- `log(image, ...)` takes a NumPy array (H x W or H x W x C; uint8, or float in [0, 1];
  `channels="BGR"` for OpenCV frames), a PIL image, encoded bytes or a path. It only puts the
  image on a bounded queue; one worker thread computes the row and updates the open window's
  Profile — or, with `workers=N > 1`, hands the rows to N spawned processes and keeps their
  order. Bytes and paths go through ingest's own `row_from_bytes` (decode, EXIF, the feature
  registry, plugins); arrays and PIL images through the same shrink to the working size and the
  same features (their `bytes_per_pixel` is null: there is no encoding). Measured
  (benchmarks/bench_image_logger.py): a second thread computing rows adds nothing (the features'
  Python parts hold the GIL: 585 -> 551 images/s), so more workers are processes; one thread is the
  default, leaving the service its other cores.
- `log(..., boxes=[[x0, y0, x1, y1], ...])` profiles the model's boxes as `pred_boxes` (how many) and
  `pred_box_area` (their mean share of the image, clipped to it), as profile.predictions names a
  detector's output; `log(..., **columns)` gives values of the columns declared with
  `ImageLogger(columns={name: "numeric" | "categorical"})`, profiled and drift-tested like features.
  log() builds nothing: it appends its arguments to a C-level queue (queue.SimpleQueue), and the
  worker makes the row — so the call costs microseconds (benchmarks/bench_image_logger.py).
- `on_full`: `block` waits for room; `drop` drops the image; `sample` keeps every second image
  once the queue is half full and drops when it is full. The bound is checked before the append,
  so threads calling log() at the same moment may pass it by one image each. Every image not profiled is counted in
  its window's profile as an error row (`dropped`, `sampled_out`), so files_seen = calls to log().
  A worker error is an error row (`log_error`) with its reason, never a dead logger.
- Safe after fork: a forked child gets its own worker and queue and writes its own window files
  (`<start>-<pid>.json`); what the parent had queued stays the parent's. The day's rolling profile and
  the history are shared, so they are read, changed and written under a lock (io.atomic.exclusive).
- Windows roll on UTC boundaries of `window` ("30s", "15m", "1h", "1d"), by the time of the log()
  call. The window closes when an image of a later window arrives, `close_after_s` (5 s) after its
  end when none does (a quiet service still writes its last window), or at flush() / close() /
  interpreter exit: its profile is written atomically to `out/<start>.json`, merged into the day's
  rolling profile (`out/rolling/<day>.json`, as `pixelscope monitor` rolls drops), compared with
  the reference profile when one is given (validate's drift tests and family budgets), and handed
  to `on_window(result)`; it is also a row of the project's history (kind `service`, shown on
  the dashboard's Versions page after publish). A window flushed and then logged into again is
  merged into its file, so there is one profile per window.
- `embed=True`: each readable image also goes through the project's preprocess transforms and
  embedding model (params.preprocess / params.embed, on the CPU, in batches of EMBED_BATCH) into
  the window profile's embedding statistics — the same store key as the embed step's, so a
  reference made by the pipeline tests the windows for embedding drift (MMD on the samples,
  centroid shift). Each batch's statistics are merged into the window's: counts, sums (so the
  centroids) and the hash-keyed sample are exact; the norm and distance sketches are measured
  from each batch's own centroid. Costs the model's time per image (tens of ms on a CPU). An image
  the transforms refuse (too thin to scale up, as the preprocess step refuses it) keeps its row and
  is counted in `logger.not_embedded` by reason; so is a batch the model fails on.
- `keep_examples=K`: a uniform sample (reservoir) of K readable images per window, written as
  128-px thumbnails to `out/<start>.examples/` — examples of what a drifted window looked like (the
  history row names the folder; publish carries them into the bundle, the Versions page shows them).
  Only those K are held (by reference: do not modify an array after logging it).
- Memory: the sketches, the queue, one batch of rows and the K examples — never the stream.

`profile_images(images)` profiles a batch in a notebook; `compare(reference, current)` is the
drift table the CLI computes.
"""

from __future__ import annotations

import atexit
import hashlib
import io
import multiprocessing
import os
import queue
import threading
import time
import warnings
import weakref
from collections import Counter, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from PIL import Image

from pixelscope.config import Params, parse_params
from pixelscope.errors import BadInput, ConfigError
from pixelscope.features.registry import ImageView, compute_features
from pixelscope.ingest.step import _init_worker, _Settings, manifest_columns, read_file, row_from_bytes, settings_for
from pixelscope.io.decode import ImageError, shrink, to_rgb8
from pixelscope.io.manifest import column_kinds, manifest_schema
from pixelscope.profile.profile import Profile
from pixelscope.validate.drift import DriftRow
from pixelscope.validate.drift import compare as compare_profiles

# as profile.predictions names them: the predicted class, its confidence, the number of boxes and their mean area
PREDICTION_KINDS = {"pred_label": "categorical", "pred_confidence": "numeric", "pred_boxes": "numeric",
                    "pred_box_area": "numeric"}
COLUMN_TYPES = {"numeric": pa.float64(), "categorical": pa.string()}  # the kinds a user's own column may have
BATCH_ROWS = 256  # rows per Profile.update (a KLL update per row would be 10-30x slower)
EMBED_BATCH = 32  # images per model call with embed=True
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def window_seconds(window: str) -> int:
    """"30s" / "15m" / "1h" / "1d" -> seconds; a ConfigError naming the value otherwise."""
    try:
        n, unit = int(window[:-1]), window[-1]
        seconds = n * UNITS[unit]
    except (ValueError, KeyError, IndexError):
        raise ConfigError(f"ImageLogger window {window!r}: a number and a unit (s, m, h, d), e.g. '1h'") from None
    if seconds <= 0 or 86400 % seconds and seconds % 86400:
        raise ConfigError(f"ImageLogger window {window!r}: must divide a day (or be whole days), so windows "
                          "start on the same UTC boundaries every day")
    return seconds


def _pixels(image: Any, channels: str) -> tuple[np.ndarray, str, bool]:
    """An array or PIL image -> (full-size HxWx3 uint8 RGB, its mode in words, had alpha)."""
    if isinstance(image, Image.Image):
        return to_rgb8(image), image.mode, "A" in image.getbands()
    a = np.asarray(image)
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (1, 3, 4)) or 0 in a.shape:
        raise BadInput(f"an image array must be H x W or H x W x 1/3/4, got shape {a.shape}")
    if a.dtype.kind == "f":
        if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
            raise BadInput("a float image array must hold finite values in [0, 1]")
        a = np.rint(a * 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        raise BadInput(f"an image array must be uint8 or float in [0, 1], got {a.dtype}")
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    alpha = a.ndim == 3 and a.shape[2] == 4
    if a.ndim == 2:
        return np.repeat(a[:, :, None], 3, axis=2), "L", False
    rgb = a[:, :, :3]
    if channels == "BGR":
        rgb = rgb[:, :, ::-1]
    return np.ascontiguousarray(rgb), "RGBA" if alpha else "RGB", alpha


def image_row(image: Any, s: _Settings, row: dict[str, Any], channels: Literal["RGB", "BGR"] = "RGB") -> dict[str, Any]:
    """One logged image -> a manifest row (an error row with a reason, never an exception, for a bad image)."""
    if isinstance(image, (str, Path)):
        row.setdefault("path", str(image))
        try:
            return row_from_bytes(read_file(str(image), s.max_bytes), s, row)
        except ImageError as e:
            return {**row, "status": "error", "reason": e.reason, "detail": e.detail}
    if isinstance(image, (bytes, bytearray, memoryview)):
        return row_from_bytes(bytes(image), s, row)
    try:
        rgb, mode, alpha = _pixels(image, channels)
    except (BadInput, ImageError) as e:
        return {**row, "status": "error", "reason": "bad_array", "detail": str(e)}
    h, w = rgb.shape[:2]
    meta = {"format": "array" if isinstance(image, np.ndarray) else "PIL", "mode": mode, "decoder": "none",
            "width": w, "height": h, "frames": 1, "has_alpha": alpha}
    row.update(meta, id=hashlib.sha256(f"{rgb.shape}".encode() + rgb.tobytes()).hexdigest(), bytes=None)
    values, problems = compute_features(ImageView(shrink(rgb, s.working_size), {**meta, "bytes": None},
                                                  s.dark_level, s.bright_level))
    row.update(values, warning="; ".join(problems) or None, status="ok")
    return row


def box_stats(boxes: Any, width: int, height: int) -> tuple[int | None, float | None, str | None]:
    """Boxes as (x0, y0, x1, y1) in the logged image's pixels -> (how many, their mean area as a share
    of the image, clipped to it; a warning or None). Boxes that are not N x 4 finite numbers are not
    guessed at: (None, None, the reason)."""
    try:
        b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) if len(boxes) else np.empty((0, 4))
    except (TypeError, ValueError):
        return None, None, f"boxes not understood (want N x (x0, y0, x1, y1)): {str(boxes)[:60]}"
    if not np.isfinite(b).all():
        return None, None, "boxes with NaN or infinite coordinates"
    if len(b) == 0:
        return 0, None, None
    w = np.clip(b[:, 2], 0, width) - np.clip(b[:, 0], 0, width)
    h = np.clip(b[:, 3], 0, height) - np.clip(b[:, 1], 0, height)
    area = np.clip(w, 0, None) * np.clip(h, 0, None) / (width * height)
    empty = int((area <= 0).sum())
    return len(b), float(area.mean()), f"{empty} of {len(b)} boxes with no area in the image" if empty else None


class _Rows:
    """The manifest schema (plugins included), the prediction columns and the user's own columns;
    rows -> Arrow tables."""

    def __init__(self, params: Params, columns: dict[str, str] | None = None):
        base = manifest_schema(manifest_columns(params.features.plugins))
        own = columns or {}
        taken = sorted(set(own) & (set(base.names) | set(PREDICTION_KINDS)))
        if taken:
            raise ConfigError(f"ImageLogger columns {taken}: already a manifest or prediction column; choose other names")
        wrong = {k: v for k, v in own.items() if v not in COLUMN_TYPES}
        if wrong:
            raise ConfigError(f"ImageLogger columns {wrong}: each kind must be 'numeric' or 'categorical'")
        self.own = own
        self.schema = pa.schema(list(base) + [pa.field("pred_label", pa.string())]
                                + [pa.field(c, pa.float64()) for c in PREDICTION_KINDS if c != "pred_label"]
                                + [pa.field(c, COLUMN_TYPES[k]) for c, k in own.items()])
        self.kinds = {**column_kinds(base), **PREDICTION_KINDS, **own}
        cfg = params.profile
        self.profile_cfg = cfg.model_copy(update={"segments": [*cfg.segments, *(["pred_label"] if "pred_label"
                                                                                  not in cfg.segments else [])]})

    def empty(self) -> Profile:
        return Profile.empty(self.kinds, self.profile_cfg)

    def table(self, rows: list[dict[str, Any]]) -> pa.Table:
        names = set(self.schema.names)
        return pa.Table.from_pylist([{k: v for k, v in r.items() if k in names} for r in rows], schema=self.schema)

    def own_values(self, columns: dict[str, Any]) -> dict[str, Any]:
        """The user's column values as their declared kinds (a number that is not one: null, said in the warning)."""
        out: dict[str, Any] = {}
        for name, value in columns.items():
            if value is None or self.own[name] == "categorical":
                out[name] = None if value is None else str(value)
                continue
            try:
                out[name] = float(value)
            except (TypeError, ValueError):
                out[name] = None
                out.setdefault("_warnings", []).append(f"column {name}: {str(value)[:40]!r} is not a number")
        return out


def _base_row(source: str, label: Any, prediction: Any, confidence: Any) -> dict[str, Any]:
    return {"path": None, "source": source, "label": None if label is None else str(label), "split": None,
            "pred_label": None if prediction is None else str(prediction),
            "pred_confidence": None if confidence is None else float(confidence)}


def _with_extras(row: dict[str, Any], boxes: Any, own: dict[str, Any]) -> dict[str, Any]:
    """A computed row plus the boxes' statistics and the user's columns (their problems in `warning`)."""
    problems = own.pop("_warnings", [])
    row.update(own)
    if boxes is not None and row.get("status") == "ok":
        row["pred_boxes"], row["pred_box_area"], problem = box_stats(boxes, row["width"], row["height"])
        problems += [problem] if problem else []
    if problems:
        row["warning"] = "; ".join([row["warning"], *problems] if row.get("warning") else problems)
    return row


def _kind_of(values: list[Any]) -> str:
    """numeric when every value given is a number (bools are categories), else categorical."""
    given = [v for v in values if v is not None]
    numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, (bool, np.bool_)) for v in given)
    return "numeric" if given and numeric else "categorical"


def profile_images(images: Iterable[Any], params: Params | None = None, *, labels: Iterable[Any] | None = None,
                   predictions: Iterable[Any] | None = None, confidences: Iterable[Any] | None = None,
                   boxes: Iterable[Any] | None = None, source: str = "notebook",
                   channels: Literal["RGB", "BGR"] = "RGB", **columns: Iterable[Any]) -> Profile:
    """A profile of a batch of images (arrays, PIL images, bytes or paths), in this process. Every
    other keyword is a column of your own, one value per image (numbers: numeric, else categorical):
    `profile_images(frames, camera=["a", "b", ...], latency_ms=[12.1, 9.8, ...])`."""
    params = params or parse_params({})
    images = list(images)
    given = {"labels": labels, "predictions": predictions, "confidences": confidences, "boxes": boxes, **columns}
    values = {name: list(v) if v is not None else [None] * len(images) for name, v in given.items()}
    wrong = [name for name, v in values.items() if len(v) != len(images)]
    if wrong:
        raise BadInput(f"profile_images: {', '.join(wrong)} must have one value per image ({len(images)})")
    rows_of = _Rows(params, {name: _kind_of(values[name]) for name in columns})
    s = settings_for(params.ingest, params.features)
    profile = rows_of.empty()
    batch = []
    for k, image in enumerate(images):
        base = _base_row(source, values["labels"][k], values["predictions"][k], values["confidences"][k])
        row = image_row(image, s, base, channels)
        batch.append(_with_extras(row, values["boxes"][k], rows_of.own_values({c: values[c][k] for c in columns})))
        if len(batch) >= BATCH_ROWS:
            profile.update(rows_of.table(batch))
            batch = []
    if batch:
        profile.update(rows_of.table(batch))
    return profile


def compare(reference: Profile, current: Profile, params: Params | None = None) -> list[DriftRow]:
    """The drift table of current against reference, decided with the project's family budgets
    (features with fewer than drift.min_rows values on either side are not tested)."""
    return compare_profiles(reference, current, (params or parse_params({})).drift)


@dataclass
class WindowResult:
    """What a closed window hands to on_window."""

    start: datetime
    end: datetime
    profile_file: Path
    rolling_file: Path
    images: int  # calls to log() in the window
    profiled: int  # rows with features
    not_profiled: dict[str, int]  # reason -> count (dropped, sampled_out, log_error, decode reasons)
    drift: list[DriftRow] | None = None  # None without a reference
    drifted: bool = False
    examples: Path | None = None  # the folder of the window's example thumbnails (keep_examples)


class _Item:
    """One log() call as queued: the arguments as given (the row is built by the worker, so the
    call stays an append)."""

    __slots__ = ("when", "image", "label", "prediction", "confidence", "boxes", "columns", "channels")

    def __init__(self, when: float, image: Any, label: Any, prediction: Any, confidence: Any, boxes: Any,
                 columns: dict[str, Any], channels: Literal["RGB", "BGR"]):
        self.when, self.image, self.label, self.prediction = when, image, label, prediction
        self.confidence, self.boxes, self.columns, self.channels = confidence, boxes, columns, channels


_STOP = object()


def _error_row(base: dict[str, Any], e: Exception) -> dict[str, Any]:
    """The row of an image whose features raised: counted, with the reason, never a dead logger."""
    return {**base, "status": "error", "reason": "log_error", "detail": f"{type(e).__name__}: {e}"}


@dataclass
class _Window:
    start: int
    profile: Profile
    rows: list[dict[str, Any]] = field(default_factory=list)
    readable: int = 0  # images with a row of features so far
    examples: list[_Item] = field(default_factory=list)  # a uniform sample of them (keep_examples)
    to_embed: list[tuple[str, Any, str | None]] = field(default_factory=list)  # (id, tensor, label), embed=True


class _Embedding:
    """embed=True: the project's preprocess transforms and model on the CPU, batch by batch, into
    mergeable EmbeddingStats (the embed step's key, so pipeline references compare)."""

    def __init__(self, params: Params):
        from pixelscope.embed.infer import Embedder
        from pixelscope.embed.transforms import build

        self.params = params
        self.prep = build(params.preprocess)
        self.embedder = Embedder(params.embed, self.prep, "cpu")

    def tensor(self, image: Any, channels: Literal["RGB", "BGR"], image_id: str) -> Any:
        """One logged image, decoded and transformed by the preprocess step's own code (raises
        ImageError, e.g. for an image too thin to scale up)."""
        from pixelscope.embed.loader import decode_for, transformed

        if isinstance(image, (str, Path)):
            image = Path(image).read_bytes()
        if isinstance(image, (bytes, bytearray, memoryview)):
            d = decode_for(bytes(image), self.prep)
            return transformed(d.rgb, self.prep, image_id, (d.height, d.width))
        return transformed(_pixels(image, channels)[0], self.prep, image_id)

    def empty(self) -> Any:
        """Statistics of no image: a window without a readable one still merges with the others."""
        from pixelscope.profile.embedding import EmbeddingStats

        p = self.params
        return EmbeddingStats(p.embed.model, self.embedder.key, self.embedder.dim, kll_k=p.profile.segment_kll_k,
                              sample_size=p.embed.sample_size, max_labels=p.profile.max_segment_values)

    def stats(self, batch: list[tuple[str, Any, str | None]]) -> Any:
        import torch

        from pixelscope.profile.embedding import EmbeddingStats

        ids = np.array([i for i, _, _ in batch])
        vectors = self.embedder(torch.stack([t for _, t, _ in batch]))
        labels = [label for _, _, label in batch]
        p = self.params
        return EmbeddingStats.build(p.embed.model, self.embedder.key, self.embedder.dim, lambda: [(ids, vectors, labels)],
                                    kll_k=p.profile.segment_kll_k, sample_size=p.embed.sample_size,
                                    max_labels=p.profile.max_segment_values)


class ImageLogger:
    """Profiles images logged from a running process, one UTC window at a time (see the module doc)."""

    def __init__(self, params: Params | None = None, *, window: str = "1h", out: str | Path = "reports/monitor/service",
                 reference: Profile | str | Path | None = None, queue_size: int = 1024,
                 on_full: Literal["block", "drop", "sample"] = "block",
                 on_window: Callable[[WindowResult], None] | None = None, source: str = "service",
                 project: str | Path = ".", history: bool = True, workers: int = 1, keep_examples: int = 0,
                 close_after_s: float | None = 5.0, columns: dict[str, str] | None = None, embed: bool = False,
                 clock: Callable[[], float] = time.time):
        if on_full not in ("block", "drop", "sample"):
            raise ConfigError(f"ImageLogger on_full {on_full!r}: block, drop or sample")
        self.params = params or parse_params({})
        self.seconds = window_seconds(window)
        self.out = Path(out)
        self.reference = Profile.load(reference) if isinstance(reference, (str, Path)) else reference
        self.on_full, self.on_window, self.source, self.clock = on_full, on_window, source, clock
        self.project, self.history = Path(project), history
        if workers < 1:
            raise ConfigError(f"ImageLogger workers {workers}: at least 1")
        self.workers = workers
        self.keep_examples = keep_examples
        if close_after_s is not None and close_after_s < 0:
            raise ConfigError(f"ImageLogger close_after_s {close_after_s}: >= 0, or None (close only on a later image)")
        self.close_after_s = close_after_s
        self._rng = np.random.default_rng(0)
        self._rows = _Rows(self.params, columns)
        self._embedding = _Embedding(self.params) if embed else None
        self._settings = settings_for(self.params.ingest, self.params.features)
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:  # spawned, not forked: a service's threads must not be copied mid-lock
            self._pool = ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(self._settings, True),
                                             mp_context=multiprocessing.get_context("spawn"))
        if queue_size < 1:
            raise ConfigError(f"ImageLogger queue_size {queue_size}: at least 1")
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()  # C-level put: no Python lock in log()
        self._maxsize = queue_size
        self._room = threading.Condition()  # on_full="block": log() waits here until the worker takes an item
        self._blocked = 0  # callers waiting for room
        self._lost: dict[int, Counter[str]] = {}  # window start -> reason -> images never queued
        self._lost_lock = threading.Lock()
        self._sampled = 0
        self._window: _Window | None = None
        self._closed = False
        self.windows: list[WindowResult] = []  # every window closed so far
        self.errors: list[str] = []  # windows that could not be written (the logger goes on)
        self.not_embedded: Counter[str] = Counter()  # embed=True: readable images without an embedding, by reason
        self._suffix = ""  # a forked child writes its own window files: <start>-<pid>.json
        self._start_worker()
        atexit.register(self.close)
        alive = weakref.ref(self)

        def in_child() -> None:
            logger = alive()
            if logger is not None:
                logger._after_fork()

        os.register_at_fork(after_in_child=in_child)

    def _start_worker(self) -> None:
        self._worker = threading.Thread(target=self._work, name="pixelscope-image-logger", daemon=True)
        self._worker.start()

    def _after_fork(self) -> None:
        """In a forked child: the parent's worker thread is not here. Start afresh (what the parent had
        queued stays the parent's) with this process's own window files."""
        if self._closed:
            return
        self._queue, self._room, self._blocked = queue.SimpleQueue(), threading.Condition(), 0
        self._pool, self.workers = None, 1  # the parent's processes are not this child's
        self._lost, self._lost_lock, self._window, self._sampled = {}, threading.Lock(), None, 0
        self.windows, self.errors, self._suffix, self.not_embedded = [], [], f"-{os.getpid()}", Counter()
        self._start_worker()

    # --- the caller's side -------------------------------------------------------------

    def log(self, image: Any, *, label: Any = None, prediction: Any = None, confidence: float | None = None,
            boxes: Any = None, channels: Literal["RGB", "BGR"] = "RGB", **columns: Any) -> bool:
        """Queue one image (array, PIL image, bytes or path); False when the on_full policy left it out.

        boxes: the model's boxes as (x0, y0, x1, y1) in the image's pixels (profiled as `pred_boxes`, the
        count, and `pred_box_area`, their mean share of the image); columns: values of the columns
        declared with ImageLogger(columns={name: "numeric" | "categorical"})."""
        if self._closed:
            raise RuntimeError("this ImageLogger is closed")
        if columns and not columns.keys() <= self._rows.own.keys():
            undeclared = sorted(columns.keys() - self._rows.own.keys())
            raise BadInput(f"ImageLogger.log: column(s) {undeclared} not declared; declare them: "
                           f"ImageLogger(columns={{{undeclared[0]!r}: 'numeric' or 'categorical'}})")
        item = _Item(self.clock(), image, label, prediction, confidence, boxes, columns, channels)
        q = self._queue
        if q.qsize() >= self._maxsize // 2 and self._over(item):
            return False
        q.put(item)
        return True

    def _over(self, item: _Item) -> bool:
        """The queue is half full or more: apply on_full. True when the image was left out (and counted)."""
        if self.on_full == "block":
            if self._queue.qsize() >= self._maxsize:
                with self._room:
                    self._blocked += 1
                    while self._queue.qsize() >= self._maxsize and not self._closed:
                        self._room.wait(0.01)
                    self._blocked -= 1
            return False
        if self.on_full == "sample" and self._queue.qsize() < self._maxsize:
            self._sampled += 1
            if not self._sampled % 2:
                return False
            reason = "sampled_out"
        elif self._queue.qsize() < self._maxsize:
            return False
        else:
            reason = "dropped"
        self._count_lost(item.when, reason)
        return True

    def flush(self) -> None:
        """Wait until every queued image is profiled, then close the open window."""
        done = threading.Event()
        self._queue.put(("flush", done))
        done.wait()

    def close(self) -> None:
        """Profile what is queued, close the open window and stop the worker (safe to call twice)."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._worker.join()
        atexit.unregister(self.close)

    def __enter__(self) -> ImageLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _count_lost(self, when: float, reason: str) -> None:
        with self._lost_lock:
            self._lost.setdefault(self._start_of(when), Counter())[reason] += 1

    def _start_of(self, when: float) -> int:
        return int(when // self.seconds * self.seconds)

    # --- the worker's side -------------------------------------------------------------

    def _work(self) -> None:
        """Take items in order; rows are computed here (workers=1) or in the process pool, and always
        put into the windows here, in the order log() was called."""
        pending: deque[tuple[_Item, Any]] = deque()  # (item, its row or the future of it)
        while True:
            try:
                item = self._queue.get(block=False) if pending else self._queue.get(timeout=self._idle_wait())
            except queue.Empty:  # nothing new: finish the oldest row in flight, or close a window that has ended
                if pending:
                    self._finish(*pending.popleft())
                elif self._window is not None and self._ended(self._window):
                    self._close_window_safely()
                continue
            if item is _STOP or isinstance(item, tuple):  # stop, or flush: everything before it first
                while pending:
                    self._finish(*pending.popleft())
                self._close_window_safely()
                if isinstance(item, tuple):
                    item[1].set()
                if item is _STOP:
                    if self._pool is not None:
                        self._pool.shutdown()
                    return
                continue
            if self._blocked and self._queue.qsize() <= self._maxsize * 3 // 4:  # callers wait for room
                with self._room:  # (woken at a low-water mark, not per image: a wake-up per image costs a GIL hand-off)
                    self._room.notify_all()
            if self._pool is None:
                self._finish(item, self._row(item))
                continue
            try:
                base = self._base(item)
            except Exception as e:  # noqa: BLE001 - e.g. a confidence that is not a number
                self._finish(item, _error_row({"source": self.source}, e))
                continue
            pending.append((item, self._pool.submit(image_row, item.image, self._settings, base, item.channels)))
            if len(pending) >= 4 * self.workers:
                self._finish(*pending.popleft())

    def _ended(self, w: _Window) -> bool:
        return self.close_after_s is not None and self.clock() >= w.start + self.seconds + self.close_after_s

    def _idle_wait(self) -> float | None:
        """How long the idle worker waits for an image before it looks at the clock again: until the
        open window is due to close, at most a second (the clock may be a test's); None: no window open."""
        if self._window is None or self.close_after_s is None:
            return None
        due = self._window.start + self.seconds + self.close_after_s - self.clock()
        return min(1.0, max(0.01, due))

    def _base(self, item: _Item) -> dict[str, Any]:
        return _base_row(self.source, item.label, item.prediction, item.confidence)

    def _row(self, item: _Item) -> dict[str, Any]:
        base: dict[str, Any] = {"source": self.source}
        try:
            base = self._base(item)
            return image_row(item.image, self._settings, dict(base), item.channels)
        except Exception as e:  # noqa: BLE001 - one bad image must not stop the logger
            return _error_row(base, e)

    def _finish(self, item: _Item, row: Any) -> None:
        """Put one image's row into its window (closing the open one when it is earlier)."""
        if isinstance(row, Future):
            try:
                row = row.result()
            except Exception as e:  # noqa: BLE001 - a worker process failed on it: an error row
                row = _error_row({"source": self.source}, e)
        if row.get("status") == "ok" and (item.boxes is not None or item.columns):
            try:
                row = _with_extras(row, item.boxes, self._rows.own_values(item.columns))
            except Exception as e:  # noqa: BLE001 - never a dead logger
                row = _error_row(row, e)
        start = self._start_of(item.when)
        if self._window is not None and start != self._window.start:
            self._close_window_safely()
        if self._window is None:
            self._window = _Window(start, self._rows.empty())
        self._window.rows.append(row)
        if self.keep_examples and row.get("status") == "ok":
            self._sample(self._window, item)
        if self._embedding is not None and row.get("status") == "ok":
            self._embed(self._window, item, row)
        if len(self._window.rows) >= BATCH_ROWS:
            self._window.profile.update(self._rows.table(self._window.rows))
            self._window.rows = []

    def _embed(self, w: _Window, item: _Item, row: dict[str, Any]) -> None:
        """Queue the image for the model; a batch full is embedded and merged into the window's statistics.
        An image the transforms refuse (an extreme aspect) keeps its row, without an embedding."""
        from pixelscope.io.decode import ImageError

        assert self._embedding is not None
        try:
            w.to_embed.append((row["id"], self._embedding.tensor(item.image, item.channels, row["id"]), row.get("label")))
        except ImageError as e:
            self.not_embedded[e.reason] += 1
        except Exception as e:  # noqa: BLE001 - e.g. a plugin transform's bug: counted, never a dead logger
            self.not_embedded[type(e).__name__] += 1
        if len(w.to_embed) >= EMBED_BATCH:
            self._embed_pending(w)

    def _embed_pending(self, w: _Window) -> None:
        if self._embedding is not None and w.profile.embedding is None:
            w.profile.embedding = self._embedding.empty()
        if not w.to_embed or self._embedding is None:
            return
        batch, w.to_embed = w.to_embed, []
        try:
            stats = self._embedding.stats(batch)
        except Exception as e:  # noqa: BLE001 - the model failed on a batch: counted, the rows stay
            self.not_embedded[type(e).__name__] += len(batch)
            return
        assert w.profile.embedding is not None  # set just above
        w.profile.embedding.merge(stats)

    def _sample(self, w: _Window, item: _Item) -> None:
        """Reservoir sampling (Algorithm R): every readable image of the window is kept with the same chance."""
        w.readable += 1
        if len(w.examples) < self.keep_examples:
            w.examples.append(item)
        else:
            k = int(self._rng.integers(0, w.readable))
            if k < self.keep_examples:
                w.examples[k] = item

    def _write_examples(self, w: _Window, folder: Path) -> None:
        """The window's sampled images as 128-px JPEG thumbnails (decoded again only for the K kept); one
        that cannot be read again (a path deleted since) is skipped, so the window is still recorded."""
        from pixelscope.io.atomic import write_bytes_atomic
        from pixelscope.io.decode import decode

        for k, item in enumerate(w.examples):
            image = item.image
            try:
                if isinstance(image, (str, Path)):
                    image = Path(image).read_bytes()
                if isinstance(image, (bytes, bytearray, memoryview)):
                    rgb = decode(bytes(image), 128, self._settings.max_pixels).rgb
                else:
                    rgb = shrink(_pixels(image, item.channels)[0], 128)
            except (OSError, ImageError, BadInput):
                continue
            buf = io.BytesIO()
            Image.fromarray(rgb).save(buf, "JPEG", quality=85)
            write_bytes_atomic(folder / f"{k:03d}.jpg", buf.getvalue())

    def _record(self, result: WindowResult, profile: Profile, name: str) -> None:
        """The window as a row of the project's history (kind `service`), as `pixelscope monitor` records a drop."""
        from pixelscope.versions.history import add_row, version_row
        from pixelscope.versions.source import Version

        version = Version(name, "service", profile, meta={"rev": f"{self.source}@{name}",
                                                         "date": result.start.isoformat(timespec="seconds")})
        row = version_row(version, f"service:{self.source}:{name}", "service", None, None, self.params.drift)
        drifted = sorted({r.feature for r in result.drift or [] if r.drift})
        examples = None
        if result.examples is not None:  # relative to the project when inside it, so the project can move
            folder = result.examples.resolve()
            root = self.project.resolve()
            examples = folder.relative_to(root).as_posix() if folder.is_relative_to(root) else str(folder)
        row.update(window=f"{result.start:%Y-%m-%dT%H:%M}/{result.end:%H:%M}", examples=examples,
                   drift_ref=None if result.drift is None else bool(drifted), drift_ref_features=", ".join(drifted))
        add_row(self.params, self.project, row)

    def _close_window_safely(self) -> None:
        try:
            self._close_window()
        except Exception as e:  # noqa: BLE001 - e.g. a full disk: say so, keep logging
            self._window = None
            self.errors.append(f"closing a window failed: {type(e).__name__}: {e}")
            warnings.warn(f"pixelscope ImageLogger: {self.errors[-1]}", stacklevel=1)

    def _close_window(self) -> None:
        """Write the open window's profile (with the images lost to the queue policy up to it), roll it, test it."""
        with self._lost_lock:
            due = [start for start in self._lost if self._window is None or start <= self._window.start]
            lost: Counter[str] = Counter()
            for start in due:
                lost.update(self._lost.pop(start))
            if self._window is None and lost:
                self._window = _Window(min(due), self._rows.empty())
        w = self._window
        if w is None:
            return
        self._window = None
        if w.rows:
            w.profile.update(self._rows.table(w.rows))
        self._embed_pending(w)
        if lost:
            w.profile.update(pa.table({"status": ["error"] * sum(lost.values()),
                                       "reason": [r for r, n in sorted(lost.items()) for _ in range(n)]}))
        from pixelscope.monitor import update_rolling

        began = datetime.fromtimestamp(w.start, UTC)
        name = began.strftime("%Y%m%dT%H%M%SZ") + self._suffix
        self.out.mkdir(parents=True, exist_ok=True)
        profile_file = self.out / f"{name}.json"
        if profile_file.exists():  # the window was closed before (a flush) and went on: one profile for it
            w.profile = Profile.load(profile_file).merge(w.profile)
        w.profile.save(profile_file)
        examples = self.out / f"{name}.examples" if w.examples else None
        if examples is not None:
            self._write_examples(w, examples)
        rolling, _ = update_rolling(self.out / "rolling", began.strftime("%Y-%m-%d"), name, profile_file)
        drift = compare(self.reference, w.profile, self.params) if self.reference is not None else None
        result = WindowResult(began, datetime.fromtimestamp(w.start + self.seconds, UTC), profile_file, rolling,
                              w.profile.files_seen, w.profile.ok, dict(w.profile.errors_by_reason), drift,
                              bool(drift and any(r.drift for r in drift)), examples)
        if self.history:
            self._record(result, w.profile, name)
        self.windows.append(result)
        if self.on_window is not None:
            self.on_window(result)
