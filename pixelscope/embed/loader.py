"""Files -> batches of model-ready uint8 tensors, decoded while the model works.

CPU: worker processes read, decode at reduced size (JPEG DCT scaling / OpenCV reduced),
EXIF-orient, convert the mode, and apply the per-image transforms; a few batches are in
flight at once, so decoding overlaps with inference. Workers write each image's tensor
straight into a shared-memory slot of its batch (a file in /dev/shm that every process maps)
and send back only the slot number, so a 150 KB tensor is copied once, not pickled, piped
and unpickled. CUDA: JPEG files are decoded in
batches on the GPU (nvJPEG via torchvision) and transformed there; files the GPU decoder
rejects (other formats, CMYK, broken streams) fall back to the CPU decoder.
A file that cannot be read is an error row (id, path, reason, detail), never a crash.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pixelscope.config import IngestConfig, PreprocessConfig
from pixelscope.embed.transforms import Preprocess, build
from pixelscope.errors import ConfigError
from pixelscope.io.decode import EXTREME_ASPECT, READ_ERROR, ImageError, decode
from pixelscope.io.location import Access, read_bytes
from pixelscope.io.parallel import die_with_parent, pool_context, resolve_workers

MAX_PIXELS = IngestConfig().max_image_pixels  # manifest images already passed ingest's own limit
_PREP: Preprocess | None = None


@dataclass
class Item:
    id: str  # content hash: the key of every store
    path: str


@dataclass
class Batch:
    ids: list[str]
    images: torch.Tensor  # uint8 N x 3 x H x W (on the device that decoded it)
    errors: list[dict[str, Any]] = field(default_factory=list)


def seed_of(image_id: str) -> int:
    return int(image_id[:15], 16) if image_id else 0


def error_row(item: Item, reason: str, detail: str) -> dict[str, Any]:
    return {"id": item.id, "path": item.path, "reason": reason, "detail": detail}


MAX_ASPECT = 32  # longer / shorter side; a model's resize brings the shorter side up to its input size


def check_aspect(height: int, width: int, prep: Preprocess) -> None:
    """Refuse a thin image before the transforms scale its shorter side up: a 1 x 6,000 PNG (18 KB)
    became 256 x 1,536,000 pixels (1.7 GB) on the way to a 224 x 224 crop."""
    short, long_ = min(height, width), max(height, width)
    if prep.min_side and long_ > MAX_ASPECT * max(1, short):
        raise ImageError(EXTREME_ASPECT, f"{width}x{height}: sides more than {MAX_ASPECT}:1 apart; resizing the "
                         f"shorter side to {prep.min_side} would make {prep.min_side * long_ // max(1, short):,} "
                         "pixels on the longer one")


def transformed(rgb: np.ndarray, prep: Preprocess, image_id: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """A decoded, oriented H x W x 3 image through the transforms (raises ImageError for a thin one);
    size: the original's (height, width) when rgb was decoded smaller. Shared by the preprocess step
    and ImageLogger(embed=True)."""
    height, width = size or rgb.shape[:2]
    check_aspect(height, width, prep)
    img = torch.from_numpy(np.require(rgb, requirements=["C", "W"])).permute(2, 0, 1)  # torch wants writable
    return prep.apply(img, seed_of(image_id))


def decode_for(data: bytes, prep: Preprocess) -> Any:
    """Encoded bytes decoded and oriented at the size the transforms start from."""
    return decode(data, working_size=4096, max_pixels=MAX_PIXELS, min_shorter=prep.min_side)


def cpu_image(item: Item, prep: Preprocess) -> torch.Tensor:
    """Read, decode, orient, transform one file on the CPU (raises ImageError)."""
    d = decode_for(read_bytes(item.path), prep)  # a file, or a store object (pixelscope.io.location)
    return transformed(d.rgb, prep, item.id, (d.height, d.width))


def _init(cfg: PreprocessConfig, worker: bool = True, access: Access | None = None) -> None:
    global _PREP
    if worker:
        die_with_parent()
        if access is not None:
            access.apply()
        torch.set_num_threads(1)  # one core per worker; the model gets the rest
    _PREP = build(cfg)


def _load_with(item: Item, prep: Preprocess) -> tuple[torch.Tensor | None, dict[str, Any] | None]:
    """(image, None) or (None, error row): a bad file or a failing plugin transform is a row."""
    try:
        return cpu_image(item, prep).contiguous(), None
    except ImageError as e:
        return None, error_row(item, e.reason, e.detail)
    except Exception as e:  # noqa: BLE001 - a plugin transform's bug must not stop the run
        return None, error_row(item, "transform_error", f"{type(e).__name__}: {e}")


def _load(item: Item) -> tuple[Item, torch.Tensor | None, dict[str, Any] | None]:
    assert _PREP is not None
    return (item, *_load_with(item, _PREP))


class Slots:
    """Shared-memory batch buffers: `count` buffers of `capacity` images of `shape` uint8, one
    file in /dev/shm mapped by the consumer and by every worker (no pickling of pixels)."""

    def __init__(self, count: int, capacity: int, shape: tuple[int, ...]):
        size = count * capacity * int(np.prod(shape))
        # /dev/shm is RAM, but a container may give it only 64 MB: then a temporary file (page cache)
        folder = "/dev/shm" if os.path.isdir("/dev/shm") and _free(Path("/dev/shm")) > 2 * size else None
        fd, self.path = tempfile.mkstemp(prefix="pixelscope-batches-", dir=folder)
        os.close(fd)
        self.count = count
        self.array = np.memmap(self.path, np.uint8, "w+", shape=(count, capacity, *shape))

    def close(self) -> None:
        del self.array
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _free(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


_MAPS: dict[str, np.memmap] = {}  # in a worker: the consumer's Slots file, mapped once


def _load_into(job: tuple[Item, str, tuple[int, ...], int, int]) -> tuple[Item, torch.Tensor | int | None,
                                                                           dict[str, Any] | None]:
    """Decode one file into slot (buffer, index) of the shared batches; a tensor of another
    shape than the slots' goes back through the pipe instead (the consumer stacks what it gets)."""
    item, path, full_shape, buffer, index = job
    assert _PREP is not None  # set by the pool's initializer
    img, err = _load_with(item, _PREP)
    if img is None or tuple(img.shape) != full_shape[2:]:
        return item, img, err
    if path not in _MAPS:
        _MAPS.clear()
        _MAPS[path] = np.memmap(path, np.uint8, "r+", shape=full_shape)
    _MAPS[path][buffer, index] = img.numpy()
    return item, index, None


