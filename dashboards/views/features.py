"""Features: each feature's distribution drawn from the profile's sketches (KLL PMF and CDF
with the sketch's rank error as a band), quantiles, top values with error bounds, per
segment overlaid; EXIF summaries. With annotations, the same for the objects' own profile
(area, relative area, aspect, centre, ... overall and per class: object sizes per class)."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.common import param, profile, set_param
from pixelscope.io.values import fmt
from pixelscope.profile.sketches import CategoricalSketch, DistinctSketch, NumericSketch

QS = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
BINS = 30

st.title("Features")
p = profile()
if p.objects is not None:  # the annotated objects' sketches: a profile of their own, per class
    kinds = ["images", "annotated objects"]
    asked = param("rows", "images")
    rows_of = st.radio("rows", kinds, horizontal=True, index=kinds.index(asked) if asked in kinds else 0, key="rows")
    set_param("rows", None if rows_of == "images" else rows_of)
    if rows_of == "annotated objects":
        p = p.objects
numeric = sorted(n for n, s in p.columns.items() if isinstance(s, NumericSketch))
categorical = sorted(n for n, s in p.columns.items() if isinstance(s, CategoricalSketch))
names = numeric + categorical
if not names:
    st.info("The profile has no feature columns.")
    st.stop()
default = next((n for n in ("brightness_mean", "rel_area") if n in names), names[0])
wanted = param("feature", default)
feature = st.selectbox("feature", names, index=names.index(wanted) if wanted in names else 0)
set_param("feature", feature)
segs = ["(none)"] + list(p.segments)
seg = st.radio("overlay per segment", segs, horizontal=True,
               index=segs.index(param("segment")) if param("segment") in segs else 0)
set_param("segment", None if seg == "(none)" else seg)
sk = p.columns[feature]


def histogram(s: NumericSketch, edges: list[float]) -> np.ndarray:
    return np.array(s.pmf(edges[1:-1])) if s.count else np.zeros(len(edges) - 1)


if isinstance(sk, NumericSketch):
    st.caption(f"{sk.count:,} values, {sk.nulls:,} null · KLL rank error ±{sk.resolution:.2%} "
               f"({'exact: the sketch holds every value' if sk.resolution == 0 else 'estimation mode'})")
    if sk.count == 0:
        st.info("no values")
        st.stop()
    edges = np.linspace(sk.min, sk.max, BINS + 1).tolist() if sk.max > sk.min else [sk.min, sk.min + 1]
    mids = [(a + b) / 2 for a, b in zip(edges[:-1], edges[1:])]
    left, right = st.columns(2)
    hist = go.Figure()
    share = histogram(sk, edges)
    err = 2 * sk.resolution  # the mass of an interval is off by at most twice the rank error
    hist.add_bar(x=mids, y=share * sk.count, name="all", error_y={"type": "data", "array": [err * sk.count] * len(mids),
                                                                   "visible": err > 0})
    cdf = go.Figure()
    xs = np.linspace(sk.min, sk.max, 200).tolist()
    f = np.array(sk.cdf(xs))[:-1]
    cdf.add_scatter(x=xs + xs[::-1], y=list(np.clip(f + sk.resolution, 0, 1)) + list(np.clip(f - sk.resolution, 0, 1))[::-1],
                    fill="toself", line={"width": 0}, name="rank error", opacity=0.3)
    cdf.add_scatter(x=xs, y=f, name="all")
    rows = [{"segment": "all", "count": sk.count, **{f"p{round(q * 100):02d}": sk.quantiles([q])[0] for q in QS},
             "mean": sk.mean, "std": sk.std}]
    if seg != "(none)":
        hist = go.Figure()
        for value, sketches in sorted(p.segments[seg].items()):
            s = sketches.get(feature)
            if not isinstance(s, NumericSketch) or not s.count:
                continue
            hist.add_scatter(x=mids, y=histogram(s, edges), name=f"{seg}={value}", mode="lines")
            cdf.add_scatter(x=xs, y=np.array(s.cdf(xs))[:-1], name=f"{seg}={value}")
            rows.append({"segment": f"{seg}={value}", "count": s.count,
                         **{f"p{round(q * 100):02d}": s.quantiles([q])[0] for q in QS}, "mean": s.mean, "std": s.std})
        hist.update_layout(yaxis_title="share of the segment")
    hist.update_layout(title=f"{feature}: histogram (from the KLL sketch)", xaxis_title=feature, height=380,
                       yaxis_title=hist.layout.yaxis.title.text or "images")
    cdf.update_layout(title=f"{feature}: CDF with the rank-error band", xaxis_title=feature, yaxis_title="share below",
                      height=380)
    left.plotly_chart(hist, width="stretch")
    right.plotly_chart(cdf, width="stretch")
    st.subheader("Quantiles")
    st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch")
elif isinstance(sk, CategoricalSketch):  # names holds numeric and categorical columns only
    st.caption(f"{sk.count:,} values, {sk.nulls:,} null, about {sk.distinct:,.0f} distinct")
    rows = [{"segment": "all", "value": v, "estimate": e, "lower bound": lo, "upper bound": hi}
            for v, e, lo, hi in sk.top(20)]
    if seg != "(none)":
        for value, sketches in sorted(p.segments[seg].items()):
            s = sketches.get(feature)
            if isinstance(s, CategoricalSketch):
                rows += [{"segment": f"{seg}={value}", "value": v, "estimate": e, "lower bound": lo, "upper bound": hi}
                         for v, e, lo, hi in s.top(10)]
    frame = pd.DataFrame(rows)
    fig = go.Figure()
    for segment, g in frame.groupby("segment", sort=False):
        fig.add_bar(x=g["value"], y=g["estimate"], name=segment,
                    error_y={"type": "data", "symmetric": False, "array": g["upper bound"] - g["estimate"],
                             "arrayminus": g["estimate"] - g["lower bound"]})
    fig.update_layout(title=f"{feature}: top values (frequent-items sketch, with error bounds)", height=380)
    st.plotly_chart(fig, width="stretch")
    st.dataframe(frame, hide_index=True, width="stretch")

st.subheader("EXIF")
exif = [n for n in p.columns if n.startswith("exif_")]
if not exif:
    st.caption("no EXIF columns in the profile")
else:
    exif_rows: list[dict[str, object]] = []
    for n in exif:
        s = p.columns[n]
        row: dict[str, object] = {"field": n, "with value": s.count, "missing": s.nulls}
        if isinstance(s, NumericSketch) and s.count:
            q = s.quantiles([0.05, 0.5, 0.95])
            row["summary"] = f"p05 {fmt(q[0])} · median {fmt(q[1])} · p95 {fmt(q[2])}"
        elif isinstance(s, CategoricalSketch) and s.count:
            row["summary"] = ", ".join(f"{v} ({e})" for v, e, *_ in s.top(5))
        elif isinstance(s, DistinctSketch) and s.count:
            row["summary"] = f"about {s.distinct:,.0f} distinct"
        exif_rows.append(row)
    st.dataframe(pd.DataFrame(exif_rows), hide_index=True, width="stretch")
