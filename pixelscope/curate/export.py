"""Exports of the curated set, each loadable by the consumer it is for, all with the same
membership and labels, each with a SHA256SUMS of its files. They are written into the curate
step's staging folder (`io.atomic.Staged`: the whole curated folder is renamed into place at the end,
so a killed run leaves the previous set, never half of a new one).

- imagefolder: `<split>/<label>/<file>` + `<split>/metadata.jsonl` (Hugging Face imagefolder)
- torchvision: `<split>/<label>/<file>` as hard links (curate.link: copy, symlink) (ImageFolder);
  from a store (paths.raw = s3://...) the files are copies (no links across stores), streamed from it
- webdataset: `<split>-%05d.tar` shards keyed by content id: `<id>.<ext>`, `.cls`, `.json`
- parquet: `data/<split>-0000i-of-0000N.parquet`, image as the datasets `Image` struct
  (bytes + path), label as a class index (`ClassLabel`), features in the schema metadata
- coco (with annotated objects): `<split>/<file>` + `annotations/instances_<split>.json`, read by
  pycocotools' COCO and torchvision's CocoDetection; masks as COCO `segmentation` (polygons as
  annotated, RLE compressed; a semantic mask PNG's class as RLE), so `COCO.annToMask` gives them back
- yolo (with annotated objects): `images/<split>/<file>`, `labels/<split>/<stem>.txt` (class cx cy w
  h, normalised) and `data.yaml` (path, one entry per split, names)

With objects, the webdataset JSON and the parquet rows carry them too: `objects` = {bbox: [[x, y,
w, h], ...] in pixels (COCO's box format), category: [class index, ...]}, the object classes as a
ClassLabel (objects.json lists them).

File and folder names come from `safe_name` / `label_dirs`: no separators, no `..`, no
absolute paths; a label that is not a safe folder name is mapped (`class-<hash>`) and the
mapping recorded (labels.json).

The exports go to a local folder, or (curate.output = s3://bucket/prefix) straight into a store:
shards are streamed to it as they are written (fsspec), tree files are copied inside the store
(a server-side copy when the raw data is in the same store), so no image passes through a local
file. Each file's SHA-256 is computed from the bytes as they are written.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.io.location import filesystem, read_bytes
from pixelscope.io.url import Url, is_url

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.+-]{0,63}$")


@dataclass(frozen=True)
class Item:
    src: Path | Url  # the raw file (inside the raw folder, checked) or store object
    id: str
    split: str
    label: str
    label_dir: str
    class_index: int
    file_name: str  # unique, safe
    meta: dict[str, Any] = field(default_factory=dict)
    objects: list[dict[str, Any]] | None = None  # kept objects: bbox (x, y, w, h px), category (index), area, iscrowd
    size: tuple[int, int] | None = None  # (width, height): what the boxes are in

    def objects_field(self) -> dict[str, list[Any]]:
        """The objects as the Hugging Face `objects` feature: lists of boxes and category indices."""
        objs = self.objects or []
        return {"bbox": [o["bbox"] for o in objs], "category": [o["category"] for o in objs]}


def label_dirs(labels: list[str]) -> dict[str, str]:
    """Label -> folder name: the label itself when safe, else class-<sha8> (recorded)."""
    out = {}
    for label in labels:
        ok = SAFE.match(label) and not label.endswith(".") and label.lower() not in ("con", "nul", "prn", "aux")
        out[label] = label if ok else f"class-{hashlib.sha256(label.encode()).hexdigest()[:8]}"
    return out


def safe_name(path: str, image_id: str) -> str:
    """A file name that cannot escape its folder and is unique: <id12>-<sanitised stem><ext>."""
    base = Path(path).name
    stem, ext = os.path.splitext(base)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._")[:80] or "image"
    ext = re.sub(r"[^A-Za-z0-9.]", "", ext.lower())[:10]
    return f"{image_id[:12]}-{stem}{ext}"


def _fresh(folder: Path | Url) -> Path | Url:
    """An empty folder for one export (inside the step's staging folder), or an emptied store prefix."""
    if isinstance(folder, Url):
        fs = filesystem(folder.protocol)
        if fs.exists(folder.key):
            fs.rm(folder.key, recursive=True)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


class _Hashing:
    """A write-only file that hashes what goes through it (a stream: tarfile's `w|` and Parquet need no seek)."""

    def __init__(self, fh: Any):
        self.fh, self.sha, self.written = fh, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.written += len(data)
        self.fh.write(data)
        return len(data)

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        self.fh.flush()

    @property
    def closed(self) -> bool:
        return bool(self.fh.closed)

    def hexdigest(self) -> str:
        return self.sha.hexdigest()


@contextmanager
def _writer(path: str) -> Iterator[_Hashing]:
    """A new file (its folders made) or store object (streamed by fsspec, multipart), hashed as written.
    A store object whose writing fails is discarded, not committed half-written (a local file lies in
    the curate step's staging folder, which a failed run discards)."""
    if not is_url(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as local:
            yield _Hashing(local)
        return
    url = Url(path)
    fh: Any = filesystem(url.protocol).open(url.key, "wb")
    try:
        yield _Hashing(fh)
    except BaseException:
        fh.discard()  # s3fs: aborts the multipart upload
        fh.closed = True  # close() would commit what was buffered
        raise
    fh.close()


def _sums(folder: Path | Url, entries: list[tuple[str, str]]) -> None:
    with _writer(str(folder / "SHA256SUMS")) as fh:
        fh.write("".join(f"{h}  {p}\n" for p, h in sorted(entries)).encode())


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _place(src: Path | Url, dst: Path | Url, how: str) -> str:
    """Put src at dst by hard link / copy / symlink; returns how it was done (cross-device or a
    store object -> copy; a store object to the same store -> a copy inside the store)."""
    if isinstance(dst, Url):
        fs = filesystem(dst.protocol)
        if isinstance(src, Url) and src.protocol == dst.protocol:
            fs.copy(src.key, dst.key)  # server-side: the bytes never leave the store
        else:
            fs.pipe_file(dst.key, read_bytes(src))
        return "copy"
    dst.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(src, Url):
        dst.write_bytes(read_bytes(src))
        return "copy"
    if how == "hardlink":
        try:
            os.link(src, dst)
            return "hardlink"
        except OSError:
            how = "copy"
    if how == "symlink":
        dst.symlink_to(src.resolve())
        return "symlink"
    shutil.copyfile(src, dst)
    return "copy"


def export_tree(items: list[Item], root: Path | Url, name: str, how: str, metadata: bool) -> dict[str, Any]:
    """`<split>/<label_dir>/<file>`: torchvision ImageFolder, or (metadata=True) HF imagefolder."""
    used: dict[str, int] = {}
    folder = _fresh(root / name)
    sums = []
    meta_rows: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        rel = f"{it.split}/{it.label_dir}/{it.file_name}"
        done = _place(it.src, folder / rel, "copy" if metadata and how == "symlink" else how)
        used[done] = used.get(done, 0) + 1
        sums.append((rel, it.id))  # the id is the sha256 of the bytes
        if metadata:
            meta_rows.setdefault(it.split, []).append(
                {"file_name": f"{it.label_dir}/{it.file_name}", "label": it.label, "id": it.id, **it.meta})
    for split, rows in meta_rows.items():
        with _writer(str(folder / split / "metadata.jsonl")) as fh:
            for row in rows:
                fh.write((json.dumps(row, ensure_ascii=False) + "\n").encode())
    _sums(folder, sums)
    return {"files": len(items), "placed": used}


def _shards(items: list[Item], shard_size: int) -> list[tuple[str, int, int, list[Item]]]:
    """(split, shard number, shard count, items) in a fixed order: per split, items by id."""
    out = []
    for split in sorted({it.split for it in items}):
        part = sorted((it for it in items if it.split == split), key=lambda it: it.id)
        chunks = [part[i:i + shard_size] for i in range(0, len(part), shard_size)]
        out += [(split, k, len(chunks), chunk) for k, chunk in enumerate(chunks)]
    return out


def _in_parallel(fn: Callable[..., str], jobs: list[tuple], workers: int) -> list[str]:
    """Run fn(*job) for every job, in worker processes when there is more than one shard."""
    if workers <= 1 or len(jobs) <= 1:
        return [fn(*job) for job in jobs]
    from concurrent.futures import ProcessPoolExecutor

    from pixelscope.io.location import Access, start_worker
    from pixelscope.io.parallel import pool_context

    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=pool_context(__name__),
                             initializer=start_worker, initargs=(Access.here(),)) as pool:
        return list(pool.map(fn, *zip(*jobs)))


def _tar_shard(path: str, chunk: list[Item]) -> str:
    import webdataset as wds

    with _writer(path) as fh:
        with wds.TarWriter(fh, mtime=0.0) as sink:
            for it in chunk:
                ext = Path(it.file_name).suffix.lstrip(".") or "img"
                extra = {"objects": it.objects_field()} if it.objects is not None else {}
                sink.write({"__key__": it.id, ext: read_bytes(it.src), "cls": it.class_index,
                            "json": {"label": it.label, "id": it.id, "file_name": it.file_name, **it.meta, **extra}})
    return fh.hexdigest()


def export_webdataset(items: list[Item], root: Path | Url, shard_size: int, workers: int = 1) -> dict[str, Any]:
    """Tar shards per split (`<split>-00000.tar`), samples in id order, keys = content ids, fixed
    mtime (the same bytes every run); shards are written by `workers` processes."""
    folder = _fresh(root / "webdataset")
    plan = _shards(items, shard_size)
    names = [f"{split}-{k:05d}.tar" for split, k, _, _ in plan]
    sums = _in_parallel(_tar_shard, [(str(folder / n), chunk) for n, (_, _, _, chunk) in zip(names, plan)], workers)
    _sums(folder, list(zip(names, sums)))
    return {"files": len(items), "shards": names}


def _parquet_shard(path: str, chunk: list[Item], features: dict[str, Any]) -> str:
    cols: dict[str, Any] = {"image": [{"bytes": read_bytes(it.src), "path": it.file_name} for it in chunk],
                            "label": [it.class_index for it in chunk], "id": [it.id for it in chunk]}
    if "objects" in features["info"]["features"]:
        cols["objects"] = [it.objects_field() for it in chunk]
    for key in features["info"]["features"]:
        if key not in cols:
            cols[key] = [it.meta.get(key) for it in chunk]
    if "objects" in cols:  # the Arrow type the `objects` feature is stored as (boxes: 4 float32)
        cols["objects"] = pa.array(cols["objects"], type=OBJECTS_ARROW)
    table = pa.table(cols).replace_schema_metadata({"huggingface": json.dumps(features)})
    with _writer(path) as fh:
        pq.write_table(table, fh, compression="none")  # encoded images do not compress
    return fh.hexdigest()


OBJECTS_ARROW = pa.struct([("bbox", pa.list_(pa.list_(pa.float32(), 4))), ("category", pa.list_(pa.int64()))])


def objects_feature(object_classes: list[str]) -> dict[str, Any]:
    """The Hugging Face feature of a detection dataset's `objects` column (datasets 5 form)."""
    box = {"feature": {"dtype": "float32", "_type": "Value"}, "length": 4, "_type": "List"}
    return {"bbox": {"feature": box, "_type": "List"},
            "category": {"feature": {"names": object_classes, "_type": "ClassLabel"}, "_type": "List"}}


def export_parquet(items: list[Item], root: Path | Url, shard_size: int, classes: list[str],
                   features: Callable[[], dict[str, Any]], workers: int = 1,
                   object_classes: list[str] | None = None) -> dict[str, Any]:
    """Hugging Face Parquet shards (`data/<split>-0000k-of-0000n.parquet`): image struct {bytes, path},
    label as ClassLabel index, the features (and `objects` with annotations); shards are written by
    `workers` processes."""
    hf = {"info": {"features": {"image": {"_type": "Image"},
                                "label": {"names": classes, "_type": "ClassLabel"},
                                "id": {"dtype": "string", "_type": "Value"}, **features(),
                                **({"objects": objects_feature(object_classes)} if object_classes is not None else {})}}}
    files: dict[str, list[str]] = {}
    folder = _fresh(root / "parquet")
    plan = _shards(items, shard_size)
    names = [f"data/{split}-{k:05d}-of-{n:05d}.parquet" for split, k, n, _ in plan]
    sums = _in_parallel(_parquet_shard, [(str(folder / name), chunk, hf) for name, (_, _, _, chunk) in zip(names, plan)],
                        workers)
    for name, (split, _, _, _) in zip(names, plan):
        files.setdefault(split, []).append(name)
    _sums(folder, list(zip(names, sums)))
    return {"files": len(items), "data_files": files}


def export_coco(items: list[Item], root: Path | Url, how: str, object_classes: list[str]) -> dict[str, Any]:
    """COCO: `<split>/<file>` placed like the tree exports, `annotations/instances_<split>.json` with the
    kept objects (category ids 1..n in object_classes order; image ids 1..n per split in id order)."""
    folder = _fresh(root / "coco")
    categories = [{"id": k + 1, "name": c, "supercategory": ""} for k, c in enumerate(object_classes)]
    sums: list[tuple[str, str]] = []
    counts: dict[str, dict[str, int]] = {}
    for split in sorted({it.split for it in items}):
        part = sorted((it for it in items if it.split == split), key=lambda it: it.id)
        images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for n, it in enumerate(part, 1):
            rel = f"{split}/{it.file_name}"
            _place(it.src, folder / rel, how)
            sums.append((rel, it.id))
            w, h = it.size or (0, 0)
            images.append({"id": n, "file_name": it.file_name, "width": w, "height": h, "pixelscope_id": it.id})
            for o in it.objects or []:
                annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id": o["category"] + 1,
                                    "bbox": o["bbox"], "area": o["area"], "iscrowd": int(o["iscrowd"]),
                                    **({"segmentation": o["segmentation"]} if o.get("segmentation") else {})})
        rel = f"annotations/instances_{split}.json"
        with _writer(str(folder / rel)) as fh:
            fh.write(json.dumps({"images": images, "annotations": annotations, "categories": categories}).encode())
        sums.append((rel, fh.hexdigest()))
        counts[split] = {"images": len(images), "objects": len(annotations)}
    _sums(folder, sums)
    return {"files": len(items), "splits": counts}


