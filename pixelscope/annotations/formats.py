"""Readers of detection and segmentation annotations: COCO JSON, YOLO folders, Pascal VOC XML and
semantic-segmentation mask PNGs, each into the same `Read` (categories, the images the files name,
and one `RawObject` per annotated object), so that everything after reading is format-free.

What a reader does not guess at becomes a `Problem` naming the file, the object and the rule (a
line that is not five numbers, an XML file that does not parse); what can only be checked against
the images (a box outside its image, a mask of another size) is left to pixelscope.annotations.objects.

- COCO: `images` (file_name, width, height), `annotations` (bbox x, y, w, h; `segmentation` as
  polygons or RLE, compressed or not; `iscrowd`; `score` in a results file), `categories`.
  Polygon and RLE areas through pycocotools.mask (the format's own code).
- YOLO: one `<stem>.txt` per image (`class cx cy w h`, normalised; a polygon `class x1 y1 x2 y2 ...`;
  a sixth number on a box line is a confidence), class names from `data.yaml` (`names:` a list or
  a mapping) or `classes.txt`; an image's txt is found by its stem.
- VOC: one XML per image (`filename`, `size`, `object` with `name`, `bndbox`, `truncated`,
  `difficult`), parsed with defusedxml (no entity expansion from a hostile file).
- Masks: one PNG per image (same stem), a class index per pixel; a class map (`classes.txt`, one
  name per line, or `data.yaml` names) names the indices; index 0 is background unless named, 255
  is "ignore". Semantic masks have no instances: each class present is one object (its pixels'
  bounding box, its pixel count as the mask area, and its pixels as a compressed RLE).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from pixelscope.errors import BadInput, InputMissing

Format = Literal["coco", "yolo", "voc", "masks"]
FORMATS: tuple[Format, ...] = ("coco", "yolo", "voc", "masks")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}
IGNORE_INDEX = 255  # a mask pixel value meaning "not labelled" (VOC, Cityscapes, ...)


@dataclass(slots=True)
class RawObject:
    """One object as the annotation file gives it; boxes absolute (x0, y0, x1, y1) or normalised."""

    image: str  # the image's name as the file gives it (COCO file_name, VOC filename, YOLO / mask stem)
    source: str  # the annotation file it came from
    index: int  # its position among that image's objects
    class_id: int | None
    class_name: str | None = None  # VOC names classes directly
    box: tuple[float, float, float, float] | None = None
    normalised: bool = False  # YOLO: coordinates are shares of the image's width and height
    polygons: list[list[float]] | None = None
    rle: dict[str, Any] | None = None
    mask_area: float | None = None  # masks: pixel count of the class
    mask_size: tuple[int, int] | None = None  # masks: (width, height) of the mask file
    crowd: bool = False
    truncated: bool | None = None  # VOC says so itself
    score: float | None = None


@dataclass
class Problem:
    """Something in the annotation files that is not an object: which file, which entry, which rule."""

    source: str
    rule: str
    detail: str
    image: str | None = None


@dataclass
class Read:
    format: Format
    categories: dict[int, str]  # class id -> name
    objects: list[RawObject] = field(default_factory=list)
    images: dict[str, tuple[int, int] | None] = field(default_factory=dict)  # named images -> (w, h) if given
    problems: list[Problem] = field(default_factory=list)
    image_ids: dict[Any, str] = field(default_factory=dict)  # COCO: image id -> file name (a results file needs it)


def detect(path: Path) -> Format:
    """The format of an annotation path, when it is unambiguous; a BadInput saying what was found otherwise."""
    if not path.exists():
        raise InputMissing(f"ingest.annotations.path {path}: not found")
    if path.is_file():
        if path.suffix.lower() == ".json":
            return "coco"
        raise BadInput(f"ingest.annotations.path {path}: a file must be COCO JSON; YOLO, VOC and masks are folders")
    files = [f for f in path.rglob("*") if f.is_file()]
    kinds = {f.suffix.lower() for f in files}
    labels = any(f.suffix.lower() == ".txt" and f.name != "classes.txt" for f in files)  # YOLO's per-image txt
    found = [name for name, hit in (("yolo", labels), ("voc", ".xml" in kinds),
                                    ("masks", ".png" in kinds and not labels and ".xml" not in kinds)) if hit]
    if len(found) != 1:
        raise BadInput(f"ingest.annotations.path {path}: cannot tell the format (found {sorted(kinds) or 'no files'}); "
                       "set ingest.annotations.format to one of " + ", ".join(FORMATS))
    return found[0]  # type: ignore[return-value]


def read(path: Path, fmt: Format | None = None, ground_truth: Read | None = None) -> Read:
    """Read annotations (or a model's predicted boxes, with scores). A COCO *results* file (a JSON
    list of {image_id, category_id, bbox, score}) names images and classes by the ground truth's ids,
    so it needs the ground truth read first (ground_truth, a COCO Read)."""
    fmt = fmt or detect(path)
    if fmt not in FORMATS:
        raise BadInput(f"ingest.annotations.format {fmt!r}: one of {', '.join(FORMATS)}")
    if not path.exists():
        raise InputMissing(f"ingest.annotations.path {path}: not found")
    if fmt == "coco":
        return read_coco(path, ground_truth)
    return {"yolo": read_yolo, "voc": read_voc, "masks": read_masks}[fmt](path)


# --- COCO ---------------------------------------------------------------------------------------

def read_coco(path: Path, ground_truth: Read | None = None) -> Read:
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BadInput(f"{path}: not COCO JSON ({e})") from None
    if isinstance(data, list):  # a results file: the ground truth's images and categories
        if ground_truth is None or not ground_truth.image_ids:
            raise BadInput(f"{path}: a COCO results list names images by the ground truth's ids; give the ground "
                           "truth as COCO JSON (ingest.annotations.path)")
        data = {"images": [{"id": i, "file_name": n} for i, n in ground_truth.image_ids.items()],
                "annotations": data, "categories": [{"id": k, "name": v} for k, v in ground_truth.categories.items()]}
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise BadInput(f"{path}: not COCO JSON (no `annotations` list)")
    src = str(path)
    out = Read("coco", {})
    for c in data.get("categories") or []:
        try:
            out.categories[int(c["id"])] = str(c["name"])
        except (KeyError, TypeError, ValueError):
            out.problems.append(Problem(src, "bad_category", f"category entry {str(c)[:80]}"))
    names: dict[Any, str] = {}
    for im in data.get("images") or []:
        try:
            names[im["id"]] = out.image_ids[im["id"]] = str(im["file_name"])
            size = (int(im["width"]), int(im["height"])) if "width" in im and "height" in im else None
            out.images[str(im["file_name"])] = size
        except (KeyError, TypeError, ValueError):
            out.problems.append(Problem(src, "bad_image_entry", f"image entry {str(im)[:80]}"))
    counter: dict[str, int] = {}
    for k, a in enumerate(data["annotations"]):
        if not isinstance(a, dict) or a.get("image_id") not in names:
            said = a if isinstance(a, dict) else {}
            out.problems.append(Problem(src, "unknown_image", f"annotation #{k} (id {said.get('id', '?')}) names "
                                        f"image_id {said.get('image_id', '?')}, not in `images`"))
            continue
        image = names[a["image_id"]]
        index = counter.get(image, 0)
        counter[image] = index + 1
        obj = RawObject(image, src, index, _int(a.get("category_id")), crowd=bool(a.get("iscrowd", 0)),
                        score=_float(a.get("score")))
        bbox = a.get("bbox")
        if isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox):
            x, y, w, h = (float(v) for v in bbox)
            obj.box = (x, y, x + w, y + h)
        seg = a.get("segmentation")
        if isinstance(seg, list) and seg:
            obj.polygons = [list(map(float, poly)) for poly in seg if isinstance(poly, list)]
        elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
            obj.rle = seg
        out.objects.append(obj)
    return out


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


# --- YOLO ---------------------------------------------------------------------------------------

def class_names(folder: Path) -> dict[int, str]:
    """data.yaml `names` (a list or an {id: name} mapping) or classes.txt (one name per line); {} if neither."""
    import yaml

    for yml in (folder / "data.yaml", folder.parent / "data.yaml"):
        if yml.is_file():
            try:
                names = (yaml.safe_load(yml.read_text()) or {}).get("names")
            except yaml.YAMLError as e:
                raise BadInput(f"{yml}: not YAML ({e})") from None
            if isinstance(names, list):
                return {k: str(n) for k, n in enumerate(names)}
            if isinstance(names, dict):
                return {int(k): str(n) for k, n in names.items()}
            raise BadInput(f"{yml}: `names` must be a list or a mapping of class names")
    txt = folder / "classes.txt"
    if txt.is_file():
        return {k: n.strip() for k, n in enumerate(txt.read_text().splitlines()) if n.strip()}
    return {}


def read_yolo(folder: Path) -> Read:
    out = Read("yolo", class_names(folder))
    for txt in sorted(folder.rglob("*.txt")):
        if txt.name == "classes.txt":
            continue
        image, src = txt.relative_to(folder).with_suffix("").as_posix(), str(txt)
        out.images[image] = None
        index = 0
        for n, line in enumerate(txt.read_text(errors="replace").splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            try:
                cls, values = int(parts[0]), [float(v) for v in parts[1:]]
            except ValueError:
                out.problems.append(Problem(src, "bad_line", f"line {n}: {line[:80]!r} is not a class and numbers", image))
                continue
            obj = RawObject(image, src, index, cls, normalised=True)
            if len(values) in (4, 5):
                cx, cy, w, h = values[:4]
                obj.box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
                obj.score = values[4] if len(values) == 5 else None
            elif len(values) >= 6 and len(values) % 2 == 0:
                obj.polygons = [values]
            else:
                out.problems.append(Problem(src, "bad_line", f"line {n}: {len(values)} numbers after the class "
                                            "(a box is 4, or 5 with a confidence; a polygon an even count >= 6)", image))
                continue
            out.objects.append(obj)
            index += 1
    return out


# --- Pascal VOC ---------------------------------------------------------------------------------

def read_voc(folder: Path) -> Read:
    from xml.etree.ElementTree import ParseError

    from defusedxml import ElementTree
    from defusedxml.common import DefusedXmlException

    out = Read("voc", {})
    ids: dict[str, int] = {}
    for xml in sorted(folder.rglob("*.xml")):
        src = str(xml)
        try:
            root = ElementTree.parse(xml).getroot()
        except (ParseError, DefusedXmlException) as e:
            out.problems.append(Problem(src, "bad_xml", f"not readable XML ({type(e).__name__}: {e})"))
            continue
        image = (root.findtext("filename") or xml.with_suffix(".jpg").name).strip()
        size = root.find("size")
        try:
            wh = (int(float(size.findtext("width") or 0)), int(float(size.findtext("height") or 0))) if size is not None else None
        except ValueError:
            wh = None
        out.images[image] = wh if wh and min(wh) > 0 else None
        for index, o in enumerate(root.iter("object")):
            name = (o.findtext("name") or "").strip()
            cid = ids.setdefault(name, len(ids)) if name else None
            if name:
                out.categories[cid] = name  # type: ignore[index]
            obj = RawObject(image, src, index, cid, class_name=name or None,
                            truncated=(o.findtext("truncated") or "").strip() == "1")
            box = o.find("bndbox")
            try:
                if box is not None:
                    obj.box = tuple(float(box.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[assignment]
            except ValueError:
                out.problems.append(Problem(src, "bad_box", f"object #{index} ({name}): bndbox is not four numbers", image))
                continue
            out.objects.append(obj)
    return out


# --- semantic-segmentation masks -----------------------------------------------------------------

def read_masks(folder: Path) -> Read:
    from PIL import Image
    from pycocotools import mask as cocomask

    names = class_names(folder)
    out = Read("masks", dict(names))
    for png in sorted(folder.rglob("*.png")):
        image, src = png.relative_to(folder).with_suffix("").as_posix(), str(png)
        try:
            with Image.open(png) as im:
                if im.mode not in ("L", "P", "I", "I;16"):
                    out.problems.append(Problem(src, "bad_mask", f"mode {im.mode}: a mask holds one class index "
                                                "per pixel", image))
                    continue
                m = np.asarray(im)
        except OSError as e:
            out.problems.append(Problem(src, "bad_mask", f"not a readable PNG ({e})", image))
            continue
        out.images[image] = None
        h, w = m.shape[:2]
        values, counts = np.unique(m, return_counts=True)
        index = 0
        for v, n in zip(values.tolist(), counts.tolist()):
            if v == IGNORE_INDEX or (v == 0 and 0 not in names):  # "ignore", and unnamed background
                continue
            ys, xs = np.nonzero(m == v)
            rle = cocomask.encode(np.asfortranarray(m == v, dtype=np.uint8))  # the class's pixels, for the exports
            out.objects.append(RawObject(image, src, index, int(v), box=(float(xs.min()), float(ys.min()),
                                                                         float(xs.max() + 1), float(ys.max() + 1)),
                                         rle=rle, mask_area=float(n), mask_size=(w, h)))
            index += 1
    return out
