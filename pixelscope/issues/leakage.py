"""Cross-split leakage: exact or near-duplicate groups whose members sit in different splits."""

from __future__ import annotations

from itertools import combinations

import numpy as np
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
    group = dup.columns["duplicate_group"].to_numpy(dtype=float)
    split = frame["split"].to_numpy(dtype=object)
    in_group = np.flatnonzero(~np.isnan(group))
    rows = in_group[np.argsort(group[in_group], kind="stable")]  # grouped rows, group by group
    cuts = np.flatnonzero(np.diff(group[rows])) + 1
    flagged = np.zeros(len(frame), bool)
    pairs, reasons = [], {}
    for members in np.split(rows, cuts) if len(rows) else []:
        splits = {s for s in split[members] if s is not None and s == s}
        if len(splits) < 2:
            continue
        for a, b in combinations(sorted(members.tolist()), 2):
            sa, sb = split[a], split[b]
            if sa in splits and sb in splits and sa != sb:
                pairs.append({"a": a, "b": b, "kind": "leakage", "signal": "duplicate_group",
                              "distance": float("nan"), "similarity": float("nan")})
        gid = int(group[members[0]])
        for r in members.tolist():
            flagged[r] = True
            reasons[r] = [f"duplicate group {gid} also in {', '.join(sorted(splits - {split[r]}))}"]
    flagged_s = pd.Series(flagged, index=frame.index)
    return Finding("leakage", {"leakage": flagged_s, "leakage_score": flagged_s.astype(float)}, reasons, pairs,
                   {"flagged": int(flagged.sum()), "pairs": len(pairs)})
