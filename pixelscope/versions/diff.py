"""What changed between two dataset versions: images, features, issues, the curated set.

Images are matched by path first, then by content (the id is the content hash):
- same path, same id: unchanged — unless its label changed (relabelled) or its split did;
- same path, new id: modified (new content);
- a path only in A whose id reappears at a path only in B: moved (renamed), matched one to
  one (byte copies share an id: the k-th copy in A pairs with the k-th in B, in path order);
  a moved image whose label differs is also relabelled;
- the rest: removed (only in A) or added (only in B).
Features: quantile and mean deltas from the two profiles, and the existing drift tests of B
against A. Issues (when both have tables): per issue, images flagged in B and not in A (new)
and the reverse (fixed), by path. Curated sets (when both have ledgers): the curate diff.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from pixelscope.config import DriftConfig
from pixelscope.profile.sketches import NumericSketch
from pixelscope.versions.source import Version

CHANGES = ("added", "removed", "modified", "moved")
QUANTILES = (0.05, 0.5, 0.95)
IMAGE_COLUMNS = ["change", "path", "old_path", "id", "old_id", "label", "old_label", "split", "old_split",
                 "relabelled", "split_changed"]


def _differs(a: pd.Series, b: pd.Series) -> np.ndarray:
    """Element-wise a != b where two nulls are equal."""
    a, b = a.astype(object), b.astype(object)
    na, nb = a.isna().to_numpy(), b.isna().to_numpy()
    return (na != nb) | (~na & ~nb & (a.to_numpy() != b.to_numpy()))


def diff_images(a: pd.DataFrame, b: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(one row per image that changed (IMAGE_COLUMNS), how many did not change at all)."""
    def side(m: pd.DataFrame) -> pd.DataFrame:
        m = m.reindex(columns=["id", "path", "label", "split"])
        return m.drop_duplicates("path")

    a, b = side(a), side(b)
    m = a.merge(b, on="path", how="outer", suffixes=("_a", "_b"), indicator=True)
    both = m[m["_merge"] == "both"]
    same = both[both["id_a"] == both["id_b"]]
    modified = both[both["id_a"] != both["id_b"]]
    only_a = m.loc[m["_merge"] == "left_only", ["path", "id_a", "label_a", "split_a"]].sort_values("path")
    only_b = m.loc[m["_merge"] == "right_only", ["path", "id_b", "label_b", "split_b"]].sort_values("path")
    only_a["k"] = only_a.groupby("id_a").cumcount()
    only_b["k"] = only_b.groupby("id_b").cumcount()
    moved = only_a.merge(only_b, left_on=["id_a", "k"], right_on=["id_b", "k"], suffixes=("_old", ""))
    removed = only_a[~only_a["path"].isin(moved["path_old"])]
    added = only_b[~only_b["path"].isin(moved["path"])]

    def rows(change: str, f: pd.DataFrame, path: str, old_path: str | None, new: bool, old: bool) -> pd.DataFrame:
        n = len(f)
        none = pd.Series([None] * n, index=f.index, dtype=object)
        out = pd.DataFrame({
            "change": [change] * n,
            "path": f[path] if new else none,
            "old_path": f[old_path] if old and old_path else none,
            "id": f["id_b"] if new else none, "old_id": f["id_a"] if old else none,
            "label": f["label_b"] if new else none, "old_label": f["label_a"] if old else none,
            "split": f["split_b"] if new else none, "old_split": f["split_a"] if old else none,
        })
        both_sides = new and old and change != "modified"
        out["relabelled"] = _differs(out["label"], out["old_label"]) if both_sides else False
        out["split_changed"] = _differs(out["split"], out["old_split"]) if both_sides else False
        return out

    parts = [rows("unchanged", same, "path", "path", True, True),
             rows("modified", modified, "path", "path", True, True),
             rows("moved", moved, "path", "path_old", True, True),
             rows("removed", removed.rename(columns={"path": "p"}), "p", "p", False, True),
             rows("added", added, "path", None, True, False)]
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=bool if c in ("relabelled", "split_changed") else object)
                             for c in IMAGE_COLUMNS}), 0
    out = pd.concat(parts, ignore_index=True)
    keep = (out["change"] != "unchanged") | out["relabelled"] | out["split_changed"]
    out = out[keep].sort_values(["change", "path", "old_path"], kind="stable", na_position="last")
    return out.reset_index(drop=True), int((~keep).sum())


def image_counts(changes: pd.DataFrame, unchanged: int) -> dict[str, int]:
    c = {k: int((changes["change"] == k).sum()) for k in CHANGES}
    c["relabelled"] = int(changes["relabelled"].sum())
    c["split_changed"] = int(changes["split_changed"].sum())
    c["unchanged"] = unchanged
    return c


