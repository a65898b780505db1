"""Thumbnails for the dashboard: longer side <= 160 px, WebP, oriented as a viewer shows them.

Written once per image id into a few Parquet files (`thumbnails/part-NNNNN.parquet`, columns
id, webp, width, height) in small row groups, so a page of the grid reads a few row groups,
never every thumbnail. Incremental like the embedding store: a publish run makes only the
ids no part holds yet, in a new part; when the parts hold many stale ids (images gone from
the manifest) or are too many, they are rewritten into one.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pixelscope.io.atomic import atomic_path
from pixelscope.io.parallel import pool_context, resolve_workers

SIDE = 160
QUALITY = 70
ROW_GROUP = 64  # thumbnails per row group (~250 KB): the unit a grid page reads
PART_ROWS = 20_000
MAX_PARTS = 16
SCHEMA = pa.schema([("id", pa.string()), ("webp", pa.binary()), ("width", pa.int32()), ("height", pa.int32())])


def make_thumbnail(path: str, max_pixels: int) -> tuple[bytes, int, int] | None:
    """WebP bytes and size of one image, or None when it does not decode (ingest said why)."""
    from PIL import Image

    from pixelscope.io.decode import ImageError, decode
    from pixelscope.io.location import read_bytes

    try:
        rgb = decode(read_bytes(path), SIDE, max_pixels).rgb  # a file, or a store object
    except (ImageError, OSError):
        return None
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="WEBP", quality=QUALITY, method=4)
    return buf.getvalue(), rgb.shape[1], rgb.shape[0]


def _batch(job: tuple[list[tuple[str, str]], int]) -> list[tuple[str, bytes, int, int]]:
    items, max_pixels = job
    out = []
    for i, path in items:
        got = make_thumbnail(path, max_pixels)
        if got is not None:
            out.append((i, *got))
    return out


def _made(todo: list[tuple[str, str]], max_pixels: int, workers: int) -> Iterator[list[tuple[str, bytes, int, int]]]:
    chunks = [todo[s:s + 256] for s in range(0, len(todo), 256)]
    workers = min(resolve_workers(workers), len(chunks))
    if workers <= 1:
        for c in chunks:
            yield _batch((c, max_pixels))
        return
    from pixelscope.io.location import Access, start_worker  # the readers load decoders: only where thumbnails are made

    with ProcessPoolExecutor(workers, mp_context=pool_context("pixelscope.io.decode"),
                             initializer=start_worker, initargs=(Access.here(),)) as pool:
        yield from pool.map(_batch, [(c, max_pixels) for c in chunks])


def stored_ids(folder: Path) -> dict[Path, list[str]]:
    return {p: pq.read_table(p, columns=["id"]).column(0).to_pylist() for p in sorted(folder.glob("part-*.parquet"))}


def _write(path: Path, rows: pa.Table) -> None:
    with atomic_path(path) as tmp:
        pq.write_table(rows, tmp, row_group_size=ROW_GROUP, compression="none")  # WebP is compressed already


def update_thumbnails(folder: Path, images: list[tuple[str, str]], max_pixels: int, workers: int = 0,
                      progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Make the thumbnails of (id, absolute path) pairs that no part holds; returns counts."""
    folder.mkdir(parents=True, exist_ok=True)
    have = stored_ids(folder)
    held = {i for ids in have.values() for i in ids}
    wanted = {i for i, _ in images}
    todo = [(i, p) for i, p in dict(images).items() if i not in held]
    stale = len(held - wanted)
    made: list[tuple[str, bytes, int, int]] = []
    for done in _made(todo, max_pixels, workers):
        made.extend(done)
        if progress:
            progress(len(made), len(todo))
    new = pa.Table.from_pylist([dict(zip(SCHEMA.names, r)) for r in made], schema=SCHEMA)
    if stale > 0.25 * max(1, len(held)) or len(have) + 1 > MAX_PARTS:  # compact: one part, stale ids dropped
        keep = pa.array(sorted(wanted), pa.string())
        kept = [t.filter(pc.is_in(t.column("id"), keep)) for t in (pq.read_table(p) for p in have)]
        whole = pa.concat_tables([*kept, new]).cast(SCHEMA)
        for s, start in enumerate(range(0, max(1, whole.num_rows), PART_ROWS)):
            _write(folder / f"part-{s:05d}.parquet", whole.slice(start, PART_ROWS))
        for p in sorted(folder.glob("part-*.parquet"))[max(1, -(-whole.num_rows // PART_ROWS)):]:
            p.unlink()
        stale = 0
    elif new.num_rows:
        n = len(have)
        for start in range(0, new.num_rows, PART_ROWS):
            _write(folder / f"part-{n:05d}.parquet", new.slice(start, PART_ROWS))
            n += 1
    return {"thumbnails": len(held & wanted) + new.num_rows, "made": new.num_rows, "failed": len(todo) - len(made),
            "stale": stale}
