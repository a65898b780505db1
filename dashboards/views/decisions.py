"""Decisions: every review decision in the project's file (filter by author, action, reason,
date), whether the last applied set has it, undo; and what the last Apply changed, with
thumbnails (added / dropped / relabelled / moved)."""

from pathlib import Path

import pandas as pd
import streamlit as st

from dashboards import actions
from dashboards.common import grid, has, summary, table
from dashboards.selection import md, rows_of
from pixelscope.errors import PixelscopeError


@st.cache_data(show_spinner=False, max_entries=2)
def entries_frame(path: str, stamp: tuple[int, int]) -> pd.DataFrame:
    """decisions.history, cached until the file changes (size and mtime)."""
    from pixelscope.curate import decisions

    return pd.DataFrame(decisions.history(Path(path)), columns=[*decisions.FIELDS, "undone"])


MAX_ROWS = 2_000
st.title("Decisions")
try:
    file = actions.decisions_path()
    info = file.stat() if file is not None and file.exists() else None
    rows = entries_frame(str(file), (info.st_size, info.st_mtime_ns)) if info else pd.DataFrame()
except PixelscopeError as e:
    st.error(md(e))
    st.stop()
applied = int(summary().get("curated", {}).get("decisions_applied", 0) or 0)
if rows.empty:
    st.info("No decisions yet. Act on images from the Images, Embedding map or Issues pages "
            "(or `pixelscope decide ...`); they are listed here.")
else:
    rows = rows.assign(applied=(len(rows) - rows.index) <= applied)  # newest first: the file's first `applied` lines
    c1, c2, c3 = st.columns(3)
    who = c1.multiselect("author", sorted(rows["author"].unique()))
    what = c2.multiselect("action", sorted(rows["action"].unique()))
    text = c3.text_input("reason contains")
    days = sorted(rows["time"].str[:10].unique())
    since = st.select_slider("from day", days, value=days[0]) if len(days) > 1 else days[0]
    shown = rows[(rows["author"].isin(who) if who else True) & (rows["action"].isin(what) if what else True)
                 & (rows["reason"].str.contains(text, regex=False) if text else True) & (rows["time"].str[:10] >= since)]
    matching = len(shown)
    shown = shown.head(MAX_ROWS)  # newest first; the filters above reach the rest
    if has("ledger"):
        ledger = table("ledger").drop_duplicates("id").set_index("id")["included"]
        shown = shown.assign(in_set=shown["id"].map(ledger).map({True: "included", False: "excluded"}).fillna(""))
    st.caption(f"{matching:,} of {len(rows):,} entries match" + (f" (the newest {MAX_ROWS:,} listed)" if matching > MAX_ROWS
                                                                   else "") + "; `applied`: replayed by the last curate")
    view = shown[[c for c in ("time", "author", "action", "path", "value", "reason", "where", "applied", "in_set",
                              "undone", "entry", "batch") if c in shown]]
    picked = st.dataframe(view, hide_index=True, width="stretch", on_select="rerun", selection_mode="multi-row",
                          key="decisions")
    chosen = shown.iloc[picked.selection.rows] if picked and picked.selection.rows else shown.iloc[0:0]
    if actions.writable() and len(chosen):
        reason = st.text_input("why undo (optional)")
        if st.button(f"Undo {len(chosen)} selected entr{'ies' if len(chosen) != 1 else 'y'}"):
            from pixelscope.curate.review import undo

            undo(actions.params(), actions.project(), chosen["entry"].tolist(), reason=reason, where="dashboard:decisions")
            st.toast(f"undid {len(chosen)} entries; Apply to rebuild the set")
            st.rerun()

st.subheader("Last apply")
s = actions.status()
if not s:
    st.caption("not applied from this dashboard yet")
elif s.get("state") == "failed":
    st.error("the apply failed: " + md(s.get("error", "")))
elif s.get("state") == "running":
    st.info(f"running: {md(s.get('step', ''))}")
else:
    st.caption(f"ran by {md(s.get('runner', ''))}: " + md("; ".join(s.get("results", {}).values())))
    v = s.get("validation")
    if isinstance(v, dict):  # the quality suite over the new curated set (curate/step.py); a failure stands out
        if v.get("success"):
            st.caption(f"the new set passes the quality suite ({v.get('expectations', 0)} expectations)")
        else:
            st.error("the new set fails the quality suite: " + md(", ".join(map(str, v.get("failed") or []))[:500]))
    elif v is not None:
        st.caption("validation of the new set: " + md(str(v)[:300]))
    d = s.get("diff")
    if d:
        images = table("images")
        by_path = images.drop_duplicates("path").set_index("path")["id"]
        for kind in ("added", "dropped", "relabeled", "moved"):
            paths = d.get(kind, [])
            st.markdown(f"**{kind}: {len(paths):,}**")
            ids = [by_path[p] for p in paths[:24] if p in by_path.index]
            if ids:
                grid(rows_of(images, ids), key=f"diff-{kind}", pick=False)