def feature_deltas(a: Version, b: Version, drift: pd.DataFrame | None) -> pd.DataFrame:
    """Per numeric feature of both profiles: p05 / p50 / p95 / mean in A and B, B - A, drifted tests."""
    rows = []
    for name in sorted(set(a.profile.columns) & set(b.profile.columns)):
        sa, sb = a.profile.columns[name], b.profile.columns[name]
        if not (isinstance(sa, NumericSketch) and isinstance(sb, NumericSketch)) or not (sa.count and sb.count):
            continue
        qa, qb = sa.quantiles(list(QUANTILES)), sb.quantiles(list(QUANTILES))
        row: dict[str, Any] = {"feature": name}
        for q, x, y in zip(("p05", "p50", "p95"), qa, qb):
            row[f"{q}_a"], row[f"{q}_b"] = x, y
            row[f"{q}_delta"] = None if x is None or y is None else y - x
        row["mean_a"], row["mean_b"], row["mean_delta"] = sa.mean, sb.mean, sb.mean - sa.mean
        hits = drift[(drift["feature"] == name) & drift["drift"]] if drift is not None and len(drift) else None
        row["drift"] = bool(hits is not None and len(hits))
        row["drifted_tests"] = "" if hits is None else ", ".join(f"{t}[{s}]" for t, s in zip(hits["test"],
                                                                                            hits["segment"]))
        rows.append(row)
    return pd.DataFrame(rows)


def drift_rows(a: Version, b: Version, cfg: DriftConfig) -> pd.DataFrame:
    """The drift tests of B against A (A is the reference), as validate's drift table."""
    from pixelscope.validate.drift import compare
    from pixelscope.validate.step import drift_frame

    return drift_frame(compare(a.profile, b.profile, cfg))


def issue_changes(a: pd.DataFrame, b: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per issue column of both tables: flagged in A, in B, new (flagged in B only) and fixed
    (flagged in A only), by path; paths listed."""
    out = {}
    for issue in sorted(c for c in set(a.columns) & set(b.columns)
                        if f"{c}_score" in a.columns and a[c].dtype == bool and b[c].dtype == bool):
        fa = set(a.loc[a[issue], "path"])
        fb = set(b.loc[b[issue], "path"])
        out[issue] = {"a": len(fa), "b": len(fb), "new": sorted(fb - fa), "fixed": sorted(fa - fb)}
    return out


@dataclass
class VersionDiff:
    a: Version
    b: Version
    images: pd.DataFrame | None  # diff_images (None when a side has no manifest)
    counts: dict[str, int] = field(default_factory=dict)
    features: pd.DataFrame = field(default_factory=pd.DataFrame)
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)
    issues: dict[str, dict[str, Any]] | None = None
    curated: dict[str, Any] | None = None
    missing: list[str] = field(default_factory=list)  # what could not be compared, and why

    def to_dict(self) -> dict[str, Any]:
        images = self.images
        lists = {} if images is None else {
            k: images.loc[images["change"] == k, "old_path" if k == "removed" else "path"].tolist() for k in CHANGES}
        if images is not None:
            lists["moved_from"] = dict(zip(images.loc[images["change"] == "moved", "path"],
                                           images.loc[images["change"] == "moved", "old_path"]))
            rel = images[images["relabelled"]]
            lists["relabelled"] = {p: [o, n] for p, o, n in zip(rel["path"], rel["old_label"], rel["label"])}
            sp = images[images["split_changed"]]
            lists["split_changed"] = {p: [o, n] for p, o, n in zip(sp["path"], sp["old_split"], sp["split"])}
        feats = self.features.replace({np.nan: None}).to_dict("records") if len(self.features) else []
        return {"a": {"name": self.a.name, "kind": self.a.kind, **self.a.meta},
                "b": {"name": self.b.name, "kind": self.b.kind, **self.b.meta},
                "counts": self.counts, "images": lists, "features": feats,
                "drifted": sorted(set(self.drift.loc[self.drift["drift"], "feature"])) if len(self.drift) else [],
                "issues": self.issues, "curated": self.curated, "missing": self.missing}


def diff_versions(a: Version, b: Version, cfg: DriftConfig | None = None) -> VersionDiff:
    """Everything that changed from A to B, as far as both versions hold the parts."""
    cfg = cfg or DriftConfig()
    missing = []
    images = None
    counts: dict[str, int] = {"files_a": a.profile.files_seen, "files_b": b.profile.files_seen}
    if a.manifest is not None and b.manifest is not None:
        images, unchanged = diff_images(a.manifest, b.manifest)
        counts.update(image_counts(images, unchanged))
    else:
        missing.append("images: a side has no manifest (a profile file only)")
    drift = drift_rows(a, b, cfg)
    issues = None
    if a.issues is not None and b.issues is not None:
        issues = issue_changes(a.issues, b.issues)
    else:
        missing.append("issues: a side has no issues table (run `pixelscope issues` there)")
    curated = None
    if a.ledger is not None and b.ledger is not None:
        from pixelscope.curate.diff import diff as ledger_diff

        curated = ledger_diff(a.ledger, b.ledger, {}, {})
        curated = {k: v for k, v in curated.items() if k not in ("recipe_changed", "stable")}
    else:
        missing.append("curated set: a side has no curation ledger (run `pixelscope curate` there)")
    return VersionDiff(a, b, images, counts, feature_deltas(a, b, drift), drift, issues, curated, missing)
