"""Which image of a duplicate group to keep: a configurable comparator, never file order alone.

`issues.representative` is a list of keys, best first; `-key` means larger is better:

    -pixels     larger resolution: width x height without uniform borders (border_fraction), in
                steps of 1/8 octave (~9 %), so a letterboxed copy does not win by its padding
                and near-equal sizes fall through to the next key; a padded image's content is
                counted smaller by what JPEG ringing at the padding's edges can hide from the border
                measure (3 % of its pixels, or 7 lines a side: up to one 8 x 8 block on each
                padded edge, which is most of the padding of a 32 px letterbox), so it cannot
                edge into the bucket above its original
    border      less uniform border (letterbox / pillarbox padding)
    -central    near-duplicate of more of the others (the near_duplicate finder counts them; a tie
                everywhere else): the original of a set of copies is near each of them, while a
                watermarked or a cropped copy — sharper or not — is near fewer, so groups are
                built around the original and never chain through a copy
    -sharpness  sharper (any numeric manifest column works, with or without the minus)
    clipping    fewer clipped pixels (dark_fraction + bright_fraction)
    -exif       original EXIF present (camera make or model recorded)
    path        path order, the last tie-breaker (always appended)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from pixelscope.errors import ConfigError

BORDER_MIN = 0.01  # less than this is no padding
# what the border measure misses of real padding, at most: the larger of 3 % of the pixels and 14 lines
# (ringing can hide up to one 8 x 8 JPEG block on each of two padded edges)
BORDER_MARGIN, RINGING_LINES = 0.03, 14


def _key(frame: pd.DataFrame, name: str, extra: Mapping[str, Callable[[pd.DataFrame], Any]] | None = None) -> pd.Series:
    if extra and name in extra:  # a plugin sort key (pixelscope.curate.plugins)
        return pd.Series(extra[name](frame), index=frame.index).astype(float)
    if name == "pixels":
        border = frame["border_fraction"].astype(float).fillna(0) if "border_fraction" in frame else 0.0
        w, h = frame["width"].astype(float), frame["height"].astype(float)
        hidden = np.maximum(BORDER_MARGIN * w * h, RINGING_LINES * np.maximum(w, h))  # padding the measure missed
        pixels = w * h * (1 - border) - np.where(border > BORDER_MIN, hidden, 0.0)
        return np.floor(np.log2(pixels.clip(lower=1)) * 8)
    if name == "central":
        return pd.Series(0.0, frame.index)  # only the near_duplicate finder knows (it passes `extra`)
    if name == "border":
        return frame["border_fraction"].astype(float) if "border_fraction" in frame else pd.Series(0.0, frame.index)
    if name == "clipping":
        return frame["dark_fraction"].astype(float) + frame["bright_fraction"].astype(float)
    if name == "exif":
        return (frame["exif_make"].notna() | frame["exif_model"].notna()).astype(float)
    if name == "path":
        return frame["path"].rank(method="first")
    if name in frame and pd.api.types.is_numeric_dtype(frame[name]):
        return frame[name].astype(float)
    raise ConfigError(f"issues.representative / curate.balance.order: unknown key {name!r} (pixels, border, clipping, "
                      "exif, path, a numeric manifest column, or a plugin sort key; '-' for larger-is-better)")


def preference(frame: pd.DataFrame, keys: list[str],
               extra: Mapping[str, Callable[[pd.DataFrame], Any]] | None = None) -> np.ndarray:
    """Rank of every row, 0 = the best representative (missing values rank last); extra: more
    named keys (frame -> number per row, smaller = better)."""
    keys = [*keys, "path"] if "path" not in [k.lstrip("-") for k in keys] else keys
    sort = pd.DataFrame({f"k{i}": (-_key(frame, k[1:], extra) if k.startswith("-") else _key(frame, k, extra)).fillna(np.inf)
                         for i, k in enumerate(keys)}, index=frame.index)
    order = np.lexsort([sort[c].to_numpy() for c in reversed(sort.columns)])
    rank = np.empty(len(frame), dtype=np.int64)
    rank[order] = np.arange(len(frame))
    return rank
