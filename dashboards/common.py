"""What every page shares: the bundle (cached readers), query-parameter state, messages for
missing parts, and the thumbnail grid. Pages only read the bundle; nothing here runs a step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboards.selection import PAGE_SIZE, md, page_of
from pixelscope.errors import PixelscopeError
from pixelscope.profile import Profile
from pixelscope.publish.bundle import PARTS, Bundle

BUNDLE_ENV = "PIXELSCOPE_BUNDLE"
COLUMNS = 6


def bundle_folder() -> Path:
    return Path(os.environ.get(BUNDLE_ENV, "reports/publish")).resolve()


def allowed_roots() -> list[Path]:
    """What a link may name on this machine: the project the dashboard runs in and its bundle."""
    return [Path.cwd().resolve(), bundle_folder()]


@st.cache_resource(show_spinner=False)
def _bundle(folder: str) -> Bundle:
    return Bundle.open(folder)


def bundle() -> Bundle:
    """The bundle, or a clear message (never a traceback) and the page stops."""
    try:
        return _bundle(str(bundle_folder()))
    except PixelscopeError as e:
        st.error(md(e))
        st.stop()
        raise


def _stamp(b: Bundle, name: str) -> float:
    """The part's mtime: cached readers see a republished bundle."""
    p = b.path(name)
    return p.stat().st_mtime if p.exists() else 0.0


def stamps(*names: str) -> tuple:
    """The bundle folder and its parts' mtimes: a cache key that changes when they are republished."""
    b = bundle()
    return (str(b.folder), *(_stamp(b, n) for n in names))


@st.cache_data(show_spinner=False, max_entries=8)
def _summary(folder: str, stamp: float) -> dict[str, Any]:
    return _bundle(folder).summary()


@st.cache_resource(show_spinner=False, max_entries=8)
def _profile(folder: str, name: str, stamp: float) -> Profile:
    return _bundle(folder).profile(name)


@st.cache_resource(show_spinner=False, max_entries=16)
def _table(folder: str, name: str, stamp: float) -> pd.DataFrame:
    """Shared, not copied per run (cache_data would hold a pickled copy and hand out another):
    pages must not change a table in place (derive a new frame: assign / merge / a mask)."""
    return _bundle(folder).table(name)


@st.cache_resource(show_spinner=False, max_entries=4)
def _thumb_index(folder: str, stamp: float) -> dict[str, tuple[int, int]]:
    return _bundle(folder).thumbnail_index()


def guarded(fn, *args):
    """Call a reader; a bad part is a message naming the file, and the page stops."""
    try:
        return fn(*args)
    except PixelscopeError as e:
        st.error(md(e))
        st.stop()
        raise


def summary() -> dict[str, Any]:
    b = bundle()
    return guarded(_summary, str(b.folder), _stamp(b, "summary"))


def profile(name: str = "profile") -> Profile:
    b = bundle()
    return guarded(_profile, str(b.folder), name, _stamp(b, name))


def table(name: str) -> pd.DataFrame:
    """A bundle table; "images" is manifest + issue columns (the stamp covers both)."""
    b = bundle()
    stamp = _stamp(b, "manifest" if name == "images" else name) + (_stamp(b, "issues") if name == "images" else 0)
    return guarded(_table, str(b.folder), name, stamp)


def has(name: str) -> bool:
    return bundle().has(name)


def need(*names: str) -> bool:
    """True when the bundle has every part; else an info box per missing part with its command."""
    ok = True
    for name in names:
        if not has(name):
            st.info(bundle().missing(name))
            ok = False
    return ok


def section(key: str, part: str) -> dict[str, Any]:
    """The summary's `key` section when it and the bundle part are there; else say what makes them and stop."""
    s = summary()
    if key not in s:
        st.info(f"Not in this bundle: the {key} summary. Make it with: {PARTS[part].made_by}")
    if key not in s or not need(part):
        st.stop()
    return s[key]


