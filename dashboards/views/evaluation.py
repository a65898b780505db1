"""Evaluation: the model's predictions against the labels (from the bundle's images table) —
accuracy, macro-F1, the confusion matrix (counts or row-normalised), per-class precision /
recall / F1, the reliability diagram, and the slices where the model fails; a confusion cell or
a slice opens its images (and, on a writable dashboard, lets you act on them). With a detector's
boxes: its COCO metrics (pycocotools' COCOeval: mAP, by size, per class, per label slice) and its
false positives and negatives, each opening its image."""

import json

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from dashboards import actions
from dashboards.common import bundle, grid, has, paged, param, set_param, stamps, table
from dashboards.selection import md
from pixelscope.errors import PixelscopeError
from pixelscope.evaluate import evaluate, evaluated_rows, slice_mask, with_tags

st.title("Evaluation")


@st.cache_resource(show_spinner=False, max_entries=2)
def tagged(stamp: tuple) -> pd.DataFrame:
    """The images with the ledger's review tags (slices too); shared, not copied: only read here."""
    return with_tags(table("images"), bundle().path("ledger")) if has("ledger") else table("images")


def boxes_section(errors: pd.DataFrame) -> None:
    m = json.loads(bundle().path("box_metrics").read_text())
    fp, fn = errors[errors["kind"] == "false_positive"], errors[errors["kind"] == "false_negative"]
    st.subheader("Boxes (COCO metrics, pycocotools)")
    a, b, c, d = st.columns(4)
    a.metric("mAP (IoU .50:.95)", "-" if m["map"] is None else f"{m['map']:.3f}")
    b.metric("mAP@50", "-" if m["map50"] is None else f"{m['map50']:.3f}")
    c.metric("false positives", f"{len(fp):,}")
    d.metric("false negatives", f"{len(fn):,}")
    st.caption(f"mAP by object size: small {m['map_small']} · medium {m['map_medium']} · large {m['map_large']} "
               "(COCO's areas: under 32², under 96², larger; at IoU 0.5 for the lists below)")
    st.dataframe(pd.DataFrame(m["per_class"]), hide_index=True, width="stretch")
    if m["slices"]:
        st.dataframe(pd.DataFrame(m["slices"]), hide_index=True, width="stretch")
    kind = st.radio("list", ["false negatives", "false positives"], horizontal=True, key="box_errors_kind")
    listed = (fn if kind == "false negatives" else fp).merge(table("images")[["id", "path"]], on="path", how="left")
    page = paged(listed, key="bp", size=12)
    for path, image_id, name, bbox, score in zip(page["path"], page["id"], page["class"], page["bbox"], page["score"]):
        said = f" · score {score:.2f}" if pd.notna(score) else ""
        st.page_link("views/images.py", label=f"{path} · {name} at ({', '.join(f'{v:.0f}' for v in bbox)}){said}",
                     query_params={"image": str(image_id)[:16]})


if has("box_metrics") and has("box_errors"):
    boxes_section(table("box_errors"))

images = tagged(stamps("manifest", "issues", "ledger"))
if "pred_label" not in images or "label" not in images:
    if has("box_metrics"):
        st.stop()
    st.info("No model predictions in this bundle. Set `profile.predictions` (a CSV or Parquet file with `path` or "
            "`id`, `prediction`, optional `confidence`) and rerun profile and publish.")
    st.stop()


@st.cache_data(show_spinner=False, max_entries=4)
def scored(stamp: tuple, min_slice: int) -> dict:
    return evaluate(images, min_slice)


min_slice = st.number_input("smallest slice", 5, 10_000, 20, step=5)
try:
    r = scored(stamps("manifest", "issues", "ledger"), int(min_slice))
except PixelscopeError as e:
    st.info(md(e))
    st.stop()
cols = st.columns(4)
cols[0].metric("evaluated", f"{r['evaluated']:,}", help=f"of {r['readable']:,} readable images ({r['coverage']:.0%})")
cols[1].metric("accuracy", f"{r['accuracy']:.3f}")
cols[2].metric("macro-F1", f"{r['macro_f1']:.3f}" if r["macro_f1"] is not None else "-")
cols[3].metric("ECE", f"{r['calibration']['ece']:.3f}" if r["calibration"] else "-")

classes = r["classes"]
counts = np.array(r["confusion"], dtype=float)
left, right = st.columns([3, 2])
with left:
    norm = st.toggle("row-normalised (recall per true class)", value=param("norm") == "1")
    set_param("norm", "1" if norm else None)
    shown = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) if norm else counts
    fig = px.imshow(shown, x=classes, y=classes, text_auto=".2f" if norm else True, color_continuous_scale="Blues",
                    labels={"x": "predicted", "y": "true", "color": "share" if norm else "images"}, aspect="auto")
    st.plotly_chart(fig, width="stretch")
with right:
    st.dataframe(pd.DataFrame(r["per_class"]), hide_index=True, width="stretch")
    if r["calibration"]:
        bins = pd.DataFrame(r["calibration"]["bins"])
        rel = go.Figure()
        rel.add_bar(x=(bins["from"] + bins["to"]) / 2, y=bins["accuracy"], width=0.09, name="accuracy")
        rel.add_scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfect", line={"dash": "dot"})
        rel.update_layout(title="reliability", xaxis_title="confidence", yaxis_title="accuracy", height=300)
        st.plotly_chart(rel, width="stretch")

rows = evaluated_rows(images)
st.subheader("A confusion cell")
c1, c2 = st.columns(2)
true_c = c1.selectbox("true label", classes, index=classes.index(param("true")) if param("true") in classes else 0)
pred_c = c2.selectbox("predicted", classes, index=classes.index(param("pred")) if param("pred") in classes else
                      (1 if len(classes) > 1 else 0))
set_param("true", true_c)
set_param("pred", pred_c)
cell = rows[(rows["label"].astype(str) == true_c) & (rows["pred_label"].astype(str) == pred_c)]
st.caption(f"{len(cell):,} images labelled {md(true_c)}, predicted {md(pred_c)}")
page = paged(cell, key="cp")
grid(page, [f"{p} · {md(t)} → {md(q)}" for p, t, q in zip(page["path"], page["label"], page["pred_label"])], key="cell")
actions.act(cell, where="evaluation:confusion", key="cell", what="this cell")

st.subheader("Where the model fails")
if not r["slices"]:
    st.caption("no slice is worse than the rest with 95 % confidence")
else:
    view = pd.DataFrame([{**s, "interval": f"{s['interval'][0]:.3f}-{s['interval'][1]:.3f}"} for s in r["slices"]])
    st.dataframe(view[["slice", "size", "accuracy", "interval", "rest_accuracy", "gap", "z"]], hide_index=True,
                 width="stretch")
    names = [s["slice"] for s in r["slices"]]
    chosen = st.selectbox("open a slice", names, index=names.index(param("slice")) if param("slice") in names else 0)
    set_param("slice", chosen)
    hit = rows[slice_mask(rows, chosen)]
    wrong = hit[hit["label"].astype(str) != hit["pred_label"].astype(str)]
    st.caption(f"{len(hit):,} images in the slice, {len(wrong):,} predicted wrong (shown first)")
    ordered = pd.concat([wrong, hit.drop(wrong.index)])
    page = paged(ordered, key="sp")
    grid(page, [f"{p} · {md(t)} → {md(q)}" for p, t, q in zip(page["path"], page["label"], page["pred_label"])],
         key="slice")
    actions.act(hit, where="evaluation:slice", key="slice", what="this slice")
