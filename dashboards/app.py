"""pixelscope dashboard: review a dataset version from its publish bundle.

    pixelscope dashboard [BUNDLE]        # or: make dashboard  (127.0.0.1:8501)

The bundle folder comes from $PIXELSCOPE_BUNDLE (default reports/publish); pages read only
that folder. Page, filters, selection and the chosen image live in the URL's query string.
Review actions (dashboards/actions.py) write the project's decisions file ($PIXELSCOPE_PROJECT,
default the working folder) when the dashboard is bound to loopback and not read-only.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `dashboards.*` when run by `streamlit run`

from dashboards import actions  # noqa: E402
from dashboards.common import bundle, bundle_folder, summary  # noqa: E402
from dashboards.selection import md  # noqa: E402

st.set_page_config(page_title="pixelscope", layout="wide")  # no material page_icon: its favicon comes from a CDN

PAGES = [
    st.Page("views/overview.py", title="Overview", default=True),
    st.Page("views/features.py", title="Features"),
    st.Page("views/compare.py", title="Compare"),
    st.Page("views/drift.py", title="Drift"),
    st.Page("views/embedding_map.py", title="Embedding map"),
    st.Page("views/clusters.py", title="Clusters"),
    st.Page("views/images.py", title="Images"),
    st.Page("views/patches.py", title="Patches"),
    st.Page("views/issues.py", title="Issues"),
    st.Page("views/curated.py", title="Curated set"),
    st.Page("views/decisions.py", title="Decisions"),
    st.Page("views/evaluation.py", title="Evaluation"),
    st.Page("views/versions.py", title="Versions"),
]

page = st.navigation(PAGES)
with st.sidebar:
    st.caption(f"bundle: {md(bundle_folder())}")
    bundle()
    v = summary()["versions"]
    st.caption(f"raw data {md(v['raw'].get('md5') or '?')} · git {md((v['raw'].get('git_commit') or '?')[:10])}"
               + (" (dirty)" if v["raw"].get("git_dirty") else ""))
    if actions.writable():
        actions.sidebar(summary().get("curated", {}).get("decisions_applied"))
    else:
        st.caption("read-only: actions are hidden")
page.run()
