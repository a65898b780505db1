"""Can an `upscaled` flag tell an enlarged small image from a blurred one at ingest's working size?

    python benchmarks/bench_upscaled.py      # builds bench_quality's set if missing; writes results/upscaled.json

Issue 30 asks for a flag for images whose native resolution is far below their pixel size, kept
apart from `blurry`. This measures whether the pixels ingest sees (its own decode at the working
size, longer side 256) hold a signal that does so, on data the choice is not tuned on:

- images: bench_quality's four sources (cifar, hymenoptera, cameras, graphics), each untouched, blurred
  (Gaussian sigma 4 and 2 at full size) and upscaled — a 32 px CIFAR image x8 bicubic, x7 bilinear,
  x4 Lanczos; a photo shrunk to 64 / 96 / 128 px, then x4 bicubic, x3 bilinear, x2 Lanczos — every
  upscale saved as PNG and as JPEG q92;
- signals: `detail` (the blurry flag's measure), interpolation periodicity (Gallagher 2005: the peak
  of the spectrum of the mean absolute second difference, over its median), and the whitened radial
  power spectrum in 12 log-spaced bands, to which a classifier (logistic regression and gradient
  boosting) is fit leave-one-source-out;
- scored: the share of each kind flagged at the bar that flags 1 % of untouched images. For the
  classifiers that bar is set on the held-out scores themselves — the most favourable choice — so
  their figures are upper bounds; and the share of each kind under the blurry flag's bar.
"""

from __future__ import annotations

import io
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
EDGES = np.geomspace(0.03, 0.5, 13)  # cycles per pixel at the working size


def periodicity(luma: np.ndarray) -> float:
    out = []
    for x in (luma, luma.T):
        if x.shape[1] < 24:
            continue
        d = np.abs(x[:, :-2] - 2 * x[:, 1:-1] + x[:, 2:]).mean(0)
        s = np.abs(np.fft.rfft((d - d.mean()) * np.hanning(len(d))))
        band = s[np.fft.rfftfreq(len(d)) > 0.06]
        out.append(band.max() / max(float(np.median(band)), 1e-9))
    return max(out) if out else float("nan")


def spectrum(luma: np.ndarray) -> np.ndarray:
    h, w = luma.shape
    power = np.abs(np.fft.fft2((luma - luma.mean()) * np.outer(np.hanning(h), np.hanning(w)))) ** 2
    f = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.fftfreq(w)[None, :])
    bands = np.array([np.log10((power[m] * f[m] ** 2).mean() + 1e-6) if (m := (f >= a) & (f < b)).any() else np.nan
                      for a, b in zip(EDGES[:-1], EDGES[1:])])
    return bands - np.nanmax(bands)


def measure(data: bytes) -> dict:
    """The signals on ingest's own decode; `detail` is the blurry flag's measure from ingest's own features."""
    from pixelscope.features.builtin import contrast_rms, sharpness
    from pixelscope.features.registry import ImageView
    from pixelscope.io.decode import decode
    from pixelscope.issues.quality import detail

    d = decode(data, 256, 10**9)
    view = ImageView(d.rgb, {"width": d.width, "height": d.height, "bytes": len(data)}, 16, 239)
    features = pd.DataFrame({"sharpness": [sharpness(view)], "contrast_rms": [contrast_rms(view)]})
    luma = view.luma.astype(np.float32)
    return {"periodicity": periodicity(luma), "detail": float(detail(features).iloc[0]),
            **{f"b{i}": v for i, v in enumerate(spectrum(luma))}}


def variants(im: Image.Image) -> dict[str, Image.Image]:
    out = {"untouched": im, "blurred_s4": im.filter(ImageFilter.GaussianBlur(4)),
           "blurred_s2": im.filter(ImageFilter.GaussianBlur(2))}
    if max(im.size) <= 64:
        for k, kernel, name in ((8, Image.BICUBIC, "bicubic"), (7, Image.BILINEAR, "bilinear"), (4, Image.LANCZOS, "lanczos")):
            out[f"up{k}_{name}"] = im.resize((im.width * k, im.height * k), kernel)
    else:
        for side, k, kernel, name in ((64, 4, Image.BICUBIC, "bicubic"), (96, 3, Image.BILINEAR, "bilinear"),
                                      (128, 2, Image.LANCZOS, "lanczos")):
            s = im.copy()
            s.thumbnail((side, side), Image.LANCZOS)
            out[f"up{k}_{name}"] = s.resize((s.width * k, s.height * k), kernel)
    return out


def encode(im: Image.Image, fmt: str) -> bytes:
    b = io.BytesIO()
    im.save(b, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return b.getvalue()


def flagged_at_one_percent(score: np.ndarray, frame: pd.DataFrame) -> dict:
    bar = np.nanquantile(score[(frame["kind"] == "untouched").to_numpy()], 0.99)
    return {k: round(float(np.mean(score[(frame["kind"] == k).to_numpy()] > bar)), 3) for k in sorted(frame["kind"].unique())}


def main() -> None:
    import bench_quality
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression

    root = bench_quality.WORK / "raw"
    if not root.exists():
        bench_quality.build(root)
    rows = []
    for p in sorted(root.glob("*/none/*.*")):
        im = Image.open(p).convert("RGB")
        for kind, v in variants(im).items():
            for fmt in (("PNG", "JPEG") if kind.startswith("up") else ("JPEG" if p.suffix == ".jpg" else "PNG",)):
                rows.append({"src": p.parts[-3], "kind": kind, "format": fmt, **measure(encode(v, fmt))})
    frame = pd.DataFrame(rows)
    up = frame["kind"].str.startswith("up").to_numpy()
    bands = frame[[f"b{i}" for i in range(len(EDGES) - 1)]].fillna(-6).to_numpy()
    detail = np.log10(frame["detail"].fillna(0).to_numpy() + 1e-6)
    x = np.c_[bands, np.diff(bands, axis=1), detail, frame["periodicity"].fillna(0)]
    result: dict = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
                    "images": {k: int(v) for k, v in frame["kind"].value_counts().items()},
                    "share_below_the_blurry_bar": {  # issues.blurry_max_detail: blurred and upscaled look alike
                        k: round(float((frame.loc[frame["kind"] == k, "detail"] < 0.05).mean()), 3)
                        for k in sorted(frame["kind"].unique())},
                    "share_flagged_at_1pct_of_untouched": {
                        "periodicity": flagged_at_one_percent(frame["periodicity"].to_numpy(), frame)}}
    for name, make in (("logistic regression, spectrum + detail + periodicity",
                        lambda: LogisticRegression(C=1.0, max_iter=5000)),
                       ("gradient boosting, same inputs", lambda: HistGradientBoostingClassifier(max_depth=3, max_iter=200))):
        p = np.zeros(len(frame))
        for source in frame["src"].unique():
            out = (frame["src"] == source).to_numpy()
            p[out] = make().fit(x[~out], up[~out]).predict_proba(x[out])[:, 1]
        result["share_flagged_at_1pct_of_untouched"][f"{name}, leave one source out"] = flagged_at_one_percent(p, frame)
        result.setdefault("by_source", {})[name] = {
            s: flagged_at_one_percent(p[(frame["src"] == s).to_numpy()], frame[frame["src"] == s]) for s in frame["src"].unique()}
    out = HERE / "results" / "upscaled.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("share_below_the_blurry_bar", "share_flagged_at_1pct_of_untouched")}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
