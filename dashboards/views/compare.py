"""Compare: any two profiles side by side (two segments, the reference, another bundle or
profile file): overlaid CDFs per feature, and every feature's difference sorted by effect
size (KS distance for numbers, total variation for categories), all from the sketches."""

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboards.common import allowed_roots, guarded, has, param, profile, set_param
from dashboards.selection import linked_profile, md
from pixelscope.profile import Profile
from pixelscope.profile.sketches import CategoricalSketch, NumericSketch
from pixelscope.validate.drift import ks_statistic

OTHER = "another bundle or profile file…"

st.title("Compare")
p = profile()
choices: dict[str, tuple[str, tuple[str, str] | None]] = {"this version (all images)": ("profile", None)}
if has("reference"):
    choices["reference"] = ("reference", None)
for seg, values in p.segments.items():
    for value in sorted(values):
        choices[f"{seg}={value}"] = ("profile", (seg, value))
names = list(choices) + [OTHER]


def pick(slot: str, default: int) -> dict:
    got = param(slot)
    label = st.selectbox(slot.upper(), names, index=names.index(got) if got in names else default, key=f"w-{slot}")
    set_param(slot, label)
    if label == OTHER:
        path = st.text_input(f"{slot.upper()}: bundle folder or profile.json", param(f"{slot}_path"), key=f"w-{slot}p")
        set_param(f"{slot}_path", path)
        if not path:
            st.stop()
        f = guarded(linked_profile, path, allowed_roots())
        prof = guarded(Profile.load, f)
        return {"name": path, "columns": prof.columns}
    part, segment = choices[label]
    prof = profile(part)
    return {"name": label, "columns": prof.columns if segment is None else prof.segments[segment[0]][segment[1]]}


a_col, b_col = st.columns(2)
with a_col:
    a = pick("a", 0)
with b_col:
    b = pick("b", 1 if len(names) > 2 else 0)

rows = []
for name in sorted(set(a["columns"]) & set(b["columns"])):
    sa, sb = a["columns"][name], b["columns"][name]
    if not (sa.count and sb.count):
        continue
    if isinstance(sa, NumericSketch) and isinstance(sb, NumericSketch):
        pooled = np.sqrt((sa.variance + sb.variance) / 2) or 1.0
        rows.append({"feature": name, "kind": "numeric", "effect": ks_statistic(sa, sb), "measure": "KS distance",
                     "A median": sa.quantiles([0.5])[0], "B median": sb.quantiles([0.5])[0],
                     "mean diff (std units)": (sb.mean - sa.mean) / pooled, "A n": sa.count, "B n": sb.count})
    elif isinstance(sa, CategoricalSketch) and isinstance(sb, CategoricalSketch):
        fa, fb = sa.frequencies(), sb.frequencies()
        tv = 0.5 * sum(abs(fa.get(v, 0) / sa.count - fb.get(v, 0) / sb.count) for v in set(fa) | set(fb))
        rows.append({"feature": name, "kind": "categorical", "effect": tv, "measure": "total variation",
                     "A median": None, "B median": None, "mean diff (std units)": None, "A n": sa.count, "B n": sb.count})
frame = pd.DataFrame(rows)
if frame.empty:
    st.info("The two profiles share no feature with values.")
    st.stop()
frame = frame.sort_values("effect", ascending=False, kind="stable")
st.subheader(f"Differences, largest first: A = {md(a['name'])}, B = {md(b['name'])}")
st.dataframe(frame, hide_index=True, width="stretch", height=320)

numeric = frame[frame["kind"] == "numeric"]["feature"].tolist()
if numeric:
    wanted = param("feature", numeric[0])
    feature = st.selectbox("feature to overlay", numeric, index=numeric.index(wanted) if wanted in numeric else 0)
    set_param("feature", feature)
    sa, sb = a["columns"][feature], b["columns"][feature]
    xs = np.linspace(min(sa.min, sb.min), max(sa.max, sb.max), 200).tolist()
    fig = go.Figure()
    for label, s in (("A: " + a["name"], sa), ("B: " + b["name"], sb)):
        fig.add_scatter(x=xs, y=np.array(s.cdf(xs))[:-1], name=label)
    fig.update_layout(title=f"{feature}: CDFs", xaxis_title=feature, yaxis_title="share below", height=380)
    st.plotly_chart(fig, width="stretch")
