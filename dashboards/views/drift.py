"""Drift against the reference: the drift table (drifted rows first); a chosen row shows the
reference and current CDFs from the sketches and the current images in the band of values
that moved; for embedding drift, the current images farthest from the reference's sample."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards import actions
from dashboards.common import grid, has, need, paged, param, profile, set_param, table
from dashboards.selection import md, moved_band
from pixelscope.profile.sketches import CategoricalSketch, NumericSketch

st.title("Drift")
if not need("drift", "reference"):
    st.stop()
drift = table("drift")
drift = drift.sort_values(["drift", "p_adjusted"], ascending=[False, True], na_position="last", kind="stable")
n_drift = int(drift["drift"].sum())
st.markdown(f"**{n_drift} drifted** of {len(drift)} rows "
            f"({drift[drift['drift']].groupby(['feature', 'segment']).ngroups} feature × segment)")
only = st.toggle("drifted rows only", value=param("only") == "1" or (param("only") == "" and n_drift > 0))
set_param("only", "1" if only else "0")
shown = drift[drift["drift"]] if only else drift
cols = ["feature", "segment", "test", "family", "statistic", "threshold", "p_value", "p_adjusted", "n_ref", "n_cur",
        "drift"]
st.dataframe(shown[[c for c in cols if c in shown.columns]], hide_index=True, width="stretch", height=300)
if shown.empty:
    st.stop()
labels = [f"{f} [{s}] {t}" for f, s, t in zip(shown["feature"], shown["segment"], shown["test"])]
wanted = param("row")
choice = st.selectbox("row to inspect", labels, index=labels.index(wanted) if wanted in labels else 0)
set_param("row", choice)
row = shown.iloc[labels.index(choice)]
feature, segment = row["feature"], row["segment"]
st.markdown(f"**{md(feature)}** in **{md(segment)}**, {md(row['test'])}: statistic {row['statistic']:.4g} "
            f"(threshold {row['threshold']:.4g}), adjusted p {row['p_adjusted']:.3g} → "
            f"{'**drift**' if row['drift'] else 'no drift'}")

ref_p, cur_p = profile("reference"), profile()


OBJECTS = "objects."  # rows about the annotated objects: their own profile (profile.objects), per class
column = feature.removeprefix(OBJECTS)


def sql_text(value: str) -> str:
    """A string literal for the Patches filter (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def sketches(p, name):
    if name.startswith(OBJECTS):
        p, name = p.objects, name.removeprefix(OBJECTS)
        if p is None:
            return None
    if segment == "all":
        return p.columns.get(name)
    seg, value = segment.split("=", 1)
    return p.segments.get(seg, {}).get(value, {}).get(name)


images = table("images")
in_segment = images["status"] == "ok"
if segment != "all":
    seg, value = segment.split("=", 1)
    in_segment &= images[seg].astype(str) == value if seg in images.columns else False

if feature.startswith("embedding"):
    st.subheader("Current images farthest from the reference's embedding sample")
    if not has("projection"):
        st.info("no embedding map in this bundle")
        st.stop()
    proj = table("projection")
    if "reference_distance" not in proj.columns:
        st.info("the map has no distances to the reference (its embeddings are of another model)")
        st.stop()
    far = proj.merge(images.loc[in_segment, ["id"]], on="id").sort_values("reference_distance", ascending=False)
    rows = paged(far, key="p")
    grid(rows, [f"{p} · {d:.3f}" for p, d in zip(rows["path"], rows["reference_distance"])], key="far")
    actions.act(far, where="drift:embedding", key="far", what="every image in this list")
    st.stop()

ref, cur = sketches(ref_p, feature), sketches(cur_p, feature)
if isinstance(ref, NumericSketch) and isinstance(cur, NumericSketch):
    lo, hi, d = moved_band(ref, cur)
    xs = np.linspace(min(ref.min, cur.min), max(ref.max, cur.max), 200).tolist()
    fig = go.Figure()
    fig.add_vrect(x0=lo, x1=hi, fillcolor="orange", opacity=0.2, line_width=0, annotation_text="moved")
    fig.add_scatter(x=xs, y=np.array(ref.cdf(xs))[:-1], name=f"reference ({ref.count:,})")
    fig.add_scatter(x=xs, y=np.array(cur.cdf(xs))[:-1], name=f"current ({cur.count:,})")
    fig.update_layout(title=f"{feature} [{segment}]: CDFs from the sketches", xaxis_title=feature,
                      yaxis_title="share below", height=380)
    st.plotly_chart(fig, width="stretch")
    if feature.startswith(OBJECTS):  # objects, not images: their crops are on the Patches page
        class_filter = f" AND class = {sql_text(segment.split('=', 1)[1])}" if segment.startswith("class=") else ""
        st.page_link("views/patches.py", label=f"the objects with {column} in [{lo:.4g}, {hi:.4g}] on the Patches page",
                     query_params={"pwhere": f"{column} BETWEEN {float(lo)!r} AND {float(hi)!r}{class_filter}"})
        st.stop()
    band = images[in_segment & images[feature].between(lo, hi)].sort_values(feature)
    st.subheader(f"Current images with {md(feature)} in \\[{lo:.4g}, {hi:.4g}\\] (where the CDFs differ by {d:.3f})")
    rows = paged(band, key="p")
    grid(rows, [f"{p} · {v:.4g}" for p, v in zip(rows["path"], rows[feature])], key="band")  # grid escapes captions
    actions.act(band, where=f"drift:{feature}", key="band", what="every image in the moved band")
elif isinstance(ref, CategoricalSketch) and isinstance(cur, CategoricalSketch):
    fr, fc = ref.frequencies(), cur.frequencies()
    values = sorted(set(fr) | set(fc))
    shares = pd.DataFrame({"value": values, "reference": [fr.get(v, 0) / ref.count for v in values],
                           "current": [fc.get(v, 0) / cur.count for v in values]})
    shares["change"] = shares["current"] - shares["reference"]
    shares = shares.sort_values("change", key=abs, ascending=False)
    st.bar_chart(shares.set_index("value")[["reference", "current"]], stack=False)
    top = shares.iloc[0]["value"] if len(shares) else None
    if feature.startswith(OBJECTS):
        st.page_link("views/patches.py", label=f"the objects with {column} = {top} on the Patches page",
                     query_params={"pwhere": f"{column} = {sql_text(str(top))}"})
        st.stop()
    st.subheader(f"Current images with {md(feature)} = {md(top)} (the value whose share moved most)")
    hits = images[in_segment & (images[feature].astype(str) == str(top))]
    rows = paged(hits, key="p")
    grid(rows, key="cat")
    actions.act(hits, where=f"drift:{feature}", key="cat", what="every image with this value")
else:
    st.info(f"no sketches of {md(feature)} in {md(segment)} in both profiles")
