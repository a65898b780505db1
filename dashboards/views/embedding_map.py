"""Embedding map: the 2-D projection as a WebGL scatter, coloured by any column (by cluster:
the Clusters page's groups); a box or lasso selection shows the selected images (the box is kept
in the URL); with "a click opens the image" on, a click on one point opens it (the browser's back
returns to this view).

Above MAP_POINTS points a uniform sample is drawn (stated under the map), because Streamlit
returns every selected point to the server as JSON; a box or lasso still selects by its shape
over all points, so nothing inside it is missed."""

import plotly.express as px
import streamlit as st

from dashboards import actions
from dashboards.common import grid, need, paged, param, set_param, stamps, table
from dashboards.selection import (
    MAP_POINTS,
    box_param,
    drawn_sample,
    ids_from_selection,
    ids_in_boxes,
    map_frame,
    parse_box,
    rows_of,
)

MAP_VIEW = ("color", "all", "click", "box")  # the map's state in the URL, carried to an opened image and back
st.title("Embedding map")
if not need("projection"):
    st.stop()
proj = table("projection")
images = table("images")
extra = [c for c in images.columns if c not in proj.columns]
preferred = ["label", "cluster", "split", "source", *[c for c in extra if c.endswith("_score")],
             "brightness_mean", "sharpness", "reference_distance", "near_duplicate", "label_error", "outlier"]
options = list(dict.fromkeys([c for c in preferred if c in proj.columns or c in extra]
                             + [c for c in extra if c not in ("id", "path")]))
wanted = param("color", "label")
color = st.selectbox("colour by", options, index=options.index(wanted) if wanted in options else 0)
set_param("color", color)


@st.cache_resource(show_spinner=False, max_entries=4)
def points(stamp: tuple, color: str, limit: int):
    """The map's rows for a colouring (cached: the id + path match takes 0.4 s at 100k).
    Only the columns this page shows: the manifest is not copied."""
    keep = [c for c in dict.fromkeys(["id", "path", "label", "reasons", color]) if c in images.columns]
    frame = map_frame(proj, images[keep])
    if frame[color].dtype == bool or frame[color].dtype == object or color == "cluster":
        frame[color] = frame[color].astype("Int64").astype(str) if color == "cluster" else frame[color].astype(str)
    return frame, drawn_sample(frame, limit)


frame, sample = points(stamps("projection", "manifest", "issues"), color, MAP_POINTS)

every = st.toggle("draw every point", value=param("all") == "1", disabled=len(frame) <= MAP_POINTS,
                  help=f"above {MAP_POINTS:,} points a uniform sample is drawn; selections cover every point")
set_param("all", "1" if every else None)
click_opens = st.toggle("a click opens the image (drag pans)", value=param("click") == "1",
                        help="off: drag a box or lasso to select; on: click one point to open it")
set_param("click", "1" if click_opens else None)
drawn = frame if every else sample
big = len(drawn) > 20_000  # above this, per-point paths triple what the browser receives (5.8 vs 1.8 MB at 100k)
fig = px.scatter(drawn, x="x", y="y", color=color, custom_data=["row"], render_mode="webgl",
                 hover_name=None if big else "path", height=560)
fig.update_traces(marker={"size": 3 if big else 5})
# Streamlit turns a click into a selection only when the map pans (in box / lasso mode it forces
# clickmode "event"), so opening by click is a mode of its own, kept in the URL
fig.update_layout(dragmode="pan" if click_opens else "select", legend={"itemsizing": "constant"})
for axis, v in (("xaxis", frame["x"]), ("yaxis", frame["y"])):  # every point's extent, drawn or not
    pad = 0.04 * float(v.max() - v.min() or 1.0)
    fig.update_layout({axis: {"range": [float(v.min()) - pad, float(v.max()) + pad]}})
event = st.plotly_chart(fig, on_select="rerun", selection_mode=("points", "box", "lasso"), key="map", width="stretch")
if len(drawn) < len(frame):
    st.caption(f"{len(drawn):,} of {len(frame):,} points drawn (a uniform sample); "
               "a box or lasso selects every point inside it")
ids = ids_from_selection(event, frame)
sel = event.get("selection", {}) if isinstance(event, dict) else getattr(event, "selection", {})
boxes = (sel or {}).get("box") or []
if click_opens and len(ids) == 1 and not boxes and not (sel or {}).get("lasso"):  # a click on one point: open it
    view = {k: param(k) for k in MAP_VIEW if param(k)}
    st.switch_page("views/images.py", query_params={"image": str(ids[0])[:16], **{f"map_{k}": v for k, v in view.items()}})
if boxes:
    b = boxes[0]
    set_param("box", box_param((min(b["x"]), max(b["x"]), min(b["y"]), max(b["y"]))))
elif ids:
    set_param("box", None)
box = parse_box(param("box"))
if not ids and box:
    ids = ids_in_boxes(frame, [box])
st.subheader(f"{len(ids):,} selected" if ids else "Draw a box or lasso on the map to see the images")
if ids:
    rows = paged(rows_of(frame, ids), key="p")
    cap = [f"{p} · {lab}" + (f" · {r}" if isinstance(r, str) and r else "")
           for p, lab, r in zip(rows["path"], rows.get("label", [""] * len(rows)),
                                rows.get("reasons", [""] * len(rows)))]
    grid(rows, cap, key="sel")
    actions.act(rows_of(frame, ids), where="map", key="map", what="the selection")