FILTER_TIMEOUT_S = 10.0  # a filter from a link is stopped after this long


def where(expression: str) -> Any:
    """Boolean per images row for a curate-style SQL filter (DuckDB, no file access). Each browser
    session has its own DuckDB connection (threads, memory and time bounded) over the one cached
    images table, so one slow link cannot hold up anyone else's filter."""
    from pixelscope.curate.select import Images  # the curate filter engine (DuckDB)

    b = bundle()
    key = f"images-engine:{b.folder}:{_stamp(b, 'manifest') + _stamp(b, 'issues')}"
    if key not in st.session_state:
        for old in [k for k in st.session_state if str(k).startswith("images-engine:")]:
            del st.session_state[old]
        st.session_state[key] = guarded(Images.over, table("images"))  # scanned in place, not copied
    return st.session_state[key].where(expression, "filter", timeout_s=FILTER_TIMEOUT_S)


# --- shareable state -----------------------------------------------------------------------

def param(key: str, default: str = "") -> str:
    return st.query_params.get(key, default)


def set_param(key: str, value: str | None) -> None:
    if value in (None, ""):
        st.query_params.pop(key, None)
    elif st.query_params.get(key) != value:
        st.query_params[key] = value


def int_param(key: str, default: int) -> int:
    try:
        return int(param(key, str(default)))
    except ValueError:
        return default


# --- thumbnails ------------------------------------------------------------------------------

def boxes_of(part: str, path: str) -> pd.DataFrame | None:
    """An image's kept boxes from the bundle's objects / predicted_objects table; None without that part."""
    if not has(part):
        return None
    objects = table(part)
    mine = objects[objects["path"] == path]
    return mine[mine["status"] == "ok"] if "status" in mine else mine


def thumbnails(ids: list[str]) -> dict[str, bytes]:
    b = bundle()
    if not b.has("thumbnails"):
        return {}
    index = guarded(_thumb_index, str(b.folder), max((p.stat().st_mtime for p in b.thumbnail_parts()), default=0))
    return guarded(b.thumbnails, ids, index)


def grid(rows: pd.DataFrame, caption: list[str] | None = None, key: str = "grid", pick: bool = True,
         decorate: Any = None) -> None:
    """Thumbnails of rows (columns id, path), COLUMNS across, with a button that opens one;
    decorate(row, thumbnail) -> image draws on a thumbnail (the Images page's boxes)."""
    if rows.empty:
        st.caption("no images")
        return
    if not has("thumbnails"):
        st.info(bundle().missing("thumbnails"))
    thumbs = thumbnails(rows["id"].tolist())
    caption = caption or [str(p) for p in rows["path"]]
    cols = st.columns(COLUMNS)
    for k, (i, path, cap) in enumerate(zip(rows["id"], rows["path"], caption)):
        with cols[k % COLUMNS]:
            if i in thumbs:
                shown = thumbs[i] if decorate is None else decorate(rows.iloc[k], thumbs[i])
                st.image(shown, caption=md(cap), width="stretch")
            else:
                st.caption(f"(no thumbnail) {md(cap)}")
            if pick and st.button("open", key=f"{key}-{k}-{i}", help=md(path)):  # byte copies share an id
                st.switch_page("views/images.py", query_params={"image": str(i)[:16]})


def paged(rows: pd.DataFrame, key: str = "page", size: int = PAGE_SIZE) -> pd.DataFrame:
    """The rows of the page in the query string, with a page picker."""
    start, stop, pages = page_of(len(rows), int_param(key, 1), size)
    if pages > 1:
        page = st.number_input(f"page (of {pages})", 1, pages, start // size + 1, key=f"w-{key}")
        set_param(key, str(page) if page > 1 else None)
        start, stop, _ = page_of(len(rows), int(page), size)
    st.caption(f"{start + 1 if len(rows) else 0}-{stop} of {len(rows):,}")
    return rows.iloc[start:stop]

