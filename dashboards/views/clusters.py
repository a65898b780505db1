"""Clusters: one row per cluster of the embedding map (pixelscope/clusters.py, in the bundle as
clusters.parquet) — size, label mix and purity, the issue flags that stand out, the features that
set it apart — mixed or troubled clusters first. A row (kept in the URL) shows its most central
images, opens all of its images, and on a writable dashboard lets you act on them."""

import pandas as pd
import streamlit as st

from dashboards import actions
from dashboards.common import grid, need, paged, param, set_param, table
from dashboards.selection import md

st.title("Clusters")
if not need("clusters"):
    st.stop()
clusters = table("clusters")
images = table("images")
real = clusters[clusters["cluster"] >= 0]
noise = clusters[clusters["cluster"] < 0]
cols = st.columns(3)
cols[0].metric("clusters", f"{len(real):,}")
cols[1].metric("images in a cluster", f"{int(real['size'].sum()):,}")
cols[2].metric("noise (no cluster)", f"{int(noise['size'].sum()) if len(noise) else 0:,}")
st.caption("HDBSCAN on the embedding map; mixed labels or issue flags above their overall share come first. "
           "[The map coloured by cluster](embedding_map?color=cluster)")
shown = clusters[["cluster", "size", "top_label", "purity", "labels", "standout", "distinct"]].rename(
    columns={"standout": "issue flags that stand out", "distinct": "what sets it apart (vs the rest)"})
event = st.dataframe(shown, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                     key="clusters", column_config={"purity": st.column_config.ProgressColumn(min_value=0, max_value=1)})
picked = (event.selection.rows if hasattr(event, "selection") else []) or []
if picked:
    set_param("cluster", str(int(clusters.iloc[picked[0]]["cluster"])))
names = [int(c) for c in clusters["cluster"]]
wanted = param("cluster")
chosen = st.selectbox("cluster", names, index=names.index(int(wanted)) if wanted.lstrip("-").isdigit()
                      and int(wanted) in names else 0, format_func=lambda c: "noise (-1)" if c < 0 else str(c))
set_param("cluster", str(chosen))
row = clusters[clusters["cluster"] == chosen].iloc[0]
st.subheader(f"Cluster {chosen}: {int(row['size']):,} images" if chosen >= 0 else
             f"Noise: {int(row['size']):,} images in no cluster")
st.caption(md(f"labels: {row['labels'] or '-'}" + (f" · stands out: {row['standout']}" if row["standout"] else "")
              + (f" · sets it apart: {row['distinct']}" if row["distinct"] else "")))
st.markdown("**Most central on the map**")
central = pd.DataFrame({"id": list(row["central"]), "path": list(row["central_paths"])})
grid(central, key="central")
members = images[images["cluster"] == chosen] if "cluster" in images else images.iloc[0:0]
if st.button(f"Open all {len(members):,} in Images", key="open-cluster"):
    st.switch_page("views/images.py", query_params={"where": f"cluster = {chosen}"})
with st.expander(f"Every image of the cluster ({len(members):,})"):
    page = paged(members, key="cp")
    grid(page, [f"{p} · {md(lab)}" for p, lab in zip(page["path"], page.get("label", [""] * len(page)))],
         key="members")
actions.act(members, where="clusters", key="cluster", what="this cluster")