def export_yolo(items: list[Item], root: Path | Url, how: str, object_classes: list[str]) -> dict[str, Any]:
    """YOLO: `images/<split>/<file>`, `labels/<split>/<stem>.txt` (class cx cy w h, shares of the image;
    an image without objects has an empty txt: "no objects" is data) and `data.yaml`."""
    import yaml

    folder = _fresh(root / "yolo")
    sums = []
    splits = sorted({it.split for it in items})
    for it in items:
        rel = f"images/{it.split}/{it.file_name}"
        _place(it.src, folder / rel, how)
        sums.append((rel, it.id))
        w, h = it.size or (1, 1)
        lines = "".join(f"{o['category']} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} {bw / w:.6f} {bh / h:.6f}\n"
                        for o in it.objects or [] for x, y, bw, bh in [o["bbox"]])
        rel = f"labels/{it.split}/{Path(it.file_name).stem}.txt"
        with _writer(str(folder / rel)) as fh:
            fh.write(lines.encode())
        sums.append((rel, fh.hexdigest()))
    data = {"path": ".", **{s: f"images/{s}" for s in splits}, "names": dict(enumerate(object_classes))}
    with _writer(str(folder / "data.yaml")) as fh:
        fh.write(yaml.safe_dump(data, sort_keys=False).encode())
    sums.append(("data.yaml", fh.hexdigest()))
    _sums(folder, sums)
    return {"files": len(items), "splits": splits, "classes": len(object_classes)}


def read_sums(folder: Path) -> dict[str, str]:
    out = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        h, p = line.split("  ", 1)
        out[p] = h
    return out


def verify(folder: Path) -> list[str]:
    """Files whose bytes do not match SHA256SUMS (empty: all good)."""
    return [p for p, h in read_sums(folder).items() if _sha(folder / p) != h]
