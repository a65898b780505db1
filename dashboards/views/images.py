"""Images: a thumbnail grid with a SQL filter (the same DuckDB engine as curate's filters), a
slice picker, sorting by any column, paging; an opened image shows all its columns, EXIF, its
annotated and predicted boxes (toggles; dashboards/boxes.py), its original at full size on demand
(from the raw folder or bucket: dashboards/original.py), issues, near-duplicates and more like it
(its nearest neighbours); a dropped image file finds the dataset images most like it
(dashboards/search.py)."""

import numpy as np
import pandas as pd
import streamlit as st

from dashboards import actions, search
from dashboards.boxes import draw
from dashboards.common import boxes_of, grid, has, paged, param, set_param, summary, table, thumbnails, where
from dashboards.original import full_size
from dashboards.selection import md, rows_of, sort_rows
from pixelscope.errors import ConfigError
from pixelscope.io.values import fmt

st.title("Images")
images = table("images")
chosen = param("image")
if chosen:
    hit = rows_of(images, [chosen])
    if hit.empty:
        st.warning(f"no image with id {md(chosen)}")
    else:
        r = hit.iloc[0]
        st.subheader(md(r["path"]))
        back = {k.removeprefix("map_"): param(k) for k in ("map_color", "map_all", "map_click", "map_box") if param(k)}
        if back:  # opened by a click on the map: back to the same view
            st.page_link("views/embedding_map.py", label="← back to the map", query_params=back)
        if st.button("back to the grid"):
            set_param("image", None)
            st.rerun()
        left, right = st.columns([1, 2])
        with left:
            t = thumbnails([r["id"]])
            truth = boxes_of("objects", str(r["path"]))
            predicted = boxes_of("predicted_objects", str(r["path"]))
            shown_truth = truth is not None and st.toggle(f"annotated boxes ({len(truth)})", value=True, key="gt_boxes")
            shown_pred = predicted is not None and st.toggle(f"the model's boxes ({len(predicted)})", value=True,
                                                             key="pred_boxes")
            size = (int(r["width"]), int(r["height"])) if pd.notna(r.get("width")) and pd.notna(r.get("height")) else None

            def with_boxes(image):
                if size is None or not (shown_truth or shown_pred):
                    return image
                return draw(image, size, truth if shown_truth else None, predicted if shown_pred else None)

            if st.toggle("full size", key="full_size", help="the original, read from the raw data (a folder or a bucket)"):
                rgb, caption = full_size(str(r["path"]))
                if rgb is None:
                    st.warning(md(caption))
                else:
                    st.image(with_boxes(rgb), caption=md(caption), width="stretch")
            elif r["id"] in t:
                st.image(with_boxes(t[r["id"]]), width="stretch")
            flags = [c for c in images.columns if f"{c}_score" in images.columns  # numpy's True is not `True`
                     and isinstance(r.get(c), (bool, np.bool_)) and bool(r.get(c))]
            st.markdown("**Issues:** " + (md(", ".join(flags)) if flags else "none"))
            if isinstance(r.get("reasons"), str) and r["reasons"]:
                st.caption(md(r["reasons"]))
        with right:
            exif = {c: r[c] for c in images.columns if c.startswith("exif_")}
            other = {c: r[c] for c in images.columns if c not in exif}
            st.dataframe(pd.DataFrame({"column": list(other), "value": [fmt(v) for v in other.values()]}),
                         hide_index=True, width="stretch", height=300)
            st.dataframe(pd.DataFrame({"EXIF": list(exif), "value": [fmt(v) for v in exif.values()]}),
                         hide_index=True, width="stretch")
        actions.act(hit.head(1), where="images:image", key="one", what="this image")
        if has("pairs"):
            pairs = table("pairs")
            mine = pairs[(pairs["a_id"] == r["id"]) | (pairs["b_id"] == r["id"])]
            other_ids = [b if a == r["id"] else a for a, b in zip(mine["a_id"], mine["b_id"])]
            st.subheader(f"Near-duplicates and leaks ({len(other_ids)})")
            dups = rows_of(images, other_ids).head(12)
            grid(dups, key="dups")
            actions.act(dups, where="images:near-duplicates", key="dups", what="these near-duplicates")
        if has("neighbours"):
            nb = table("neighbours")
            got = nb[nb["id"] == r["id"]]
            if len(got):
                ids, sims = list(got.iloc[0]["neighbours"]), list(got.iloc[0]["similarities"])
                rows = rows_of(images, ids)
                st.subheader("More like this (nearest by embedding cosine)")
                grid(rows, [f"{p} · {s:.3f}" for p, s in zip(rows["path"], sims)], key="nn")
                actions.act(rows, where="images:neighbours", key="nn", what="these neighbours")
        st.stop()

