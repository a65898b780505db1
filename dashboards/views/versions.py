"""Versions: every recorded dataset version, monitored drop and service window (the bundle's
history, from `pixelscope history` / `pixelscope monitor` / pixelscope.ImageLogger): counts,
feature quantile bands and label shares over versions, drift against the previous version and the reference. Without a history:
this version alone, and the command that records one."""

import json

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboards.common import has, profile, summary, table

st.title("Versions")
s = summary()


def verdict(x) -> str:
    return "-" if x is None or pd.isna(x) else ("DRIFT" if x else "ok")


if has("history"):
    hist = table("history")
    versions, drops = hist[hist["kind"] == "version"], hist[hist["kind"].isin(["drop", "service"])]
    a, b, c = st.columns(3)
    a.metric("versions", f"{len(versions):,}")
    b.metric("drifted from the previous", f"{int(versions['drift_prev'].fillna(False).astype(bool).sum()):,}")
    c.metric("monitored drops and service windows", f"{len(drops):,}",
             f"{int(drops['drift_ref'].fillna(False).astype(bool).sum())} drifted" if len(drops) else None,
             delta_color="inverse")
    shown = hist.assign(**{"vs previous": hist["drift_prev"].map(verdict), "vs reference": hist["drift_ref"].map(verdict)})
    if "pred_agrees_mean" in hist:  # the model's accuracy on the version: the exact mean of pred_agrees
        shown = shown.assign(accuracy=hist["pred_agrees_mean"].map(lambda a: "-" if pd.isna(a) else f"{a:.3f}"))
    cols = [c for c in ["rev", "kind", "date", "window", "files", "ok", "errors", "validation", "accuracy",
                        "vs previous", "drift_prev_features", "vs reference", "drift_ref_features"] if c in shown.columns]
    st.dataframe(shown[cols], hide_index=True, width="stretch",
                 column_config={"drift_prev_features": "drifted (vs previous)",
                                "drift_ref_features": "drifted (vs reference)"})
    if "pred_agrees_mean" in hist and hist["pred_agrees_mean"].notna().sum() > 1:
        st.plotly_chart(px.line(hist.assign(rev=hist["rev"].astype(str)), x="rev", y="pred_agrees_mean", markers=True,
                                height=280, labels={"pred_agrees_mean": "accuracy", "rev": "version"},
                                title="the model's accuracy per version"), width="stretch")
    features = sorted({c.rsplit("_p", 1)[0] for c in hist.columns if c.endswith("_p50")})
    if features:
        f = st.selectbox("feature", features, index=features.index("brightness_mean") if "brightness_mean" in features
                         else 0)
        x = hist["rev"].astype(str)
        fig = go.Figure()
        fig.add_scatter(x=x, y=hist[f"{f}_p95"], name="p95", line={"width": 0}, showlegend=False)
        fig.add_scatter(x=x, y=hist[f"{f}_p05"], name="p05–p95", fill="tonexty", line={"width": 0})
        fig.add_scatter(x=x, y=hist[f"{f}_p50"], name="median", mode="lines+markers")
        drifted = hist["drift_prev"].fillna(False).astype(bool) | hist["drift_ref"].fillna(False).astype(bool)
        fig.add_scatter(x=x[drifted], y=hist.loc[drifted, f"{f}_p50"], name="drifted", mode="markers",
                        marker={"symbol": "x", "size": 12, "color": "crimson"})
        fig.update_layout(height=360, xaxis_title="version", yaxis_title=f, margin={"t": 20})
        st.plotly_chart(fig, width="stretch")
    shares = [dict(json.loads(v or "{}"), rev=r) for v, r in zip(hist.get("label_shares", []), hist["rev"].astype(str))]
    if shares and any(len(d) > 1 for d in shares):
        long = pd.DataFrame(shares).melt(id_vars="rev", var_name="label", value_name="share").fillna(0)
        st.plotly_chart(px.bar(long, x="rev", y="share", color="label", height=320,
                               title="label shares per version"), width="stretch")
    if has("examples"):  # ImageLogger(keep_examples=K): what a service window looked like
        examples = table("examples")
        windows = hist[hist["key"].isin(set(examples["key"]))]
        windows = windows.assign(drifted=windows["drift_ref"].fillna(False).astype(bool)).sort_values(
            ["drifted", "key"], ascending=[False, False])  # drifted windows first, then the latest
        names = {r["key"]: f"{r['window'] if isinstance(r.get('window'), str) else r['rev']} · vs reference: "
                 f"{verdict(r['drift_ref'])}" for r in windows.to_dict("records")}
        st.subheader("Examples from a service window")
        key = st.selectbox("window", list(names), format_func=lambda k: names[k], key="examples_window")
        shown = examples[examples["key"] == key].sort_values("k")
        grid = st.columns(6)
        for i, jpeg in enumerate(shown["jpeg"]):
            grid[i % 6].image(jpeg, width="stretch")
        st.caption(f"{len(shown)} images sampled uniformly from the window (ImageLogger keep_examples)")
    st.stop()

st.info("No version history in this bundle: it shows this version only. Record one with "
        "`pixelscope history` (every version in the git log of data/raw.dvc), then `pixelscope publish`.")
raw, m = s["versions"]["raw"], s["manifest"]
p = profile()
row = {"version (DVC md5)": raw.get("md5"), "git": (raw.get("git_commit") or "")[:12], "files": m["files_seen"],
       "ok": m["ok"], "errors": m["errors"], "validation": (s.get("validation") or {}).get("success")}
for f in ("brightness_mean", "sharpness", "megapixels"):
    if f in p.columns and p.columns[f].count:
        q = p.quantiles(f, [0.05, 0.5, 0.95])
        row.update({f"{f} p05": q[0], f"{f} p50": q[1], f"{f} p95": q[2]})
st.dataframe(pd.DataFrame([row]), hide_index=True, width="stretch")
