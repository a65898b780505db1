"""`pixelscope issues --show NAME`: the images one finder or flag found, with scores and reasons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from rich.markup import escape
from rich.table import Table

from pixelscope.cli.common import out
from pixelscope.errors import ConfigError
from pixelscope.io.values import fmt

ALIASES = {"duplicates": "duplicate", "duplicate": "duplicate", "label": "label_error", "labels": "label_error",
           "leak": "leakage", "outliers": "outlier"}


def flagged_rows(issues: Path, what: str, limit: int) -> tuple[str, list[dict[str, Any]]]:
    """Rows flagged by `what` (a finder, a quality flag, or `duplicates`: both duplicate kinds), worst first."""
    table = pq.read_table(issues).to_pandas()
    name = ALIASES.get(what, what)
    if name == "duplicate":
        cols = [c for c in ("exact_duplicate", "near_duplicate") if c in table]
        if not cols:
            raise ConfigError("--show duplicates: the issues table has no duplicate columns (finders not run)")
        mask = table[cols].any(axis=1)
        rows = table[mask].sort_values(["duplicate_group", "representative"], ascending=[True, False])
        keep = ["path", "duplicate_group", "representative", *cols, "reasons"]
    else:
        if name not in table or table[name].dtype != bool:
            flags = sorted(c for c in table if table[c].dtype == bool and f"{c}_score" in table)
            raise ConfigError(f"--show {what}: no such finder or flag; choose one of: duplicates, {', '.join(flags)}")
        rows = table[table[name]].sort_values(f"{name}_score", ascending=False)
        keep = ["path", f"{name}_score", *(["suggested_label", "label"] if name == "label_error" else []), "reasons"]
    return name, rows[keep].head(limit).to_dict("records")


def print_rows(name: str, rows: list[dict[str, Any]], total_hint: str = "") -> None:
    table = Table(title=f"{name}: {len(rows)} shown{total_hint}")
    if not rows:
        out.print(f"{name}: nothing flagged")
        return
    for c in rows[0]:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(escape(fmt(v)) for v in r.values()))
    out.print(table)
