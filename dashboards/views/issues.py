"""Issues: counts per finder; duplicate groups side by side with the kept representative
marked; leakage pairs across splits; label-error candidates with the suggested label;
quality flags; dataset-level findings."""

import pandas as pd
import streamlit as st

from dashboards import actions
from dashboards.common import grid, need, paged, param, section, set_param, table
from dashboards.selection import md

st.title("Issues")
finders = section("issues", "issues")["finders"]
st.dataframe(pd.DataFrame([{"finder": n, "flagged": f.get("flagged"), "skipped": f.get("skipped") or ""}
                           for n, f in finders.items()]), hide_index=True, width="stretch")
images = table("images")

st.subheader("Duplicate groups")
groups = images[images["duplicate_group"].notna()] if "duplicate_group" in images else images.iloc[0:0]
if groups.empty:
    st.caption("no duplicate groups")
else:
    sizes = groups.groupby("duplicate_group").size().sort_values(ascending=False)
    labels = [f"group {int(g)} ({n} images)" for g, n in sizes.items()]
    wanted = param("group")
    pick = st.selectbox("group", labels, index=labels.index(wanted) if wanted in labels else 0)
    set_param("group", pick)
    g = sizes.index[labels.index(pick)]
    members = groups[groups["duplicate_group"] == g].sort_values("representative", ascending=False)
    grid(members.head(24), [("KEPT · " if rep else "") + str(p) for p, rep in zip(members["path"],
                                                                             members["representative"])], key="grp")
    if actions.writable():
        others = members[~members["representative"].fillna(False).astype(bool)]
        if len(others):
            c1, c2 = st.columns([3, 1])
            choice = c1.selectbox("keep another one instead", others["path"].tolist(), key="keep-choice")
            with c2:
                actions.keep_button(others[others["path"] == choice].iloc[0], where="issues:duplicates", key="grp")

st.subheader("Leakage across splits")
pairs = table("pairs") if need("pairs") else pd.DataFrame()
leaks = pairs[pairs["cross_split"]] if len(pairs) else pairs
if leaks.empty:
    st.caption(md(finders.get("leakage", {}).get("skipped") or "no image shares content with another split"))
else:
    st.dataframe(leaks[["a", "b", "kind", "signal", "similarity", "distance"]], hide_index=True, width="stretch")

st.subheader("Label-error candidates")
if "label_error" in images:
    cand = images[images["label_error"].fillna(False).astype(bool)].sort_values("label_error_score", ascending=False)
    settled = actions.decided("accept_suggestion", "reject_suggestion", "relabel") if actions.writable() else set()
    open_ = cand[~cand["id"].isin(settled)]  # a candidate a reviewer settled is not offered again
    st.caption(f"{len(open_)} candidates" + (f" ({len(cand) - len(open_)} settled in review)" if settled else ""))
    rows = paged(open_, key="lp")
    grid(rows, [f"{p} · given {g} → {sug}" for p, g, sug in zip(rows["path"], rows["label"], rows["suggested_label"])],
         key="lab")
    if actions.writable():
        for k, (_, row) in enumerate(rows.iterrows()):
            c1, c2 = st.columns([4, 2])
            c1.caption(f"{md(row['path'])}: {md(row['label'])} → {md(row['suggested_label'])}")
            with c2:
                actions.suggestion_buttons(row, where="issues:label-errors", key=f"{k}-{row['id'][:12]}")
        actions.act(rows, where="issues:label-errors", key="lab", what="the candidates on this page",
                    actions=("relabel", "exclude", "include", "tag"))

st.subheader("Quality flags")
q = finders.get("quality", {})
if q.get("by_flag"):
    flags = pd.DataFrame([{"flag": k, "images": v, "threshold": str(q.get("thresholds", {}).get(k, ""))}
                          for k, v in q["by_flag"].items()])
    st.dataframe(flags, hide_index=True, width="stretch")
    flagged = [k for k, v in q["by_flag"].items() if v]
    if flagged:
        flag = st.selectbox("examples of", flagged)
        ex = images[images[flag].fillna(False).astype(bool)].sort_values(f"{flag}_score", ascending=False)
        grid(ex.head(12), key="q")

st.subheader("Dataset-level findings")
ds = finders.get("dataset", {})
if ds.get("skipped") or not ds:
    st.caption(md(ds.get("skipped", "not run")))
else:
    st.json(ds, expanded=False)
    imb = ds.get("imbalance", {})
    if imb:
        st.markdown(f"rarest class **{md(imb.get('rarest'))}** ({imb.get('rarest_share', 0):.1%})"
                    + (" — **imbalanced**" if imb.get("imbalanced") else ""))
    if ds.get("spurious_features"):
        st.warning("features that alone predict the label: " + md(", ".join(ds["spurious_features"])))