with st.expander("More like this: drop an image file"):
    why_not = search.available()
    if why_not:
        st.caption(md(why_not))
    else:
        dropped = st.file_uploader("an image (embedded with the dataset's model, in a process of its own)",
                                   key="like-file")
        if dropped is not None:
            data = dropped.getvalue()
            with st.spinner("embedding and searching"):
                result = search.search_file(search.digest(data), data, "." + dropped.name.rpartition(".")[2], 24)
            if "error" in result:
                st.error(md(result["error"]))
            else:
                like_sims = {r["id"]: r["similarity"] for r in result["results"]}
                like = rows_of(images, list(like_sims))
                st.caption(md(f"{len(like):,} most like {dropped.name} — {result['index']}"))
                grid(like, [f"{p} · {like_sims[i]:.3f}" for i, p in zip(like["id"], like["path"])], key="like")
                actions.act(like, where="images:like-file", key="like", what="these images")

expression = st.text_input("filter (SQL over manifest + issue columns, as in curate.where)", param("where"),
                           placeholder="label = 'cat' AND sharpness < 100")
set_param("where", expression)
saved = dict(summary().get("curated", {}).get("recipe", {}).get("slices", {}))  # curate.slices, as applied ...
if actions.writable():
    try:
        saved.update(actions.params().curate.slices)  # ... and as params.yaml has them now (saved here, say)
    except ConfigError as e:
        st.warning(md(e))
slices = ["all images", "readable", "errors"] + [c for c in images.columns if f"{c}_score" in images.columns]
slices += [f"slice: {name}" for name in saved]
if has("ledger"):
    slices += ["curated: included", "curated: excluded"]
wanted = param("slice", "all images")
slice_ = str(st.selectbox("slice", slices, index=slices.index(wanted) if wanted in slices else 0))
set_param("slice", None if slice_ == "all images" else slice_)
c1, c2 = st.columns([3, 1])
sortable = list(images.columns)
wanted = param("sort", "path")
sort = c1.selectbox("sort by", sortable, index=sortable.index(wanted) if wanted in sortable else 0)
set_param("sort", sort)
desc = c2.toggle("descending", value=param("desc") == "1")
set_param("desc", "1" if desc else None)

mask = pd.Series(True, index=images.index)
if expression:
    try:
        mask &= where(expression)
    except ConfigError as e:
        st.error(md(e))  # it quotes the filter from the URL
        st.stop()
if slice_ == "readable":
    mask &= images["status"] == "ok"
elif slice_ == "errors":
    mask &= images["status"] != "ok"
elif slice_.startswith("curated: "):
    ledger = table("ledger")
    inc = set(ledger.loc[ledger["included"], "id"])
    mask &= images["id"].isin(inc) if slice_.endswith("included") else ~images["id"].isin(inc)
elif slice_.startswith("slice: "):
    try:
        mask &= where(saved[slice_.removeprefix("slice: ")])
    except ConfigError as e:
        st.error(md(e))
        st.stop()
elif slice_ != "all images":
    mask &= images[slice_].fillna(False).astype(bool)
shown = sort_rows(images[mask], sort, desc)
st.markdown(f"**{len(shown):,} images** match")
rows = paged(shown)
picked = rows
if actions.writable() and len(rows):
    every = st.toggle(f"select all {len(shown):,} matching this filter", key="all-matching")
    ticks = st.dataframe(rows[["path", "label"]] if "label" in rows else rows[["path"]], hide_index=True,
                         width="stretch", on_select="rerun", selection_mode="multi-row", key="ticks", height=180)
    ticked = rows.iloc[ticks.selection.rows] if ticks and ticks.selection.rows else rows.iloc[0:0]
    picked = shown if every else ticked
decorate = None
if has("objects") and st.toggle("boxes on the thumbnails", key="grid_boxes"):
    def decorate(row, thumb):  # annotated boxes (solid) and the model's (dashed) on each thumbnail
        if pd.isna(row["width"]) or pd.isna(row["height"]):
            return thumb
        return draw(thumb, (int(row["width"]), int(row["height"])), boxes_of("objects", str(row["path"])),
                    boxes_of("predicted_objects", str(row["path"])))
grid(rows, [f"{p} · {fmt(v)}" if sort != "path" else str(p) for p, v in zip(rows["path"], rows[sort])],
     decorate=decorate)
if actions.writable():
    actions.act(picked, where="images", key="grid",
                what=f"all {len(shown):,} matching" if len(picked) == len(shown) else "the ticked images")
    if expression:
        with st.expander("Save this filter as a slice (curate.slices in params.yaml)"):
            name = st.text_input("slice name", key="slice-name")
            if st.button("Save slice", disabled=not name):
                from pixelscope.curate.slices import save_slice

                try:
                    save_slice(actions.params_file(), name, expression)
                    st.toast(f"saved slice {name!r}: the next curate records it, the Images page lists it after Apply")
                except ConfigError as e:
                    st.error(md(e))
