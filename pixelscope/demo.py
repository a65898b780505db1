"""Demo and benchmark image sets, built from real photos that scikit-image ships in its wheel.

No downloads: the base photos are the sample images inside the installed scikit-image
package. Each generated image is a random crop of one base photo, resized, maybe flipped,
colour-jittered and saved as JPEG at a random quality, so a set has realistic variation in
size, exposure, colour, sharpness and compression. The "new batch" applies a realistic
shift (darker, blurrier, harder compressed, different class mix) for drift demos.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

# label -> scikit-image sample (all real photos)
BASE_PHOTOS = {
    "astronaut": "astronaut",
    "cat": "chelsea",
    "coffee": "coffee",
    "rocket": "rocket",
    "galaxy": "hubble_deep_field",
    "motorcycle": "motorcycle_left",
}


@cache
def base_photo(label: str) -> Image.Image:
    try:
        import skimage.data as data
        from skimage import io as skio
    except ImportError as e:  # pragma: no cover - requirements install it
        raise RuntimeError("demo data needs scikit-image (pip install scikit-image)") from e
    name = BASE_PHOTOS[label]
    if name == "motorcycle_left":
        arr = skio.imread(Path(data.__file__).parent / "motorcycle_left.png")
    else:
        arr = getattr(data, name)()
    return Image.fromarray(np.asarray(arr)[..., :3].astype(np.uint8)).convert("RGB")


BACKGROUNDS = ("brick", "grass", "gravel", "moon", "camera", "retina", "immunohistochemistry", "cell", "coins")


@cache
def background_photo(name: str) -> Image.Image:
    import skimage.data as data

    arr = np.asarray(getattr(data, name)())
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return Image.fromarray(arr[..., :3].astype(np.uint8)).convert("RGB")


def _in_scene(obj: Image.Image, rng: np.random.Generator, share: tuple[float, float]) -> Image.Image:
    """The object photo, shrunk, pasted at a random place on a tinted crop of another photo: the same
    subject in different surroundings, so two images of a class are not near-copies of each other."""
    w, h = obj.size
    bg = background_photo(BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))])
    bw, bh = bg.size
    f = rng.uniform(0.3, 0.8)
    cw, ch = max(16, int(bw * f)), max(16, int(bh * f))
    x, y = int(rng.integers(0, bw - cw + 1)), int(rng.integers(0, bh - ch + 1))
    canvas = bg.crop((x, y, x + cw, y + ch)).resize((w, h), Image.Resampling.BILINEAR)
    tint = Image.new("RGB", (w, h), tuple(int(v) for v in rng.integers(60, 230, 3)))
    canvas = Image.blend(canvas, tint, float(rng.uniform(0.2, 0.5)))
    s = rng.uniform(*share)
    ow, oh = max(8, int(w * s)), max(8, int(h * s))
    canvas.paste(obj.resize((ow, oh), Image.Resampling.BILINEAR),
                 (int(rng.integers(0, w - ow + 1)), int(rng.integers(0, h - oh + 1))))
    return canvas


@dataclass(frozen=True)
class Style:
    """How one batch of images is produced; the new batch shifts these."""

    quality: tuple[int, int] = (70, 95)
    brightness: tuple[float, float] = (0.85, 1.15)
    blur_prob: float = 0.05
    blur_radius: tuple[float, float] = (0.5, 1.0)
    gray_prob: float = 0.0
    size: tuple[int, int, int, int] = (320, 240, 1280, 960)  # min w, min h, max w, max h
    crop: tuple[float, float] = (0.45, 0.95)  # the crop's share of the base photo's sides
    rotate: float = 0.0  # up to this many degrees either way
    scene: tuple[float, float] | None = None  # paste the crop, at this share of the frame, on another photo


REFERENCE = Style()
SHIFTED = Style(quality=(25, 55), brightness=(0.6, 0.85), blur_prob=0.4, blur_radius=(1.0, 2.0), gray_prob=0.15)


def synth_jpeg(label: str, seed: int, style: Style = REFERENCE) -> bytes:
    """One JPEG: random crop of the label's base photo, resized, jittered, compressed."""
    img, quality = synth_image(label, seed, style)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def synth_image(label: str, seed: int, style: Style = REFERENCE) -> tuple[Image.Image, int]:
    """The image synth_jpeg encodes, and the JPEG quality it encodes it at (benchmarks shift
    the image before encoding, so a shifted copy differs from the original by the shift only)."""
    rng = np.random.default_rng(seed)
    base = base_photo(label)
    bw, bh = base.size
    frac = rng.uniform(*style.crop)
    cw, ch = max(16, int(bw * frac)), max(16, int(bh * frac * rng.uniform(0.75, 1.0)))
    x, y = int(rng.integers(0, bw - cw + 1)), int(rng.integers(0, bh - ch + 1))
    img = base.crop((x, y, x + cw, y + ch))
    if style.rotate:
        img = img.rotate(rng.uniform(-style.rotate, style.rotate), Image.Resampling.BILINEAR, expand=False)
    min_w, min_h, max_w, max_h = style.size
    w = int(rng.integers(min_w, max_w + 1))
    h = int(np.clip(round(w * rng.uniform(0.6, 0.8)), min_h, max_h))
    img = img.resize((w, h), Image.Resampling.BILINEAR)
    if style.scene is not None:
        img = _in_scene(img, rng, style.scene)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    img = ImageEnhance.Brightness(img).enhance(rng.uniform(*style.brightness))
    img = ImageEnhance.Color(img).enhance(rng.uniform(0.8, 1.2))
    if rng.random() < style.blur_prob:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(*style.blur_radius)))
    if rng.random() < style.gray_prob:
        img = img.convert("L").convert("RGB")
    return img, int(rng.integers(style.quality[0], style.quality[1] + 1))


