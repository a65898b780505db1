"""Versions: every recorded dataset version (from the history when the bundle has one; else
this version), with counts and feature quantile bands over versions."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.common import has, profile, summary, table

st.title("Versions")
s = summary()
if has("history"):
    hist = table("history")
    st.dataframe(hist, hide_index=True, width="stretch")
    quantiles = sorted({c.rsplit("_p", 1)[0] for c in hist.columns if c.endswith("_p50")})
    if quantiles:
        f = st.selectbox("feature", quantiles)
        fig = go.Figure()
        fig.add_scatter(x=hist["rev"], y=hist[f"{f}_p95"], name="p95", line={"width": 0})
        fig.add_scatter(x=hist["rev"], y=hist[f"{f}_p05"], name="p05–p95", fill="tonexty", line={"width": 0})
        fig.add_scatter(x=hist["rev"], y=hist[f"{f}_p50"], name="median")
        st.plotly_chart(fig, width="stretch")
    st.stop()
st.info("No version history in this bundle yet: it shows this version only. (Recording a history of versions "
        "is not built yet.)")
raw, m = s["versions"]["raw"], s["manifest"]
p = profile()
row = {"version (DVC md5)": raw.get("md5"), "git": (raw.get("git_commit") or "")[:12], "files": m["files_seen"],
       "ok": m["ok"], "errors": m["errors"], "validation": (s.get("validation") or {}).get("success")}
for f in ("brightness_mean", "sharpness", "megapixels"):
    if f in p.columns and p.columns[f].count:
        q = p.quantiles(f, [0.05, 0.5, 0.95])
        row.update({f"{f} p05": q[0], f"{f} p50": q[1], f"{f} p95": q[2]})
st.dataframe(pd.DataFrame([row]), hide_index=True, width="stretch")
