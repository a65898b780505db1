"""Expectation suites: versioned JSON files (expectations/quality.json, drift.json).

Reading them and writing a first quality suite from a reference profile needs no Great
Expectations import; validate/step.py runs them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pixelscope.errors import BadInput, InputMissing
from pixelscope.profile import Profile
from pixelscope.profile.sketches import CategoricalSketch

SUITES = ("quality", "drift")


def load_suite(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputMissing(f"expectation suite not found: {path} (see `pixelscope suite init`)") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not valid JSON ({e})") from None
    if not isinstance(spec, dict) or "expectations" not in spec:
        raise BadInput(f"{path}: not an expectation suite (needs 'name' and 'expectations')")
    return spec


def suite_from_reference(reference: Profile) -> dict[str, Any]:
    """A quality suite with bounds taken from a reference profile, to edit by hand."""
    def scaled(value: float | None, factor: float) -> float | None:
        return None if value is None else value * factor

    def q(col: str, p: float) -> float | None:
        try:
            return reference.quantiles(col, [p])[0]
        except KeyError:
            return None

    def between(col: str, lo: float | None, hi: float | None, mostly: float, why: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"column": col, "mostly": mostly}
        if lo is not None:
            kw["min_value"] = round(lo, 6)
        if hi is not None:
            kw["max_value"] = round(hi, 6)
        return {"type": "expect_column_values_to_be_between", "kwargs": kw, "meta": {"why": why}}

    readable = reference.ok / max(1, reference.files_seen)
    exps = [
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "status", "value_set": ["ok"], "mostly": round(max(0.0, readable - 0.02), 4)},
         "meta": {"why": f"share of readable files (reference {readable:.3f})"}},
        between("width", scaled(q("width", 0.0), 0.5), scaled(q("width", 1.0), 2), 0.99,
                "image width within half / twice the reference's range"),
        between("height", scaled(q("height", 0.0), 0.5), scaled(q("height", 1.0), 2), 0.99,
                "image height within half / twice the reference's range"),
        between("aspect_ratio", q("aspect_ratio", 0.01), q("aspect_ratio", 0.99), 0.95,
                "aspect ratio within the reference's 1-99 % range"),
        between("brightness_mean", q("brightness_mean", 0.01), q("brightness_mean", 0.99), 0.95,
                "few near-black / near-white images (reference 1-99 %)"),
        between("sharpness", q("sharpness", 0.02), None, 0.95, "few blurry images (reference 2 %)"),
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "splits_of_id", "max_value": 1},
         "meta": {"why": "no image id in two splits (leakage)"}},
    ]
    label = reference.columns.get("label")
    if isinstance(label, CategoricalSketch):
        labels = sorted(label.frequencies())
        if labels:
            exps.append({"type": "expect_column_values_to_be_in_set",
                         "kwargs": {"column": "label", "value_set": labels, "mostly": 1.0},
                         "meta": {"why": "only the reference's labels"}})
    return {"name": "quality", "expectations": [e for e in exps if len(e["kwargs"]) > 2 or "value_set" in e["kwargs"]
                                                or "max_value" in e["kwargs"]]}