@dataclass(frozen=True)
class _Job:
    path: str
    label: str
    seed: int
    style: Style


def _write(job: _Job) -> None:
    Path(job.path).write_bytes(synth_jpeg(job.label, job.seed, job.style))


def _run(jobs: list[_Job], workers: int) -> None:
    for d in {str(Path(j.path).parent) for j in jobs}:
        os.makedirs(d, exist_ok=True)
    if workers <= 1:
        for j in jobs:
            _write(j)
        return
    from pixelscope.io.parallel import die_with_parent, pool_start_method

    with get_context(pool_start_method()).Pool(workers, initializer=die_with_parent) as pool:
        for _ in pool.imap_unordered(_write, jobs, chunksize=32):
            pass


def _class_jobs(out: Path, counts: dict[str, int], style: Style, seed: int, sources: list[str]) -> Iterator[_Job]:
    i = 0
    for label, n in counts.items():
        for j in range(n):
            source = sources[j % len(sources)]
            yield _Job(str(out / source / label / f"{label}_{j:05d}.jpg"), label, seed * 1_000_003 + i, style)
            i += 1


def build_demo(out: str | Path = "data/raw", new_batch: str | Path | None = "data/new_batch",
               per_class: int = 50, seed: int = 0, workers: int = 2) -> dict[str, int]:
    """The demo dataset: 6 labeled classes in two sources, plus two broken files.

    The new batch (for drift demos) is darker, blurrier, harder compressed, partly
    grayscale, has twice the cats and no motorcycles.
    """
    out = Path(out)
    labels = list(BASE_PHOTOS)
    jobs = list(_class_jobs(out, {lb: per_class for lb in labels}, REFERENCE, seed, ["studio", "field"]))
    if new_batch is not None:
        shifted = {lb: per_class for lb in labels if lb != "motorcycle"}
        shifted["cat"] = per_class * 2
        jobs += list(_class_jobs(Path(new_batch), shifted, SHIFTED, seed + 1, ["studio", "field"]))
    _run(jobs, workers)
    # Real-world debris: a transfer cut short, and an empty file
    broken = out / "field" / "cat" / "cat_truncated.jpg"
    broken.write_bytes(synth_jpeg("cat", seed + 99)[:2000])
    (out / "field" / "coffee" / "coffee_empty.jpg").write_bytes(b"")
    return {"images": len(jobs) + 2}


SHOWCASE = Style(crop=(0.25, 0.6), rotate=15.0, scene=(0.3, 0.5))
SHOWCASE_SHIFTED = Style(quality=(25, 55), brightness=(0.6, 0.85), blur_prob=0.4, blur_radius=(1.0, 2.0), gray_prob=0.15,
                         crop=(0.25, 0.6), rotate=15.0, scene=(0.3, 0.5))
SHOWCASE_LABELS = ["astronaut", "cat", "coffee", "rocket", "motorcycle"]
SPLIT_OF = ["train"] * 14 + ["val"] * 3 + ["test"] * 3  # by index mod 20: 70 / 15 / 15


