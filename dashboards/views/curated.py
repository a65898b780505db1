"""Curated set: included / excluded per reason (from the ledger), class × split, examples of
each exclusion reason, the dataset card, the exports."""

import re

import pandas as pd
import streamlit as st

from dashboards import actions
from dashboards.common import bundle, grid, need, section, table
from dashboards.selection import md

st.title("Curated set")
c = section("curated", "ledger")
cols = st.columns(4)
cols[0].metric("files", f"{c['files']:,}")
cols[1].metric("included", f"{c['included']:,}")
cols[2].metric("excluded", f"{c['excluded']:,}")
cols[3].metric("labels fixed", f"{c.get('labels_fixed', 0):,}")
ledger = table("ledger")  # first_reason: the kind of a row's first reason, as the ledger counts it
left, right = st.columns(2)
with left:
    st.subheader("Excluded, by first reason")
    st.dataframe(pd.DataFrame(list(c["excluded_by_first_reason"].items()), columns=["reason", "images"]),
                 hide_index=True, width="stretch")
with right:
    st.subheader("Class × split")
    inc = ledger[ledger["included"]]
    st.dataframe(pd.crosstab(inc["label"].fillna("(none)"), inc["split"].fillna("(none)"), margins=True),
                 width="stretch")
st.subheader("Examples of each exclusion reason")
reasons = [r for r in c["excluded_by_first_reason"]]
if reasons:
    tabs = st.tabs([md(r) for r in reasons])
    for tab, reason in zip(tabs, reasons):
        with tab:
            every = ledger[~ledger["included"] & (ledger["first_reason"] == reason)]
            ex = every.head(6)
            grid(ex, [str(r) for r in ex["reasons"]], key=f"ex-{reason}")
            actions.act(every, where=f"curated:{reason}", key=f"ex-{reason}",
                        what=f"every image excluded as {reason}", actions=("include", "exclude", "relabel", "tag"))
st.subheader("Exports")
st.dataframe(pd.DataFrame({"format": c["recipe"]["formats"]}), hide_index=True)
st.subheader("Dataset card")
if need("card"):
    card = bundle().card()
    # shown as text: a card is rendered from the data (labels, paths, the recipe), so as Markdown an image
    # or a link in it would make the browser fetch it
    st.code(re.sub(r"\A---\n.*?\n---\n", "", card, flags=re.S), language="markdown", wrap_lines=True)
