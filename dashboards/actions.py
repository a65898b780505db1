"""Acting where you look: record review decisions on the images a page shows, apply them, undo.

Writes go to the project's decisions file through pixelscope.curate.review — the same API as
`pixelscope decide` — and only when this dashboard may write: bound to loopback (the address
Streamlit serves on is 127.0.0.1, localhost or ::1) and not started with `--read-only`. Anywhere
else every action is hidden. Apply starts `python -m pixelscope.curate.apply` (curate, then
publish) as a process of its own, so this process never imports the steps.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from dashboards.selection import md
from pixelscope.errors import PixelscopeError

READ_ONLY_ENV = "PIXELSCOPE_READ_ONLY"
PROJECT_ENV = "PIXELSCOPE_PROJECT"
PARAMS_ENV = "PIXELSCOPE_PARAMS"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
LIST_ACTIONS = ("exclude", "include", "relabel", "tag", "untag")


def writable() -> bool:
    """Actions are shown only on a loopback-bound, writable dashboard."""
    if os.environ.get(READ_ONLY_ENV, "") not in ("", "0"):
        return False
    return str(st.get_option("server.address") or "") in LOOPBACK


def project() -> Path:
    return Path(os.environ.get(PROJECT_ENV, ".")).resolve()


def params_file() -> Path:
    return project() / os.environ.get(PARAMS_ENV, "params.yaml")


def params() -> Any:
    from pixelscope.config import load_params

    return load_params(params_file(), {})


def decisions_path() -> Path | None:
    try:
        from pixelscope.curate.review import decisions_file

        return decisions_file(params(), project())
    except PixelscopeError:
        return None


def targets(rows: pd.DataFrame) -> list[tuple[str, str]]:
    return [(str(i), str(p)) for i, p in zip(rows["id"], rows["path"])]


def record(action: str, rows: pd.DataFrame, *, where: str, value: str | None = None, reason: str = "",
           values: list[str] | None = None) -> int:
    """One entry per row; a message either way. Returns how many were recorded."""
    from pixelscope.curate import review

    try:
        made = review.record(params(), project(), action, targets(rows), value=value or None, values=values,
                             reason=reason, where=f"dashboard:{where}")
    except PixelscopeError as e:
        st.error(md(e))
        return 0
    st.toast(f"recorded {len(made):,} {action} decision{'s' if len(made) != 1 else ''}")
    return len(made)


def act(rows: pd.DataFrame, *, where: str, key: str, what: str = "these images",
        actions: tuple[str, ...] = LIST_ACTIONS) -> None:
    """A panel under shown images: an action, its label or tag, a reason (optional); it says how many
    images it touches and records one entry per image."""
    if not writable() or rows.empty:
        return
    with st.expander(f"Act on {what} ({len(rows):,} images)"):
        with st.form(key=f"act-{key}", clear_on_submit=True):
            action = st.selectbox("action", actions, key=f"act-{key}-action")
            value = st.text_input("new label (relabel) or tag (tag, untag)", key=f"act-{key}-value")
            reason = st.text_input("reason (optional; stored as written)", key=f"act-{key}-reason")
            go = st.form_submit_button(f"Record for {len(rows):,} images")
        if go:
            record(str(action), rows, where=where, value=value if action in ("relabel", "tag", "untag") else None,
                   reason=reason)


def keep_button(row: pd.Series, *, where: str, key: str) -> None:
    """"Keep this one" for a member of a duplicate group."""
    if writable() and st.button("keep this one", key=f"keep-{key}", help=md(row["path"])):
        record("keep", pd.DataFrame([row]), where=where, reason="kept in the duplicate group view")


def suggestion_buttons(row: pd.Series, *, where: str, key: str) -> None:
    """Accept or reject one label-error suggestion."""
    if not writable():
        return
    a, b = st.columns(2)
    if a.button("accept", key=f"acc-{key}", help=f"relabel {md(row['label'])} → {md(row['suggested_label'])}"):
        record("accept_suggestion", pd.DataFrame([row]), where=where, values=[str(row["suggested_label"])])
    if b.button("reject", key=f"rej-{key}", help=f"the label {md(row['label'])} is right"):
        record("reject_suggestion", pd.DataFrame([row]), where=where)


@st.cache_resource(show_spinner=False, max_entries=2)
def _resolved(path: str, stamp: tuple[int, int]) -> Any:
    from pixelscope.curate import decisions

    return decisions.load(Path(path))[1]


def decided(*actions: str) -> set[str]:
    """Ids with a decision in force among `actions` (e.g. label suggestions already settled); the
    replay is cached until the file changes (size, mtime)."""
    path = decisions_path()
    if path is None or not path.is_file():
        return set()
    info = path.stat()
    try:
        state = _resolved(str(path), (info.st_size, info.st_mtime_ns))
    except PixelscopeError:
        return set()
    return {i for i, d in {**state.label, **state.inclusion, **state.keep}.items() if d.action in actions}


# --- apply ----------------------------------------------------------------------------------

def status() -> dict[str, Any]:
    from pixelscope.curate.apply import read_status, status_path

    return read_status(status_path(project()))


def running() -> bool:
    s = status()
    if s.get("state") != "running":
        return False
    try:
        os.kill(int(s.get("pid", 0)), 0)
        return True
    except (OSError, ValueError):
        return False


def start_apply() -> None:
    from pixelscope.curate.apply import status_path

    log = status_path(project()).with_name("apply.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as fh:
        subprocess.Popen([sys.executable, "-m", "pixelscope.curate.apply", "--project", str(project()),
                          "--params", str(params_file())], cwd=project(), stdout=fh, stderr=subprocess.STDOUT,
                         start_new_session=True)


@st.cache_data(show_spinner=False, max_entries=2)
def _lines(path: str, stamp: tuple[int, int]) -> int:
    with open(path, "rb") as fh:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))


def entry_count() -> int:
    """Lines in the decisions file (one per entry): counted, not parsed, for the sidebar's badge, and
    counted again only when the file changes (size, mtime) — every page's run shows the badge."""
    path = decisions_path()
    if path is None or not path.is_file():
        return 0
    info = path.stat()
    return _lines(str(path), (info.st_size, info.st_mtime_ns))


