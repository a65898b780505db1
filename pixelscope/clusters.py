"""What each cluster of the embedding map is: one row per cluster, for the Clusters page.

    table = cluster_table(images, projection)   # images: manifest + issue columns, one row per file
    read_clusters(store_folder, ids)            # the embed step's cluster of each id (for the issues table)

The clusters are the embed step's (HDBSCAN on the map, embed/projection.py; -1 = noise). Per
cluster: its size; its label mix and purity (the top label's share of its labelled images); the
share of each issue flag next to the share overall; the features that most set it apart (Cohen's
d of each numeric per-image column, cluster against the rest); and its most central images (the
nearest to its centre on the map). Clusters that need a look come first: `attention` is the larger
of 1 - purity and the largest rise of an issue flag's share over its share overall; noise last.
Publish writes the table into the bundle (clusters.parquet); nothing here reads a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

CENTRAL = 6  # central images kept per cluster
DISTINCT = 3  # distinguishing features kept per cluster
NOT_FEATURES = {"cluster", "duplicate_group", "x", "y", "reference_distance", "frames", "exif_orientation"}


def read_clusters(store_folder: Path, ids: pd.Series) -> pa.Array | None:
    """The map's cluster of each id (null where it has none), or None without a clustered map."""
    path = store_folder / "projection.parquet"
    if not path.exists() or "cluster" not in pq.read_schema(path).names:
        return None
    t = pq.read_table(path, columns=["id", "cluster"]).to_pandas()
    found = ids.map(pd.Series(t["cluster"].to_numpy(), index=t["id"]).groupby(level=0).first())
    return pa.array(found.astype("Int32"), pa.int32(), from_pandas=True)


def _flags(images: pd.DataFrame) -> list[str]:
    """Boolean issue columns (the finders' flags) with at least one image flagged."""
    return [c for c in images.columns
            if images[c].dtype == bool and f"{c}_score" in images.columns and bool(images[c].any())]


def _features(images: pd.DataFrame) -> list[str]:
    return [c for c in images.columns
            if c not in NOT_FEATURES and not c.endswith("_score") and not c.startswith(("pred_", "exif_"))
            and pd.api.types.is_numeric_dtype(images[c]) and not pd.api.types.is_bool_dtype(images[c])
            and images[c].nunique() > 2]


def cohens_d(rows: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Cohen's d of each feature (columns), each cluster (index) against the rest: the standardised
    mean difference with the pooled SD; 0 where a side has fewer than 2 values or no spread. From
    per-cluster counts, sums and sums of squares (one groupby, not a pass over the rest per cluster:
    13 s -> well under a second at 100k images in 200 clusters); centred first, for precision."""
    x = rows[features].astype(float)
    x = x - x.mean()
    by = rows["cluster"].to_numpy()
    n, s, q = (v.groupby(by).sum() for v in (x.notna().astype(float), x, x ** 2))
    n_rest, s_rest, q_rest = n.sum() - n, s.sum() - s, q.sum() - q
    var_in = (q - s ** 2 / n) / (n - 1)
    var_rest = (q_rest - s_rest ** 2 / n_rest) / (n_rest - 1)
    pooled = np.sqrt(((n - 1) * var_in + (n_rest - 1) * var_rest) / (n + n_rest - 2))
    d = (s / n - s_rest / n_rest) / pooled
    return d.where((n >= 2) & (n_rest >= 2) & (pooled > 1e-12), 0.0).fillna(0.0)


def cluster_table(images: pd.DataFrame, projection: pd.DataFrame) -> pd.DataFrame:
    """One row per cluster (columns below), most in need of a look first. `images` has `id` and
    `cluster` (the issues table carries it) plus any label / flag / feature columns;
    `projection` has id, x, y."""
    columns = ["cluster", "size", "share", "top_label", "purity", "labels", "standout", "distinct",
               "attention", "central", "central_paths"]
    if "cluster" not in images.columns or images["cluster"].notna().sum() == 0:
        return pd.DataFrame(columns=columns)
    rows = images[images["cluster"].notna()].copy()
    rows["cluster"] = rows["cluster"].astype(int)
    xy = projection.drop_duplicates("id").set_index("id")[["x", "y"]]
    flags, features = _flags(rows), _features(rows)
    overall = {f: float(rows[f].mean()) for f in flags}
    effects = cohens_d(rows, features)
    out = []
    for c, part in rows.groupby("cluster", sort=True):
        labels = part["label"].dropna().value_counts() if "label" in part else pd.Series(dtype=int)
        purity = float(labels.iloc[0] / labels.sum()) if len(labels) else float("nan")
        rises = {f: float(part[f].mean()) - overall[f] for f in flags}
        standout = sorted(((r, f) for f, r in rises.items() if r > 0), reverse=True)[:3]
        ds = sorted(((float(effects.at[c, f]), f) for f in features), key=lambda t: -abs(t[0]))[:DISTINCT]
        at = xy.reindex(part["id"]).dropna()
        centre = at.mean()
        near = ((at - centre) ** 2).sum(axis=1).sort_values().index[:CENTRAL] if len(at) else []
        paths = part.drop_duplicates("id").set_index("id")["path"]
        out.append({
            "cluster": int(c), "size": len(part), "share": len(part) / len(rows),
            "top_label": labels.index[0] if len(labels) else None, "purity": purity,
            "labels": " · ".join(f"{k} {v}" for k, v in labels.head(3).items()),
            "standout": "; ".join(f"{f} {part[f].mean():.0%} ({overall[f]:.0%} overall)" for _, f in standout),
            "distinct": "; ".join(f"{f} {d:+.1f} sd" for d, f in ds if abs(d) >= 0.5),
            "attention": -1.0 if c == -1 else max(0.0 if np.isnan(purity) else 1 - purity,
                                                  max(rises.values(), default=0.0)),
            "central": list(near), "central_paths": [str(paths.get(i, "")) for i in near],
        })
    table = pd.DataFrame(out, columns=columns)
    return table.sort_values(["attention", "size"], ascending=[False, False], kind="stable").reset_index(drop=True)
