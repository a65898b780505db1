"""The dashboard's logic as pure functions (no Streamlit): a Plotly selection to image ids,
ids to rows, paging, sorting, the value band where two CDFs differ most. Unit-tested alone,
because AppTest cannot drive a Plotly selection."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pixelscope.errors import BadInput
from pixelscope.profile.sketches import NumericSketch

PAGE_SIZE = 24
MAP_POINTS = 25_000  # drawn at most; above this the selection JSON Streamlit returns costs seconds and memory


def map_frame(projection: pd.DataFrame, images: pd.DataFrame) -> pd.DataFrame:
    """One row per map point (in projection order) with the images' other columns beside it,
    and `row` = its position (the customdata a selection hands back).

    Byte copies share an id but have a row each in images: the point is the copy at the
    projection's path, so a copy never draws a second point (nor counts twice in a selection)."""
    extra = [c for c in images.columns if c not in projection.columns]
    keys = ["id", "path"] if "path" in projection.columns and "path" in images.columns else ["id"]
    one = images[keys + extra].drop_duplicates(keys)
    frame = projection.merge(one, on=keys, how="left", validate="many_to_one")
    missing = frame[extra[0]].isna().to_numpy() if extra else np.zeros(len(frame), bool)
    if keys != ["id"] and missing.any():  # a path the manifest no longer has: match on the id alone
        by_id = images[["id"] + extra].drop_duplicates("id").set_index("id")
        fill = by_id.reindex(frame.loc[missing, "id"])
        for c in extra:
            frame.loc[missing, c] = fill[c].to_numpy()
    frame = frame.reset_index(drop=True)
    frame["row"] = range(len(frame))
    return frame


def ids_from_selection(selection: Any, frame: pd.DataFrame) -> list[str]:
    """Image ids of a `st.plotly_chart(on_select=...)` selection over `frame` (columns id, x, y).

    A box or lasso selects by its shape over every row of `frame`, drawn or not (the map may
    draw a sample; the selection still covers all points inside). Clicked points (no shape)
    carry their frame row in customdata."""
    if not selection:
        return []
    sel = selection.get("selection", selection) if isinstance(selection, dict) else getattr(selection, "selection", {})
    sel = sel or {}
    boxes = [(min(b["x"]), max(b["x"]), min(b["y"]), max(b["y"])) for b in sel.get("box") or []]
    lassos = [list(zip(s["x"], s["y"])) for s in sel.get("lasso") or [] if len(s.get("x") or []) >= 3]
    if boxes or lassos:
        inside = _inside(frame, boxes, lassos)
        return frame["id"].to_numpy()[inside].tolist()
    rows: list[int] = []
    for p in sel.get("points") or []:
        c = p.get("customdata")
        if isinstance(c, dict):  # Streamlit hands customdata arrays over as {"0": value}
            c = next(iter(c.values()), None)
        elif isinstance(c, list | tuple):
            c = c[0] if c else None
        if c is not None and 0 <= int(c) < len(frame):
            rows.append(int(c))
    return frame["id"].iloc[sorted(set(rows))].tolist()


def _inside(frame: pd.DataFrame, boxes: Sequence[tuple[float, float, float, float]],
            lassos: Sequence[Sequence[tuple[float, float]]] = ()) -> np.ndarray:
    """Boolean per row: (x, y) in any box (x0, x1, y0, y1) or inside any lasso polygon."""
    x, y = frame["x"].to_numpy(float), frame["y"].to_numpy(float)
    inside = np.zeros(len(frame), bool)
    for x0, x1, y0, y1 in boxes:
        inside |= (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)
    for poly in lassos:  # even-odd ray casting, one vectorized pass per edge
        px_, py_ = np.asarray(poly, float).T
        qx, qy = np.roll(px_, -1), np.roll(py_, -1)
        odd = np.zeros(len(frame), bool)
        for ax, ay, bx, by in zip(px_, py_, qx, qy):
            if ay == by:
                continue
            crosses = (ay > y) != (by > y)
            odd ^= crosses & (x < ax + (y - ay) * (bx - ax) / (by - ay))
        inside |= odd
    return inside


def ids_in_boxes(frame: pd.DataFrame, boxes: Sequence[tuple[float, float, float, float]]) -> list[str]:
    """Ids whose (x, y) lies in any of the (x0, x1, y0, y1) boxes, in frame order."""
    if not boxes or frame.empty:
        return []
    return frame["id"].to_numpy()[_inside(frame, boxes)].tolist()


def drawn_sample(frame: pd.DataFrame, limit: int) -> pd.DataFrame:
    """At most `limit` rows of frame, in frame order, for drawing.

    The rows with the smallest ids: ids are content hashes, so this is a uniform random
    sample that stays the same across reruns and colourings (no seed to keep)."""
    if len(frame) <= limit:
        return frame
    keep = np.sort(np.argsort(frame["id"].astype(str).to_numpy(), kind="stable")[:limit])
    return frame.iloc[keep]


