"""Overview: which version this is, how many files and why some failed, labels and sources,
the model's agreement with the labels (when predictions were given), the validation outcome,
and how long each stage took."""

import pandas as pd
import streamlit as st

from dashboards.common import has, summary, table
from dashboards.selection import md

s = summary()
m, v = s["manifest"], s["versions"]
st.title("Overview")
raw = v["raw"]
st.markdown(f"**Dataset version** {md(raw.get('md5') or 'not versioned')} · git {md((raw.get('git_commit') or '-')[:12])}"
            f"{' (uncommitted changes)' if raw.get('git_dirty') else ''} · published {md(v.get('published', '-'))}"
            f" · pixelscope {md(v.get('pixelscope'))} · params {md(v.get('params'))}")
c = st.columns(5)
c[0].metric("files seen", f"{m['files_seen']:,}")
c[1].metric("ok", f"{m['ok']:,}")
c[2].metric("errors", f"{m['errors']:,}")
cur = s.get("curated")
c[3].metric("excluded by curation", f"{cur['excluded']:,}" if cur else "-")
val = s.get("validation")
c[4].metric("validation", "-" if not val else ("passed" if val["success"] else "failed"))

left, right = st.columns(2)
with left:
    st.subheader("Errors by reason")
    if m["errors_by_reason"]:
        st.dataframe(pd.DataFrame(list(m["errors_by_reason"].items()), columns=["reason", "files"]), hide_index=True)
        if has("manifest"):
            bad = table("manifest")
            bad = bad[bad["status"] != "ok"][["path", "reason", "detail"]]
            with st.expander(f"the {len(bad)} files that failed"):
                st.dataframe(bad, hide_index=True)
    else:
        st.caption("every file decoded")
    st.subheader("Labels")
    st.bar_chart(pd.Series(m["labels"], name="images"), horizontal=True)
    agree = s.get("agreement")
    if agree:  # the model's predictions (profile.predictions) against the labels
        st.subheader("Label / prediction agreement")
        st.dataframe(pd.DataFrame([(k, a["images"], a["agreement"]) for k, a in agree.items()],
                                  columns=["label", "images", "agreement"]), hide_index=True,
                     column_config={"agreement": st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                                 max_value=1)})
with right:
    st.subheader("Sources")
    st.dataframe(pd.DataFrame(list(m["sources"].items()), columns=["source", "images"]), hide_index=True)
    st.subheader("Formats")
    st.dataframe(pd.DataFrame(list(m["formats"].items()), columns=["format", "images"]), hide_index=True)
    st.subheader("Timings per stage (s)")
    st.dataframe(pd.DataFrame([(k, t) for k, t in s["timings"].items()], columns=["stage", "seconds"]), hide_index=True)

st.subheader("Validation")
if not has("validation"):
    st.info("No validation results in this bundle. Make them with: pixelscope validate && pixelscope publish")
else:
    from dashboards.common import bundle, guarded

    results = guarded(bundle().json, "validation")
    st.write("passed" if results["success"] else f"failed: {len(results['failed'])} expectation(s)")
    rows = []
    for suite, r in results["suites"].items():
        for x in r["results"]:
            rows.append({"suite": suite, "expectation": x["expectation"], "column": x.get("column"),
                         "met": "skipped" if x.get("skipped") else ("yes" if x["success"] else "NO"),
                         "observed": str(x.get("observed") if x.get("observed") is not None
                                         else x.get("unexpected_percent") if x.get("unexpected_percent") is not None
                                         else x.get("skipped") or ""),
                         })
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame.sort_values("met", key=lambda c: c.map({"NO": 0, "skipped": 2}).fillna(1), kind="stable")
    st.dataframe(frame, hide_index=True, width="stretch")
    if results["failed"]:
        st.error("\n".join(f"- {md(f)}" for f in results["failed"]))
