"""Built-in features: geometry, file, exposure, colour, sharpness, texture, hashes.

All work on the working-resolution view (longer side <= features.working_size), so values
are comparable across image sizes, except geometry/file features, which use full size.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pixelscope.features.hashes import dhash, phash
from pixelscope.features.registry import ImageView, feature
from pixelscope.io.manifest import Kind


def _builtin(name: str, kind: Kind = "numeric", doc: str = ""):
    return feature(name, kind, doc, _builtin=True)


# --- geometry and file -----------------------------------------------------------------

@_builtin("megapixels", doc="displayed width x height / 1e6")
def megapixels(v: ImageView) -> float:
    return v.meta["width"] * v.meta["height"] / 1e6


@_builtin("aspect_ratio", doc="displayed width / height (>1 landscape, <1 portrait)")
def aspect_ratio(v: ImageView) -> float:
    return v.meta["width"] / v.meta["height"]


@_builtin("border_fraction", doc="share of the image in uniform borders (letterbox / pillarbox padding), 0-1")
def border_fraction(v: ImageView) -> float:
    if v.borders is None:
        return 1.0  # one flat colour
    top, bottom, left, right = v.borders
    h, w = v.luma.shape
    return 1 - (h - top - bottom) * (w - left - right) / (h * w)


@_builtin("bytes_per_pixel", doc="file bytes per full-size pixel (compression level); null for pixels logged without a file")
def bytes_per_pixel(v: ImageView) -> float | None:
    if v.meta.get("bytes") is None:  # an array or PIL image handed to ImageLogger: no encoding to measure
        return None
    return v.meta["bytes"] / (v.meta["width"] * v.meta["height"] * max(1, v.meta.get("frames") or 1))


# --- exposure ------------------------------------------------------------------------

def _luma_percentile(v: ImageView, q: float) -> float:
    return float(np.searchsorted(v.luma_cdf, q)) / 255.0


@_builtin("brightness_mean", doc="mean luma, 0-1")
def brightness_mean(v: ImageView) -> float:
    return float(v.luma_hist @ np.arange(256)) / v.luma_hist.sum() / 255.0


@_builtin("brightness_p05", doc="5th percentile of luma, 0-1")
def brightness_p05(v: ImageView) -> float:
    return _luma_percentile(v, 0.05)


@_builtin("brightness_p95", doc="95th percentile of luma, 0-1")
def brightness_p95(v: ImageView) -> float:
    return _luma_percentile(v, 0.95)


@_builtin("contrast_rms", doc="standard deviation of luma, 0-1 (RMS contrast)")
def contrast_rms(v: ImageView) -> float:
    levels = np.arange(256) / 255.0
    p = v.luma_hist / v.luma_hist.sum()
    mean = p @ levels
    return float(math.sqrt(max(0.0, p @ (levels * levels) - mean * mean)))


@_builtin("dark_fraction", doc="share of pixels with luma <= features.dark_level (clipped shadows)")
def dark_fraction(v: ImageView) -> float:
    return float(v.luma_cdf[v.dark_level])


@_builtin("bright_fraction", doc="share of pixels with luma >= features.bright_level (clipped highlights)")
def bright_fraction(v: ImageView) -> float:
    return float(1.0 - (v.luma_cdf[v.bright_level - 1] if v.bright_level > 0 else 0.0))


CLIP_HIGH, CLIP_LOW = 250, 5  # "at or near" 255 and 0: JPEG ringing keeps a blown sky a few levels below 255


@_builtin("clipped_highlights", doc="share of pixels with any colour channel >= 250 (blown highlights, per channel)")
def clipped_highlights(v: ImageView) -> float:
    mx = v.channel_max
    return cv2.countNonZero(cv2.compare(mx, CLIP_HIGH - 1, cv2.CMP_GT)) / mx.size  # type: ignore[call-overload]  # a scalar operand


@_builtin("clipped_shadows", doc="share of pixels with every colour channel <= 5 (crushed shadows)")
def clipped_shadows(v: ImageView) -> float:
    mx = v.channel_max
    return cv2.countNonZero(cv2.compare(mx, CLIP_LOW, cv2.CMP_LE)) / mx.size  # type: ignore[call-overload]  # a scalar operand


@_builtin("entropy", doc="Shannon entropy of the luma histogram, bits (0-8)")
def entropy(v: ImageView) -> float:
    p = v.luma_hist[v.luma_hist > 0] / v.luma_hist.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0  # + 0.0 turns -0.0 into 0.0


# --- colour ----------------------------------------------------------------------------

_HUE_ANGLES = np.arange(256) * (2 * np.pi / 256)
_HUE_SIN, _HUE_COS = np.sin(_HUE_ANGLES), np.cos(_HUE_ANGLES)  # once, not per image
# 12 sectors of 30 degrees centred on the named hues (red spans 345-15 degrees)
_HUE_SECTOR = (np.floor((np.arange(256) * 360 / 256 + 15) / 30).astype(int)) % 12
_HUE_NAMES = ["red", "orange", "yellow", "chartreuse", "green", "spring", "cyan", "azure",
              "blue", "violet", "magenta", "rose"]


def _hue_hist(v: ImageView) -> tuple[np.ndarray, int]:
    return v.hue_hist, v.luma.size


@_builtin("saturation_mean", doc="mean HSV saturation, 0-1")
def saturation_mean(v: ImageView) -> float:
    return cv2.mean(v.hsv)[1] / 255.0


@_builtin("colored_fraction", doc="share of pixels saturated and bright enough to have a hue")
def colored_fraction(v: ImageView) -> float:
    hist, n = _hue_hist(v)
    return float(hist.sum()) / n


@_builtin("hue_mean", doc="circular mean hue of coloured pixels, degrees 0-360 (null when near-gray)")
def hue_mean(v: ImageView) -> float | None:
    hist, n = _hue_hist(v)
    if hist.sum() < 0.01 * n:
        return None
    ang = math.atan2(hist @ _HUE_SIN, hist @ _HUE_COS)
    return math.degrees(ang) % 360.0


@_builtin("hue_concentration", doc="resultant length of coloured-pixel hues, 0 (spread) - 1 (one hue)")
def hue_concentration(v: ImageView) -> float | None:
    hist, n = _hue_hist(v)
    total = hist.sum()
    if total < 0.01 * n:
        return None
    return float(math.hypot(hist @ _HUE_SIN, hist @ _HUE_COS) / total)


@_builtin("dominant_hue", kind="categorical", doc="most common of 12 hue sectors, or 'neutral'")
def dominant_hue(v: ImageView) -> str:
    hist, n = _hue_hist(v)
    if hist.sum() < 0.05 * n:
        return "neutral"
    sectors = np.bincount(_HUE_SECTOR, weights=hist, minlength=12)
    return _HUE_NAMES[int(np.argmax(sectors))]


def _variance(n: int, total: float, squares: float) -> float:
    """Variance from a sum and a sum of squares of integers (OpenCV returns them as doubles,
    exact to well under 0.5): rounded to the integers, then n*S2 - S1^2 in exact integer
    arithmetic, so the variance is correctly rounded (no float cancellation)."""
    s1, s2 = round(total), round(squares)
    return (n * s2 - s1 * s1) / (n * n)


@_builtin("colorfulness", doc="Hasler-Suesstrunk colourfulness (0 = gray, ~100+ = vivid)")
def colorfulness(v: ImageView) -> float:
    # rg = R - G and yb = (R + G)/2 - B, from channel sums and three sums of squared channel
    # differences (one SIMD pass each, no 16-bit images):
    # sum (R + G - 2B)^2 = 2 sum (R - B)^2 + 2 sum (G - B)^2 - sum (R - G)^2
    r, g, b = v.channels
    n = r.size
    sr, sg, sb, _ = cv2.sumElems(v.rgb)
    q_rg, q_rb, q_gb = (cv2.norm(x, y, cv2.NORM_L2SQR) for x, y in ((r, g), (r, b), (g, b)))
    s_rg, s_yb2 = sr - sg, sr + sg - 2 * sb
    var_rg = _variance(n, s_rg, q_rg)
    var_yb2 = _variance(n, s_yb2, 2 * round(q_rb) + 2 * round(q_gb) - round(q_rg))
    return math.hypot(math.sqrt(var_rg), math.sqrt(var_yb2) / 2) + 0.3 * math.hypot(s_rg / n, s_yb2 / n / 2)


@_builtin("is_grayscale", kind="categorical", doc="'true' when colour channels are equal (within 3 levels) on 99% of pixels")
def is_grayscale(v: ImageView) -> str:
    colored = cv2.countNonZero(cv2.compare(v.chroma, 3, cv2.CMP_GT))  # type: ignore[call-overload]  # a scalar operand
    return "true" if colored < 0.01 * v.chroma.size else "false"


# --- sharpness and texture ---------------------------------------------------------------

@_builtin("sharpness", doc="variance of the Laplacian of luma at the working resolution")
def sharpness(v: ImageView) -> float:
    lap = cv2.Laplacian(v.luma, cv2.CV_16S)  # exact: |value| <= 1020 for 8-bit luma
    return _variance(lap.size, cv2.sumElems(lap)[0], cv2.norm(lap, cv2.NORM_L2SQR))


@_builtin("edge_density", doc="share of Canny edge pixels (thresholds 100/200)")
def edge_density(v: ImageView) -> float:
    return float(np.count_nonzero(cv2.Canny(v.luma, 100, 200))) / v.luma.size


# --- perceptual hashes ----------------------------------------------------------------

@_builtin("phash", kind="distinct", doc="64-bit DCT perceptual hash, hex")
def _phash(v: ImageView) -> str:
    return f"{phash(v.thumb32):016x}"


@_builtin("phash_mirror", kind="distinct", doc="pHash of the left-right mirrored image, hex (finds flipped copies)")
def _phash_mirror(v: ImageView) -> str:
    return f"{phash(v.thumb32, mirrored=True):016x}"


@_builtin("dhash", kind="distinct", doc="64-bit difference hash, hex")
def _dhash(v: ImageView) -> str:
    return f"{dhash(v.thumb32):016x}"