def box_param(box: tuple[float, float, float, float]) -> str:
    """x0,x1,y0,y1 for the URL: short, and never rounded inwards (an edge point stays inside)."""
    x0, x1, y0, y1 = box

    def text(v: float, up: bool) -> str:
        v = float(v)  # a float32 compared with a Python float is compared in float32 (NumPy 2's promotion)
        short = f"{v:.6g}"
        return short if (float(short) >= v if up else float(short) <= v) else repr(float(v))

    return ",".join([text(min(x0, x1), False), text(max(x0, x1), True), text(min(y0, y1), False),
                     text(max(y0, y1), True)])


def parse_box(text: str | None) -> tuple[float, float, float, float] | None:
    """The `box` query parameter back to a box; None when absent or malformed."""
    try:
        x0, x1, y0, y1 = (float(v) for v in (text or "").split(","))
    except ValueError:
        return None
    return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)


def rows_of(frame: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
    """The frame's rows for ids (full ids or unique prefixes of at least 8 characters), in ids order."""
    if not len(ids):
        return frame.iloc[0:0]
    full = frame["id"].astype(str)
    pos = {i: k for k, i in enumerate(full)}
    out = []
    for i in ids:
        if i in pos:
            out.append(pos[i])
        elif len(i) >= 8:
            hits = np.flatnonzero(full.str.startswith(i).to_numpy())
            if len(hits) == 1:
                out.append(int(hits[0]))
    return frame.iloc[out]


def sort_rows(frame: pd.DataFrame, column: str | None, descending: bool = False) -> pd.DataFrame:
    """Sorted by a column (nulls last, ties by path); unknown or empty column: as given."""
    if not column or column not in frame.columns:
        return frame
    keys = [column] + (["path"] if "path" in frame.columns and column != "path" else [])
    return frame.sort_values(keys, ascending=[not descending] + [True] * (len(keys) - 1), na_position="last",
                             kind="stable")


def page_of(n: int, page: int, size: int = PAGE_SIZE) -> tuple[int, int, int]:
    """(start, stop, pages) of page (1-based, clamped) when n rows are shown size at a time."""
    pages = max(1, -(-n // size))
    page = min(max(1, page), pages)
    return (page - 1) * size, min(n, page * size), pages


def moved_band(ref: NumericSketch, cur: NumericSketch, points: int = 257) -> tuple[float, float, float]:
    """(low, high, D): the values where the current CDF moved most from the reference's.

    At x*, where |F_cur - F_ref| is largest (the KS point), the current images between x* and
    the current quantile at the reference's rank F_ref(x*) are the mass that moved."""
    lo, hi = min(ref.min, cur.min), max(ref.max, cur.max)
    if not (ref.count and cur.count) or not hi > lo:
        return lo, hi, 0.0
    xs = np.linspace(lo, hi, points)[1:-1].tolist()
    fr, fc = np.array(ref.cdf(xs))[:-1], np.array(cur.cdf(xs))[:-1]
    k = int(np.argmax(np.abs(fc - fr)))
    x = xs[k]
    q = cur.quantiles([float(min(max(fr[k], 0.0), 1.0))])[0]
    a, b = sorted((x, q if q is not None else x))
    return float(a), float(b), float(abs(fc[k] - fr[k]))


MAX_LINKED_PROFILE_BYTES = 256 * 1024 * 1024  # a profile file is kilobytes to a few megabytes


def linked_profile(text: str, roots: Sequence[Path]) -> Path:
    """The profile a Compare link names (a bundle folder or a profile file), only when it resolves,
    symlinks followed, to a regular file of bounded size under one of `roots` (the project and the
    bundle the dashboard serves). Anything else is refused with the same message, so a link cannot
    learn whether a server path exists or make the dashboard read /dev/zero."""
    refused = BadInput(f"{text!r}: not a bundle folder or profile file under {', '.join(str(r) for r in roots)}")
    try:
        f = Path(text).expanduser()
        f = (f / "profile.json" if f.is_dir() else f).resolve(strict=True)
        inside = any(f.is_relative_to(root.resolve()) for root in roots)
        if not inside or not f.is_file() or f.stat().st_size > MAX_LINKED_PROFILE_BYTES:
            raise refused
    except (OSError, ValueError, RuntimeError):
        raise refused from None
    return f


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~$:&])")


def md(text: object) -> str:
    """Untrusted text (file and folder names, labels, reasons, error messages that quote a filter)
    for a place Streamlit renders as Markdown: every Markdown character escaped, so
    `![x](https://host/...)` stays text and the browser fetches nothing."""
    return _MARKDOWN.sub(r"\\\1", str(text))
