"""`pixelscope history` over 20 versions of a 5,000-image dataset, in a real git + DVC repo.

    python benchmarks/bench_history.py            # appends to BENCHMARKS.md
    python benchmarks/bench_history.py --no-write

Each version is bench_issues_scale's synthetic manifest with 2 % of its rows replaced by new
images and brightness creeping up (+0.004 per version), its profile built from it, both
tracked with `dvc add` (as the pipeline's dvc.lock outs are: the files live in the DVC cache,
only their hashes in git), and data/raw.dvc recording a new raw md5; one commit and tag per
version. Timed as a user runs it (a fresh `pixelscope history` process): from nothing (20
versions computed: read through DVC at each commit, rows, drift against the previous version
and the reference v01), a rerun (nothing new), and after a 21st version (one computed).
The manifests carry no embeddings, so the embedding drift tests do not run here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
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

WORK = HERE / ".work" / "history"
BIN = Path(sys.executable).parent


def sh(*args: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1"}
    return subprocess.run(list(args), cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout


def record(project: Path, base: pa.Table, k: int, rng: np.random.Generator) -> None:
    from pixelscope.profile import Profile

    df = base.to_pandas()
    n = len(df)
    new = rng.choice(n, n // 50 * k, replace=False) if k else np.array([], int)
    df.loc[new, "id"] = [f"{i:064x}" for i in rng.integers(0, 2**62, len(new))]
    df.loc[new, "path"] = [f"v{k:02d}/{i}.jpg" for i in range(len(new))]
    if "brightness_mean" in df:
        df["brightness_mean"] = df["brightness_mean"] + 0.004 * k
    manifest = project / "data" / "interim" / "manifest.parquet"
    profile = project / "data" / "processed" / "profile.json"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    profile.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(df, schema=base.schema, preserve_index=False), manifest)
    Profile.from_manifest(manifest).save(profile)
    (project / "data" / "raw.dvc").write_text(
        f"outs:\n- md5: {k + 1:032x}.dir\n  nfiles: {n}\n  path: raw\n")
    sh("dvc", "add", "-q", str(manifest.relative_to(project)), str(profile.relative_to(project)), cwd=project)
    sh("git", "add", "-A", cwd=project)
    sh("git", "commit", "-qm", f"v{k + 1:02d}", cwd=project)
    sh("git", "tag", f"v{k + 1:02d}", cwd=project)


def history(project: Path) -> tuple[float, dict]:
    t0 = time.perf_counter()
    out = sh(sys.executable, "-m", "pixelscope", "history", "--json", "--set", "validate.reference_rev=v01",
             cwd=project)
    return time.perf_counter() - t0, json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=5_000)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    base = pq.read_table(build(args.size, HERE / ".work" / "issues-scale" / f"n{args.size}") / "manifest.parquet")
    shutil.rmtree(WORK, ignore_errors=True)
    project = WORK / "project"
    project.mkdir(parents=True)
    sh("git", "init", "-q", cwd=project)
    sh("git", "config", "user.email", "bench@example.com", cwd=project)
    sh("git", "config", "user.name", "bench", cwd=project)
    sh("dvc", "init", "-q", cwd=project)
    shutil.copy(HERE.parent / "params.yaml", project / "params.yaml")
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for k in range(args.versions):
        record(project, base, k, rng)
    made_s = time.perf_counter() - t0
    first_s, first = history(project)
    again_s, again = history(project)
    record(project, base, args.versions, rng)
    one_s, one = history(project)
    import pandas as pd

    h = pd.read_parquet(project / "reports" / "history" / "history.parquet")
    res = {"versions": args.versions, "images": args.size, "make_versions_s": round(made_s, 1),
           "first_s": round(first_s, 2), "first": first["counts"], "rerun_s": round(again_s, 2),
           "rerun": again["counts"], "one_more_s": round(one_s, 2), "one_more": one["counts"],
           "drift_prev": int(h["drift_prev"].fillna(False).astype(bool).sum()),
           "drift_ref": int(h["drift_ref"].fillna(False).astype(bool).sum())}
    print(json.dumps(res))
    assert first["counts"]["computed"] == args.versions and again["counts"]["computed"] == 0
    assert one["counts"]["computed"] == 1 and len(h) == args.versions + 1
    if not args.no_write:
        with open(HERE.parent / "BENCHMARKS.md", "a") as fh:
            fh.write(
                f"\n### Version history — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores\n\n"
                f"`python benchmarks/bench_history.py`: {args.versions} versions of a {args.size:,}-image synthetic "
                "dataset committed in a real git + DVC repo (manifest and profile in the DVC cache, 2 % of images "
                "replaced and brightness +0.004 per version). `pixelscope history` as a fresh process: from nothing "
                f"**{first_s:.1f} s** ({args.versions} versions read through DVC at their commits, rows, drift against "
                f"the previous version and the reference v01); a rerun **{again_s:.1f} s** (nothing computed, file not "
                f"rewritten); after a {args.versions + 1}st version **{one_s:.1f} s** (1 computed). Drift verdicts: "
                f"{res['drift_prev']} of {args.versions + 1} versions drifted from the previous one, {res['drift_ref']} "
                "from the reference (the brightness creep adds up). No embeddings in these manifests, so no embedding "
                "tests ran.\n")


if __name__ == "__main__":
    main()