def pending(applied: int | None) -> int:
    """Decisions recorded since the last curate replayed the file."""
    return max(0, entry_count() - int(applied or 0))


__all__ = ["act", "decided", "keep_button", "pending", "record", "running", "start_apply", "status",
           "suggestion_buttons", "writable"]


def sidebar(applied: int | None) -> None:
    """The badge ("N decisions not applied yet"), the Apply button, and the progress of a run."""
    live = running()

    @st.fragment(run_every=1.0 if live else None)
    def panel() -> None:
        s = status()
        if running():
            st.session_state["applying"] = True
            st.progress(float(s.get("progress", 0.0)), text=f"applying: {s.get('step', '')}…")
            return
        if st.session_state.pop("applying", False):
            st.cache_data.clear()  # the bundle was republished
            st.rerun()  # the whole app: every page reads the new bundle
        n = pending(applied)
        if n:
            st.warning(f"{n:,} decision{'s' if n != 1 else ''} not applied yet")
        if st.button("Apply decisions", disabled=not n, help="curate, then publish (a separate process); "
                                                             "the Decisions page shows what changed"):
            start_apply()
            st.session_state["applying"] = True
            st.rerun()
        if s.get("state") == "failed":
            st.error("the last apply failed: " + md(s.get("error", "")))
        elif s.get("state") == "done" and s.get("diff"):
            d = s["diff"]
            st.caption(f"last apply: {len(d['added'])} added, {len(d['dropped'])} dropped, "
                       f"{len(d['relabeled'])} relabelled, {len(d['moved'])} moved")

    panel()
