"""Patches: every annotated object (or the model's boxes) as a crop, in a grid — filtered by a SQL
expression over the objects table's columns (the same locked-down DuckDB as the Images filter),
sorted by any column, paged; each patch opens its image on the Images page. Crops come from the
original at full size when the raw data is at hand (dashboards/original.py), else from the
thumbnail; with annotations and predictions, which table is shown is a choice."""

import pandas as pd
import streamlit as st

from dashboards.boxes import crop
from dashboards.common import has, need, paged, param, set_param, table, thumbnails
from dashboards.original import full_size
from dashboards.selection import md
from pixelscope.errors import ConfigError

COLUMNS = 6

st.title("Patches")
if not need("objects"):
    st.stop()
sources = ["annotated objects"] + (["the model's boxes"] if has("predicted_objects") else [])
which = st.radio("show", sources, horizontal=True, key="patch_source")
objects = table("objects" if which == sources[0] else "predicted_objects")
objects = objects[objects["status"] == "ok"].reset_index(drop=True)
images = table("images")[["id", "path", "width", "height"]].drop_duplicates("path").set_index("path")

a, b, c = st.columns([3, 1, 1])
expression = a.text_input("filter (SQL over the object columns)", param("pwhere"), key="pwhere_box",
                          placeholder="class = 'bee' AND rel_area < 0.01")
set_param("pwhere", expression or None)
sortable = [col for col in ("rel_area", "area", "aspect", "score", "crop_sharpness", "crop_brightness", "crop_contrast",
            "cx", "cy", "fill", "class", "path") if col in objects]
by = b.selectbox("sort by", sortable, index=0, key="psort")
descending = c.toggle("largest first", value=False, key="pdesc")
if expression:
    from pixelscope.curate.select import Images

    try:
        objects = objects[Images.over(objects).where(expression, "filter", timeout_s=10)]
    except ConfigError as e:
        st.error(md(str(e)))
        st.stop()
objects = objects.sort_values(by, ascending=not descending, kind="stable")
counts = objects["class"].value_counts()
st.caption(f"{len(objects):,} objects · " + " · ".join(f"{md(str(k))} {v:,}" for k, v in counts.head(12).items()))
page = paged(objects, key="ppage", size=24)


@st.cache_data(show_spinner=False, max_entries=64)
def original(path: str):
    rgb, _ = full_size(path)
    return rgb


thumbs = thumbnails([images.at[p, "id"] for p in page["path"] if p in images.index])
grid = st.columns(COLUMNS)
for k, r in enumerate(page.itertuples(index=False)):
    row = r._asdict()
    name, path = page.iloc[k]["class"], row["path"]
    if path not in images.index:
        continue
    size = (int(images.at[path, "width"]), int(images.at[path, "height"]))
    source = original(path)
    if source is None:
        source = thumbs.get(images.at[path, "id"])
    if source is None:
        continue
    cell = grid[k % COLUMNS]
    cell.image(crop(source, size, (row["x0"], row["y0"], row["x1"], row["y1"])), width="stretch")
    score = f" · {row['score']:.2f}" if "score" in row and pd.notna(row.get("score")) else ""
    cell.caption(f"{md(str(name))} · {row['rel_area']:.3%} of the image{score}")
    cell.page_link("views/images.py", label="open image", query_params={"image": images.at[path, "id"]})