def _collate(results: list[tuple[Item, torch.Tensor | int | None, dict[str, Any] | None]],
             slots: np.ndarray | None = None) -> Batch:
    """One batch from the workers' results; ints are indexes into slots (the batch's shared buffer)."""
    ok = [(it.id, img) for it, img, _ in results if img is not None]
    errors = [err for _, _, err in results if err is not None]
    if not ok:
        return Batch([], torch.empty(0, dtype=torch.uint8), errors)
    indexes = [img for _, img in ok if isinstance(img, int)]
    if slots is not None and len(indexes) == len(ok):
        images = torch.from_numpy(np.asarray(slots[indexes]))  # fancy indexing copies: the buffer is reused
    else:
        images = torch.stack([img if isinstance(img, torch.Tensor) else torch.from_numpy(np.array(_slot(slots, img)))
                              for _, img in ok])
    return Batch([i for i, _ in ok], images, errors)


def _slot(slots: np.ndarray | None, index: int) -> np.ndarray:
    assert slots is not None  # a worker returns an index only when the batch has a shared buffer
    return slots[index]


def output_shape(prep: Preprocess) -> tuple[int, ...]:
    """The shape the transforms give an image (fixed for any pipeline that ends in a crop)."""
    side = max(64, 2 * (prep.min_side or 0))
    return tuple(prep.apply(torch.zeros(3, side, side, dtype=torch.uint8)).shape)


def cpu_batches(items: list[Item], cfg: PreprocessConfig, batch_size: int, workers: int,
                prefetch: int = 3) -> Iterator[Batch]:
    """Batches in order, `prefetch` batches decoding in worker processes ahead of the consumer.

    The pool starts here, before the caller loads its model, so forked workers begin clean;
    beside other threads (an orchestrator's) they come from a fork server instead.
    """
    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    pool = None
    if workers > 1:
        pool = pool_context("pixelscope.embed.loader").Pool(workers, initializer=_init, initargs=(cfg, True, Access.here()))
    return _cpu_stream(chunks, cfg, pool, workers, prefetch)


