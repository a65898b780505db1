"""Preprocess throughput: JPEG files -> model-ready uint8 tensors in the store, all cores.

    python benchmarks/bench_preprocess.py [--n 5000] [--workers 0] [--repeats 2]
    python benchmarks/bench_preprocess.py --code /path/to/other/checkout   # the same on other code

The preprocess step itself (decode workers, transforms, batches to the consumer, the shard
store), on the bench_profile image set, into a fresh tensor store each repeat; the manifest
is made once by the ingest step and not timed. `--code` runs another checkout's pixelscope
(e.g. a git worktree of the commit before a change) on the same images, for a before/after
in one sitting. Results are appended to benchmarks/results/preprocess.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_profile import WORK, image_set  # noqa: E402

RUN = r"""
import json, sys, time
from pathlib import Path
from pixelscope.config import parse_params
from pixelscope.embed.step import preprocess_step
from pixelscope.ingest.step import ingest_step
raw, work, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
params = parse_params({"ingest": {"workers": workers}, "preprocess": {"workers": workers, "device": "cpu"},
                       "paths": {"raw": str(raw), "manifest": str(work / "manifest.parquet"),
                                 "tensors": str(work / "tensors"), "metrics": str(work / "metrics")}})
if not (work / "manifest.parquet").exists():
    ingest_step(params, ".")
r = preprocess_step(params, ".")
print(json.dumps({"images": r.counts["computed"], "errors": r.counts["errors"], "seconds": r.seconds}))
"""


def git_commit(code: Path) -> str:
    r = subprocess.run(["git", "-C", str(code), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", str(code), "status", "--porcelain", "pixelscope"], capture_output=True, text=True)
    return r.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=0, help="decode processes (0 = one per core)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--code", type=Path, default=HERE.parent, help="the checkout whose pixelscope runs")
    args = ap.parse_args()
    raw = image_set(args.n)
    work = WORK / f"preprocess-{args.n}"
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": str(args.code.resolve())}
    commit = git_commit(args.code)
    out = HERE / "results" / "preprocess.jsonl"
    for k in range(args.repeats):
        shutil.rmtree(work / "tensors", ignore_errors=True)
        r = subprocess.run([sys.executable, "-c", RUN, str(raw), str(work), str(args.workers)], capture_output=True,
                           text=True, env=env, cwd=args.code)
        if r.returncode != 0:
            sys.exit(r.stderr[-3000:])
        result = json.loads(r.stdout.strip().splitlines()[-1])
        result.update(n=args.n, workers=args.workers or os.cpu_count(), code=commit, repeat=k,
                      images_per_s=round(result["images"] / result["seconds"], 1),
                      machine=f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores",
                      date=datetime.now(UTC).isoformat(timespec="seconds"))
        print(f"{commit}: preprocess {result['images']:,} images in {result['seconds']:.1f}s = "
              f"{result['images_per_s']:.1f} images/s", flush=True)
        with out.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
    shutil.rmtree(work / "tensors", ignore_errors=True)


if __name__ == "__main__":
    main()
