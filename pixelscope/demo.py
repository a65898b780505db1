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


@dataclass(frozen=True)
class Style:
    """How one batch of images is produced; the new batch shifts these."""

    quality: tuple[int, int] = (70, 95)
    brightness: tuple[float, float] = (0.85, 1.15)
    blur_prob: float = 0.05
    blur_radius: tuple[float, float] = (0.5, 1.0)
    gray_prob: float = 0.0
    size: tuple[int, int, int, int] = (320, 240, 1280, 960)  # min w, min h, max w, max h


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
    frac = rng.uniform(0.45, 0.95)
    cw, ch = max(16, int(bw * frac)), max(16, int(bh * frac * rng.uniform(0.75, 1.0)))
    x, y = int(rng.integers(0, bw - cw + 1)), int(rng.integers(0, bh - ch + 1))
    img = base.crop((x, y, x + cw, y + ch))
    min_w, min_h, max_w, max_h = style.size
    w = int(rng.integers(min_w, max_w + 1))
    h = int(np.clip(round(w * rng.uniform(0.6, 0.8)), min_h, max_h))
    img = img.resize((w, h), Image.Resampling.BILINEAR)
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


def build_benchmark_set(out: str | Path, n: int, seed: int = 0, workers: int = 2) -> Path:
    """N JPEGs from 320x240 to 1280x960 (benchmarks), spread evenly over the base photos."""
    out = Path(out)
    labels = list(BASE_PHOTOS)
    jobs = [_Job(str(out / labels[i % len(labels)] / f"img_{i:06d}.jpg"), labels[i % len(labels)], seed * 7919 + i, REFERENCE)
            for i in range(n)]
    _run(jobs, workers)
    return out
