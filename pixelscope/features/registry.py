"""The feature registry.

A feature is a function of an ImageView returning one value. Registering it with
`@feature(...)` is all a plugin does: the value lands in a manifest column of the same
name and is profiled by its kind, with no change to the core.

    from pixelscope.features import feature

    @feature("red_share", kind="numeric", doc="share of red-dominant pixels")
    def red_share(view):
        r, g, b = view.rgb[..., 0], view.rgb[..., 1], view.rgb[..., 2]
        return float(((r > g) & (r > b)).mean())

Then list the module under `features.plugins` in params.yaml.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import cv2
import numpy as np
import pyarrow as pa

from pixelscope.errors import ConfigError
from pixelscope.io.manifest import Column, Kind
from pixelscope.registry import Registry

_TYPES: dict[str, pa.DataType] = {"numeric": pa.float64(), "categorical": pa.string(), "distinct": pa.string()}


PADDING_LEVELS, PADDING_SHARE = 16, 0.9


def _flat(lines: np.ndarray) -> np.ndarray:
    """Which lines (rows of `lines`) are flat: luma range <= 6, padding-like."""
    return (lines.max(axis=1).astype(np.int16) - lines.min(axis=1)) <= 6


def _leading_flat(lines: np.ndarray) -> int:
    """How many lines from the start are flat. The first line decides for most photos (no
    border: one 256-pixel check instead of a pass over the image)."""
    if not _flat(lines[:1])[0]:
        return 0
    off = np.flatnonzero(~_flat(lines))
    return int(off[0]) if off.size else len(lines)


class ImageView:
    """Working-resolution pixels plus lazily computed, shared intermediates.

    Features ask for what they need (luma, histogram, HSV...); each is computed once.
    """

    def __init__(self, rgb: np.ndarray, meta: dict[str, Any], dark_level: int = 16, bright_level: int = 239):
        self.rgb = rgb
        self.meta = meta  # width, height, bytes, format, ... of the full-size image
        self.dark_level = dark_level
        self.bright_level = bright_level

    @cached_property
    def luma(self) -> np.ndarray:
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def luma_hist(self) -> np.ndarray:
        return cv2.calcHist([self.luma], [0], None, [256], [0, 256]).ravel().astype(np.float64)

    @cached_property
    def luma_cdf(self) -> np.ndarray:
        c = np.cumsum(self.luma_hist)
        return c / c[-1]

    @cached_property
    def borders(self) -> tuple[int, int, int, int] | None:
        """Uniform border widths (top, bottom, left, right) of the luma, in lines (a line is flat when its
        luma range is <= 6); None when the image is one flat colour, all border."""
        luma = self.luma
        h, w = luma.shape
        top = _leading_flat(luma)
        if top == h:
            return None
        bottom = _leading_flat(luma[::-1])
        left, right = _leading_flat(luma.T), _leading_flat(luma.T[::-1])
        if top + bottom >= h or left + right >= w:
            return None
        return top, bottom, left, right

    @cached_property
    def padding(self) -> tuple[int, int, int, int]:
        """Letterbox / pillarbox padding (top, bottom, left, right), in lines, as the hashes crop it: a line
        is padding when 90 % of its pixels are within 16 levels of the outermost line's median (JPEG
        ringing next to the content stays padding), and only padding on both opposite sides counts, so
        a flat sky above a photo is content. Repeated inside the crop (up to 3 times), so padding added
        around an image whose own edges are uniform ends where the image's own does. Looser than
        `borders` on purpose: border_fraction keeps the strict rule its recorded values were made by."""

        def lines(side: np.ndarray) -> int:
            if not _flat(side[:1])[0]:  # padding's outermost line is flat: a small photo's sky or bokeh is not
                return 0
            near = np.abs(side.astype(np.int16) - int(np.median(side[0]))) <= PADDING_LEVELS
            off = np.flatnonzero(near.mean(axis=1) < PADDING_SHARE)
            return int(off[0]) if off.size else len(side)

        box = [0, 0, 0, 0]
        for _ in range(3):
            h, w = self.luma.shape
            luma = self.luma[box[0]:h - box[1], box[2]:w - box[3]]
            top, bottom, left, right = lines(luma), lines(luma[::-1]), lines(luma.T), lines(luma.T[::-1])
            if not (top and bottom) or top + bottom >= luma.shape[0]:
                top = bottom = 0
            if not (left and right) or left + right >= luma.shape[1]:
                left = right = 0
            if not (top or bottom or left or right):
                break
            box = [box[0] + top, box[1] + bottom, box[2] + left, box[3] + right]
        return box[0], box[1], box[2], box[3]

    @cached_property
    def thumb32(self) -> np.ndarray:
        """32x32 area-averaged luma of the content inside any padding (perceptual hashes: a padded copy
        hashes like its original)."""
        top, bottom, left, right = self.padding
        h, w = self.luma.shape
        return cv2.resize(self.luma[top:h - bottom, left:w - right], (32, 32), interpolation=cv2.INTER_AREA)

    @cached_property
    def hsv(self) -> np.ndarray:
        """HSV with hue on 0-255 for the full circle (OpenCV's *_FULL conversion)."""
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2HSV_FULL)

    @cached_property
    def hue_hist(self) -> np.ndarray:
        """256-bin hue histogram of pixels saturated (S >= 15%) and bright (V >= 10%) enough
        to have a meaningful hue; near-gray and near-black pixels are left out."""
        h, s, v = cv2.split(self.hsv)
        # saturating: nonzero iff S >= 38 and V >= 26 (OpenCV's stubs do not admit the scalar operand)
        colored = cv2.min(cv2.subtract(s, 37), cv2.subtract(v, 25))  # type: ignore[call-overload]  # scalar operand
        return cv2.calcHist([h], [0], colored, [256], [0, 256]).ravel().astype(np.float64)

    @cached_property
    def channels(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """R, G and B as separate contiguous planes (what OpenCV's per-channel arithmetic takes)."""
        r, g, b = cv2.split(self.rgb)
        return r, g, b

    @cached_property
    def channel_max(self) -> np.ndarray:
        """max(R,G,B) per pixel."""
        r, g, b = self.channels
        return cv2.max(cv2.max(r, g), b)

    @cached_property
    def channel_min(self) -> np.ndarray:
        """min(R,G,B) per pixel."""
        r, g, b = self.channels
        return cv2.min(cv2.min(r, g), b)

    @cached_property
    def chroma(self) -> np.ndarray:
        """max(R,G,B) - min(R,G,B) per pixel."""
        return cv2.subtract(self.channel_max, self.channel_min)



@dataclass(frozen=True)
class Feature:
    name: str
    kind: Kind
    fn: Callable[[ImageView], Any]
    doc: str = ""
    builtin: bool = False

    @property
    def column(self) -> Column:
        return Column(self.name, _TYPES[self.kind], self.kind, self.doc)


FEATURES: Registry[Feature] = Registry("feature", plugins_key="features.plugins")


def feature(name: str, kind: Kind = "numeric", doc: str = "", *, replace: bool = False, _builtin: bool = False):
    """Register a per-image feature (numeric -> float, categorical/distinct -> str).

    A name is taken once: replacing a built-in or another plugin's feature needs replace=True."""
    if kind not in _TYPES:
        raise ConfigError(f"feature {name!r}: kind must be one of {sorted(_TYPES)}, got {kind!r}")

    def deco(fn: Callable[[ImageView], Any]) -> Callable[[ImageView], Any]:
        doc_line = doc or (fn.__doc__ or "").strip().split("\n")[0]
        FEATURES.register(name, Feature(name, kind, fn, doc_line, _builtin), builtin=_builtin, replace=replace)
        return fn

    return deco


def registered() -> list[Feature]:
    import pixelscope.features.builtin  # noqa: F401  (registers the built-ins)

    return list(FEATURES)


def feature_columns() -> list[Column]:
    return [f.column for f in registered()]


def load_plugins(modules: list[str]) -> None:
    """Import plugin modules so their @feature functions register."""
    FEATURES.load_plugins(modules)


def compute_features(view: ImageView) -> tuple[dict[str, Any], list[str]]:
    """All registered features for one image.

    A built-in that fails is a bug and propagates; a failing plugin gives a null value and a
    warning, so one bad plugin cannot lose the rest of the row.
    """
    values: dict[str, Any] = {}
    problems: list[str] = []
    for f in registered():
        try:
            v = f.fn(view)
        except Exception as e:  # noqa: BLE001
            if f.builtin:
                raise
            problems.append(f"plugin feature {f.name} failed: {type(e).__name__}: {e}")
            v = None
        if v is not None and f.kind == "numeric":
            v = float(v)
            if v != v:  # NaN -> null
                v = None
        elif v is not None:
            v = str(v)
        values[f.name] = v
    return values, problems
