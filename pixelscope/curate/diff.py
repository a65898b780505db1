"""Compare two ledgers (curation.parquet): images added, dropped, moved to another split,
relabeled. Images are matched by path in the raw folder. A moved image breaks the promise of
stable splits, so `moved` must be zero unless the recipe changed (curate.json records it)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pixelscope.config import Params
from pixelscope.errors import InputMissing


def read_curated(params: Params, project: Path, rev: str | None = None, folder: Path | None = None
                 ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(ledger, curate.json) from a folder, or from params.paths.curated at a git rev through DVC."""
    if rev is None:
        root = folder or params.paths.under(project).curated
        if not (root / "curation.parquet").exists():
            raise InputMissing(f"no ledger at {root / 'curation.parquet'} (run `pixelscope curate`)")
        meta = json.loads((root / "curate.json").read_text()) if (root / "curate.json").exists() else {}
        return pq.read_table(root / "curation.parquet").to_pandas(), meta
    import dvc.api

    base = Path(params.paths.curated)
    try:
        with dvc.api.open(str(base / "curation.parquet"), repo=str(project), rev=rev, mode="rb") as fh:
            ledger = pq.read_table(io.BytesIO(fh.read())).to_pandas()
        with dvc.api.open(str(base / "curate.json"), repo=str(project), rev=rev) as fh:
            meta = json.loads(fh.read())
    except Exception as e:  # noqa: BLE001 - unknown rev, not in the cache or remote: say which
        raise InputMissing(f"curate diff: cannot read {base}/curation.parquet at {rev!r} through DVC "
                           f"({type(e).__name__}: {e})") from None
    return ledger, meta


def diff(old: pd.DataFrame, new: pd.DataFrame, old_meta: dict[str, Any], new_meta: dict[str, Any]) -> dict[str, Any]:
    a = old[old["included"]].set_index("path")
    b = new[new["included"]].set_index("path")
    both = a.index.intersection(b.index)
    sa, sb = a.loc[both], b.loc[both]  # vectorised: a Python loop over .at took seconds at 100k

    def differs(col: str) -> np.ndarray:
        return sa[col].astype(object).fillna("\0").to_numpy() != sb[col].astype(object).fillna("\0").to_numpy()

    moved_mask = differs("split")
    moved = both[moved_mask].tolist()
    relabeled = both[differs("label")].tolist()
    recipe_changed = old_meta.get("recipe") != new_meta.get("recipe")
    return {"added": sorted(b.index.difference(a.index)), "dropped": sorted(a.index.difference(b.index)),
            "moved": sorted(moved), "relabeled": sorted(relabeled), "kept": len(both),
            "recipe_changed": recipe_changed, "stable": not moved or recipe_changed,
            "moves": {p: [x, y] for p, x, y in zip(moved, sa["split"][moved_mask], sb["split"][moved_mask])}}