def _cpu_stream(chunks: list[list[Item]], cfg: PreprocessConfig, pool: Any, workers: int,
                prefetch: int) -> Iterator[Batch]:
    if pool is None:
        _init(cfg, worker=False)
        for chunk in chunks:
            yield _collate([_load(it) for it in chunk])
        return
    if not chunks:
        pool.terminate()
        pool.join()
        return
    # one buffer per batch in flight (prefetch + 1) and one the consumer is reading
    slots = Slots(prefetch + 2, max(len(c) for c in chunks), output_shape(build(cfg)))
    try:
        pending: deque = deque()
        for n, chunk in enumerate(chunks):
            buffer = n % slots.count
            jobs = [(it, slots.path, slots.array.shape, buffer, k) for k, it in enumerate(chunk)]
            pending.append((buffer, pool.map_async(_load_into, jobs, chunksize=max(1, len(chunk) // (2 * workers)))))
            if len(pending) > prefetch:
                b, result = pending.popleft()
                yield _collate(result.get(), slots.array[b])
        while pending:
            b, result = pending.popleft()
            yield _collate(result.get(), slots.array[b])
    finally:
        pool.terminate()
        pool.join()
        slots.close()


def _exif_orientation(data: bytes) -> int | None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.getexif().get(0x0112)
    except Exception:  # noqa: BLE001 - no readable EXIF: as stored
        return None


def orient_chw(img: torch.Tensor, orientation: int | None) -> torch.Tensor:
    """EXIF orientation on a CHW tensor on any device (mirrors pixelscope.io.decode.orient)."""
    h, w = -2, -1
    if orientation == 2:
        return img.flip(w)
    if orientation == 3:
        return img.flip(h, w)
    if orientation == 4:
        return img.flip(h)
    if orientation == 5:
        return img.transpose(h, w)
    if orientation == 6:
        return torch.rot90(img, -1, dims=(h, w))
    if orientation == 7:
        return img.flip(h, w).transpose(h, w)
    if orientation == 8:
        return torch.rot90(img, 1, dims=(h, w))
    return img


def gpu_batches(items: list[Item], cfg: PreprocessConfig, batch_size: int, device: str,
                workers: int) -> Iterator[Batch]:
    """nvJPEG batch decode + transforms on the device; a CPU fallback for what it rejects."""
    from pixelscope.embed.torchcompat import import_torchvision

    import_torchvision()
    from torchvision.io import decode_jpeg

    prep = build(cfg)
    reader = ThreadPoolExecutor(max(2, workers))

    def read(chunk: list[Item]) -> list[tuple[Item, bytes | None]]:
        def one(it: Item) -> tuple[Item, bytes | None]:
            try:
                return it, read_bytes(it.path)
            except ImageError:
                return it, None
        return list(reader.map(one, chunk))

    chunks = [items[i:i + batch_size] for i in range(0, len(items), batch_size)]
    pending: deque = deque(reader.submit(read, c) for c in chunks[:3])
    for n in range(len(chunks)):
        files = pending.popleft().result()
        if n + 3 < len(chunks):
            pending.append(reader.submit(read, chunks[n + 3]))
        yield _gpu_batch(files, prep, device, decode_jpeg)
    reader.shutdown()


def _gpu_batch(files: list[tuple[Item, bytes | None]], prep: Preprocess, device: str, decode_jpeg) -> Batch:
    jpegs = [(it, data) for it, data in files if data and data[:3] == b"\xff\xd8\xff" and data.rstrip(b"\0")[-2:] == b"\xff\xd9"]
    decoded: dict[str, torch.Tensor] = {}
    if jpegs:
        datas = [torch.frombuffer(bytearray(d), dtype=torch.uint8) for _, d in jpegs]
        try:
            from torchvision.io import ImageReadMode

            outs = decode_jpeg(datas, mode=ImageReadMode.RGB, device=device)
        except Exception:  # noqa: BLE001 - e.g. CMYK or progressive streams nvJPEG rejects: CPU below
            outs = [None] * len(jpegs)
        for (it, jpeg), img in zip(jpegs, outs):
            if img is not None:
                img = orient_chw(img, _exif_orientation(jpeg))
                try:
                    check_aspect(img.shape[1], img.shape[2], prep)
                except ImageError:
                    continue  # the CPU path below makes its error row
                decoded[it.id] = prep.apply(img, seed_of(it.id))
    results: list[tuple[Item, torch.Tensor | int | None, dict[str, Any] | None]] = []
    for it, data in files:
        if it.id in decoded:
            results.append((it, decoded[it.id], None))
        elif data is None:
            results.append((it, None, error_row(it, READ_ERROR, "file could not be read")))
        else:
            img, err = _load_with(it, prep)
            results.append((it, None if img is None else img.to(device), err))
    return _collate(results)


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("preprocess.device: cuda, but torch sees no CUDA device (use auto or cpu)")
    return device


def batches(items: Iterable[Item], cfg: PreprocessConfig, batch_size: int | None = None) -> Iterator[Batch]:
    """Model-ready uint8 batches for items, on the configured device, in order."""
    items = list(items)
    device = resolve_device(cfg.device)
    bs = batch_size or cfg.batch_size
    workers = resolve_workers(cfg.workers)
    if device == "cpu":
        return cpu_batches(items, cfg, bs, min(workers, max(1, len(items) // bs + 1)))
    return gpu_batches(items, cfg, bs, device, workers)