def build_showcase(out: str | Path = "data/raw", new_batch: str | Path | None = "data/new_batch", per_class: int = 40,
                   seed: int = 0, workers: int = 2) -> dict[str, Any]:
    """The demo `make demo` shows: something real on every page to look at and decide about.

    Five classes, each subject photographed (pasted) in different surroundings so that most
    images are not copies of each other; two sources (studio, field) with train / val / test
    folders; and planted faults, listed in `<out>/../demo_planted.json`: byte copies and
    re-encoded near-copies (some in another split: leakage), label flips (an image in another
    class's folder), dark and blurry images, a truncated and an empty file. `predictions.csv`
    beside the raw folder is a model's output (right 85 % of the time, mostly wrong on the dark
    ones). The new batch is the same classes shifted (darker, blurrier, compressed harder, partly
    grayscale, twice the cats, no motorcycles): the drift reference's opposite number.
    """
    import json
    import shutil

    out = Path(out)
    rng = np.random.default_rng(seed)
    jobs: list[_Job] = []
    i = 0
    for label in SHOWCASE_LABELS:
        for j in range(per_class):
            source, split = ("studio", "field")[j % 2], SPLIT_OF[(j // 2 + j) % 20]
            jobs.append(_Job(str(out / source / split / label / f"{label}_{j:04d}.jpg"), label, seed * 1_000_003 + i,
                             SHOWCASE))
            i += 1
    if new_batch is not None:
        shifted = {lb: per_class for lb in SHOWCASE_LABELS if lb != "motorcycle"}
        shifted["cat"] = per_class * 2
        jobs += list(_class_jobs(Path(new_batch), shifted, SHOWCASE_SHIFTED, seed + 1, ["studio", "field"]))
    _run(jobs, workers)
    made = sorted(Path(j.path) for j in jobs if Path(j.path).is_relative_to(out))
    pick = list(rng.permutation(len(made)))
    take = lambda k: [made[pick.pop()] for _ in range(k)]  # noqa: E731 - distinct images, each used once
    n = len(made)
    planted: dict[str, list[str]] = {"exact_copies": [], "near_copies": [], "leaks": [], "label_flips": [],
                                     "dark": [], "blurry": [], "broken": []}
    for k, src in enumerate(take(max(2, n // 40))):  # byte copies; every third in the test split (a leak)
        dst = src.with_name(f"{src.stem}_copy.jpg")
        if k % 3 == 0:
            dst = out / src.parts[-4] / "test" / src.parent.name / f"{src.stem}_copy.jpg"
            planted["leaks"].append(dst.relative_to(out).as_posix())
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
        planted["exact_copies"].append(dst.relative_to(out).as_posix())
    for src in take(max(2, n // 40)):  # re-encoded at 80 % size and a lower quality
        im = Image.open(src)
        dst = src.with_name(f"{src.stem}_small.jpg")
        im.resize((im.width * 4 // 5, im.height * 4 // 5), Image.Resampling.BILINEAR).save(dst, quality=60)
        planted["near_copies"].append(dst.relative_to(out).as_posix())
    for src in take(4):  # an image filed under another class
        others = [lb for lb in SHOWCASE_LABELS if lb != src.parent.name]
        dst = src.parent.parent / others[int(rng.integers(len(others)))] / f"flipped_{src.name}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.rename(dst)
        planted["label_flips"].append(dst.relative_to(out).as_posix())
    for src in take(4):
        ImageEnhance.Brightness(Image.open(src)).enhance(0.12).save(src, quality=90)
        planted["dark"].append(src.relative_to(out).as_posix())
    for src in take(4):
        Image.open(src).filter(ImageFilter.GaussianBlur(6)).save(src, quality=90)
        planted["blurry"].append(src.relative_to(out).as_posix())
    broken = out / "field" / "train" / "cat" / "cat_truncated.jpg"
    broken.write_bytes(synth_jpeg("cat", seed + 99, SHOWCASE)[:2000])
    (out / "field" / "train" / "coffee" / "coffee_empty.jpg").write_bytes(b"")
    planted["broken"] = [broken.relative_to(out).as_posix(), "field/train/coffee/coffee_empty.jpg"]
    write_predictions(out, {p: 0.75 for p in planted["dark"]}, seed)
    (out.parent / "demo_planted.json").write_text(json.dumps(planted, indent=1))
    return {"images": len(list(out.rglob("*.jpg"))), "new_batch": len(jobs) - len(made), "planted": planted}


def write_predictions(raw: Path, error_rate: dict[str, float], seed: int = 0, default_error: float = 0.15) -> Path:
    """`predictions.csv` beside the raw folder: a model's output for every readable demo image
    (path relative to raw, prediction, confidence), wrong with probability error_rate[path]
    (else default_error), less confident when wrong. The true class is the image's folder."""
    rng = np.random.default_rng(seed + 7)
    lines = ["path,prediction,confidence"]
    for p in sorted(p for p in raw.rglob("*.jpg") if p.stat().st_size > 2000):
        rel, truth = p.relative_to(raw).as_posix(), p.parent.name
        wrong = rng.random() < error_rate.get(rel, default_error)
        pred = [lb for lb in SHOWCASE_LABELS if lb != truth][int(rng.integers(len(SHOWCASE_LABELS) - 1))] if wrong else truth
        lines.append(f"{rel},{pred},{rng.uniform(0.35, 0.7) if wrong else rng.uniform(0.6, 0.99):.3f}")
    out = raw.parent / "predictions.csv"
    out.write_text("\n".join(lines) + "\n")
    return out


def build_benchmark_set(out: str | Path, n: int, seed: int = 0, workers: int = 2) -> Path:
    """N JPEGs from 320x240 to 1280x960 (benchmarks), spread evenly over the base photos."""
    out = Path(out)
    labels = list(BASE_PHOTOS)
    jobs = [_Job(str(out / labels[i % len(labels)] / f"img_{i:06d}.jpg"), labels[i % len(labels)], seed * 7919 + i, REFERENCE)
            for i in range(n)]
    _run(jobs, workers)
    return out
