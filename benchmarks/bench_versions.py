"""Diff of two 100,000-row manifests: the image matching alone, and `pixelscope diff` end to end
on two manifest files (which also builds both profiles and runs the drift tests).

    python benchmarks/bench_versions.py            # appends to BENCHMARKS.md
    python benchmarks/bench_versions.py --no-write

B is A with 1 % of the rows removed, 1 % added, 1 % modified (new id at the same path),
1 % moved (same id, new path) and 1 % relabelled (moved to another class folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_issues_scale import build  # noqa: E402

WORK = HERE / ".work" / "versions"


def make_b(a: pa.Table, rng: np.random.Generator) -> tuple[pa.Table, dict[str, int]]:
    df = a.to_pandas()
    n = len(df)
    k = n // 100
    order = rng.permutation(n)
    rem, mod, mov, rel = (order[i * k:(i + 1) * k] for i in range(4))
    df.loc[mod, "id"] = [f"{i:064x}" for i in rng.integers(0, 2**62, k)]
    df.loc[mov, "path"] = "moved/" + df.loc[mov, "path"]
    df.loc[rel, "label"] = "relabelled"
    df.loc[rel, "path"] = "relabelled/" + df.loc[rel, "path"]
    added = df.iloc[:k].copy()
    added["id"] = [f"{i:064x}" for i in rng.integers(0, 2**62, k)]
    added["path"] = [f"new/{i}.jpg" for i in range(k)]
    import pandas as pd

    b = pd.concat([df.drop(index=rem), added], ignore_index=True)
    return pa.Table.from_pandas(b, schema=a.schema, preserve_index=False), {"removed": k, "modified": k,
                                                                             "moved": 2 * k, "added": k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    from pixelscope.versions import diff_images

    root = build(args.size, HERE / ".work" / "issues-scale" / f"n{args.size}")
    WORK.mkdir(parents=True, exist_ok=True)
    a = pq.read_table(root / "manifest.parquet")
    b, want = make_b(a, np.random.default_rng(0))
    pq.write_table(a, WORK / "a.parquet")
    pq.write_table(b, WORK / "b.parquet")
    cols = ["id", "path", "label", "split"]
    fa, fb = a.select(cols).to_pandas(), b.select(cols).to_pandas()
    t0 = time.perf_counter()
    changes, unchanged = diff_images(fa, fb)
    match_s = time.perf_counter() - t0
    got = changes["change"].value_counts().to_dict()
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "pixelscope", "diff", str(WORK / "a.parquet"), str(WORK / "b.parquet"),
                        "--json", "-o", str(WORK / "diff.parquet")], capture_output=True, text=True, check=True)
    cli_s = time.perf_counter() - t0
    counts = json.loads(r.stdout)["counts"]
    res = {"rows": args.size, "match_s": round(match_s, 2), "cli_s": round(cli_s, 1), "found": got,
           "planted": want, "relabelled": counts["relabelled"], "unchanged": unchanged}
    print(json.dumps(res))
    if not args.no_write:
        with open(HERE.parent / "BENCHMARKS.md", "a") as fh:
            fh.write(f"\n### Version diff — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores\n\n"
                     f"`python benchmarks/bench_versions.py`: two {args.size:,}-row manifests (B = A with 1 % removed, "
                     "1 % added, 1 % modified, 1 % moved, 1 % moved to another class folder). Image matching "
                     f"(`diff_images`): **{match_s:.2f} s** (target ≤ 5 s); found {got}, planted {want} "
                     f"(moves include the relabelled 1 %: {counts['relabelled']:,} relabelled). `pixelscope diff a.parquet "
                     f"b.parquet --json -o diff.parquet` end to end, a fresh process that also builds both profiles "
                     f"from the manifests and runs every drift test: **{cli_s:.1f} s**.\n")


if __name__ == "__main__":
    main()
