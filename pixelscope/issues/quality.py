"""Per-image quality flags: unreadable, dark, overexposed, blurry, low information,
grayscale in a colour dataset, odd aspect ratio, odd size, tiny.

Absolute thresholds are params (issues.*), chosen by benchmarks/bench_quality.py's
leave-one-source-out protocol on real photos with planted faults, so they hold on data
nobody tuned them on:

- overexposed: blown highlights, not a bright mean — the share of pixels with any channel
  >= 250 (`clipped_highlights`) at or above issues.overexposed_min_clipped, with the mean
  luma at or above issues.bright_min_brightness as the second signal (a white-background
  product shot has clipped pixels but a dark object);
- blurry (issues.blurry_mode: absolute, the default): too little detail for the image's own
  contrast — Laplacian variance / (255 x RMS contrast)^2 at the working size below
  issues.blurry_max_detail; scale-free, so it needs no other image to compare with, and a
  32 x 32 image is judged at its own 32 x 32 pixels. Flat images (contrast < 0.02) are
  low-information, not blurry. `reference` mode keeps the old relative bar: a quantile of
  the pinned reference profile's sharpness.

Relative thresholds (blurry in reference mode, odd aspect, odd size) are quantiles of the
pinned reference profile when one is set (validate.reference / reference_rev), so adding a
batch never changes the flags of images already there; without a reference they come from
this dataset, and issues.json says so.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pixelscope.issues.base import Dataset, Finding, finder


@finder("unreadable", _builtin=True)
def unreadable(data: Dataset, found: dict[str, Finding]) -> Finding:
    frame = data.frame
    bad = frame["status"] != "ok"
    return Finding.flags("unreadable", bad, bad.astype(float), lambda r: f"unreadable: {frame.at[r, 'reason']}")


def _flag(name: str, mask: pd.Series, score: pd.Series, reason) -> tuple[str, pd.Series, pd.Series, dict]:
    mask = mask.fillna(False).astype(bool)
    return name, mask, score.where(mask, 0.0).clip(0, 1).fillna(0.0), {int(r): reason(r) for r in mask.index[mask]}


@finder("quality", _builtin=True)
def quality(data: Dataset, found: dict[str, Finding]) -> Finding:
    """One column pair per quality flag (dark, dark_score, ...); `quality` is any of them."""
    frame, cfg = data.frame, data.cfg
    ok = data.ok
    f = frame.where(ok)  # error rows have no features: never flagged here (unreadable covers them)
    thresholds: dict[str, dict] = {}

    def used(name: str, value: float, source: str) -> float:
        thresholds[name] = {"value": value, "source": source}
        return value

    flags = []
    b, dark_t = f["brightness_mean"], used("dark", cfg.dark_max_brightness, "issues.dark_max_brightness")
    flags.append(_flag("dark", b <= dark_t, (dark_t - b) / max(dark_t, 1e-9) + 0.5,
                       lambda r: f"dark: mean brightness {b[r]:.2f} <= {dark_t}"))
    clip_t, bright_t = cfg.overexposed_min_clipped, cfg.bright_min_brightness
    thresholds["overexposed"] = {"clipped": clip_t, "brightness": bright_t,
                                 "source": "issues.overexposed_min_clipped and issues.bright_min_brightness"}
    clipped = f["clipped_highlights"] if "clipped_highlights" in f else pd.Series(np.nan, index=frame.index)
    flags.append(_flag("overexposed", (clipped >= clip_t) & (b >= bright_t),
                       0.5 + 0.5 * np.minimum((clipped - clip_t) / max(1 - clip_t, 1e-9),
                                              (b - bright_t) / max(1 - bright_t, 1e-9)),
                       lambda r: f"overexposed: {clipped[r]:.0%} of pixels clipped (>= {clip_t:.0%}), "
                                 f"mean brightness {b[r]:.2f} (>= {bright_t})"))
    flags.extend(_blurry(data, f, thresholds))
    ent = f["entropy"]
    ent_t = used("low_information", cfg.low_information_max_entropy, "issues.low_information_max_entropy")
    flags.append(_flag("low_information", ent <= ent_t, 1 - ent / max(ent_t, 1e-9),
                       lambda r: f"low information: entropy {ent[r]:.2f} bits <= {ent_t}"))
    gray = f["is_grayscale"] == "true"
    share = float(gray[ok].mean()) if ok.any() else 0.0
    thresholds["grayscale"] = {"value": cfg.grayscale_max_share, "source": "issues.grayscale_max_share",
                               "grayscale_share": round(share, 4)}
    flags.append(_flag("grayscale", gray & (share < cfg.grayscale_max_share), pd.Series(1 - share, index=frame.index),
                       lambda r: f"grayscale in a colour dataset ({share:.0%} grayscale)"))
    for name, column in (("odd_aspect", "aspect_ratio"), ("odd_size", "megapixels")):
        lo, src_lo = data.threshold(column, cfg.odd_quantile)
        hi, _ = data.threshold(column, 1 - cfg.odd_quantile)
        thresholds[name] = {"low": lo, "high": hi, "source": src_lo}
        if lo is None or hi is None:
            continue
        v = f[column]
        spread = max(hi - lo, 1e-9)
        flags.append(_flag(name, (v < lo) | (v > hi), np.maximum(lo - v, v - hi) / spread + 0.5,
                           lambda r, v=v, lo=lo, hi=hi, column=column, name=name:
                           f"{name.replace('_', ' ')}: {column} {v[r]:.3g} outside [{lo:.3g}, {hi:.3g}]"))
    side = np.minimum(f["width"], f["height"])
    tiny_t = used("tiny", cfg.tiny_min_side, "issues.tiny_min_side")
    flags.append(_flag("tiny", side < tiny_t, 1 - side / tiny_t,
                       lambda r: f"tiny: shorter side {int(side[r])} px < {tiny_t}"))

    columns: dict[str, pd.Series] = {}
    reasons: dict[int, list[str]] = {}
    any_flag = pd.Series(False, index=frame.index)
    worst = pd.Series(0.0, index=frame.index)
    for name, mask, score, why in flags:
        columns[name], columns[f"{name}_score"] = mask, score
        any_flag |= mask
        worst = np.maximum(worst, score)
        for r, text in why.items():
            reasons.setdefault(r, []).append(text)
    columns = {"quality": any_flag, "quality_score": worst, **columns}
    counts = {name: int(mask.sum()) for name, mask, _, _ in flags}
    return Finding("quality", columns, reasons, summary={"flagged": int(any_flag.sum()), "by_flag": counts,
                                                         "thresholds": thresholds})


FLAT_CONTRAST = 0.02  # RMS contrast below this: a flat image, low-information rather than blurry


def detail(frame: pd.DataFrame) -> pd.Series:
    """Laplacian variance / (255 x RMS contrast)^2: detail for the image's own contrast, scale-free."""
    contrast = frame["contrast_rms"].where(frame["contrast_rms"] >= FLAT_CONTRAST)
    return frame["sharpness"] / (255.0 * contrast) ** 2


def _blurry(data: Dataset, f: pd.DataFrame, thresholds: dict[str, dict]) -> list:
    cfg = data.cfg
    if cfg.blurry_mode == "absolute":
        d, bar = detail(f), cfg.blurry_max_detail
        thresholds["blurry"] = {"value": bar, "source": "issues.blurry_max_detail (absolute)"}
        return [_flag("blurry", d < bar, 0.5 + 0.5 * (1 - d / max(bar, 1e-12)),
                      lambda r: f"blurry: detail {d[r]:.3f} < {bar} (Laplacian variance for its contrast)")]
    sharp = f["sharpness"]
    blur_t, blur_source = data.threshold("sharpness", cfg.blurry_quantile)
    thresholds["blurry"] = {"value": blur_t, "source": blur_source}
    if blur_t is None:
        return []
    return [_flag("blurry", sharp < blur_t, 1 - sharp / max(blur_t, 1e-9),
                  lambda r: f"blurry: sharpness {sharp[r]:.1f} < {blur_t:.1f}")]
