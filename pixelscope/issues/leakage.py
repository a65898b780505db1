"""Cross-split leakage: exact or near-duplicate groups whose members sit in different splits."""

from __future__ import annotations

from itertools import combinations

import pandas as pd

from pixelscope.issues.base import Dataset, Finding, finder
from pixelscope.issues.duplicates import near_duplicate


@finder("leakage", _builtin=True)
def leakage(data: Dataset, found: dict[str, Finding]) -> Finding:
    """Every member of a duplicate group that spans train/val/test; the pairs across splits, one by one."""
    frame = data.frame
    if frame["split"].notna().sum() == 0:
        return Finding.skip("leakage", "no splits (no train/val/test folders in the paths)")
    dup = found.get("near_duplicate") or near_duplicate(data, found)
    group = dup.columns["duplicate_group"]
    flagged = pd.Series(False, index=frame.index)
    pairs, reasons = [], {}
    for gid, rows in group.dropna().groupby(group.dropna()).groups.items():
        splits = frame.loc[rows, "split"]
        if splits.dropna().nunique() < 2:
            continue
        for a, b in combinations(sorted(rows), 2):
            if pd.notna(splits[a]) and pd.notna(splits[b]) and splits[a] != splits[b]:
                pairs.append({"a": int(a), "b": int(b), "kind": "leakage", "signal": "duplicate_group",
                              "distance": float("nan"), "similarity": float("nan")})
        for r in rows:
            flagged[r] = True
            others = sorted(set(splits.dropna()) - {splits[r]})
            reasons[int(r)] = [f"duplicate group {int(gid)} also in {', '.join(others)}"]
    return Finding("leakage", {"leakage": flagged, "leakage_score": flagged.astype(float)}, reasons, pairs,
                   {"flagged": int(flagged.sum()), "pairs": len(pairs)})
