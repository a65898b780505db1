"""Curate + the four exports at 10,000 and 50,000 images, against a plain `cp -r` of the same bytes.

    python benchmarks/bench_curate.py                   # 10k and 50k, appends to BENCHMARKS.md
    python benchmarks/bench_curate.py --sizes 10000

The images: the 5,000 benchmark JPEGs (bench_profile.py's set, real decodable files in 10
class folders) repeated with a unique 16-byte tail after the JPEG end marker, so every file
has its own id (sha256) and decodes to the same pixels. The manifest is the synthetic one of
bench_issues_scale.py (every column, so the curated set can be profiled) with the real
files' ids, paths, labels and sizes; the recipe keeps every readable image (no issues table:
exclusion costs nothing next to the exports). The step runs in its own process; its metrics
give the seconds per export. Targets: hard-linked torchvision tree >= 5,000 images/s;
webdataset and parquet within 2x of `cp -r` throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_issues_scale import build as synthetic_manifest  # noqa: E402
from bench_profile import image_set, measure  # noqa: E402

WORK = HERE / ".work" / "curate"


def build(n: int) -> Path:
    root = WORK / f"n{n}"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    src = sorted(image_set(5000).rglob("*.jpg"))
    raw = root / "data" / "raw"
    rows = []
    for i in range(n):
        s = src[i % len(src)]
        data = s.read_bytes() + i.to_bytes(16, "big")
        rel = f"{s.parent.name}/img{i:06d}.jpg"
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)
        rows.append((hashlib.sha256(data).hexdigest(), rel, s.parent.name, len(data)))
    synthetic = synthetic_manifest(n, WORK / f"synthetic-{n}")  # every manifest column
    t = pq.read_table(synthetic / "manifest.parquet")
    ids, paths, labels, sizes = (list(c) for c in zip(*rows))
    for col, values, typ in (("id", ids, pa.string()), ("path", paths, pa.string()), ("label", labels, pa.string()),
                             ("split", [None] * n, pa.string()), ("bytes", sizes, pa.int64()),
                             ("status", ["ok"] * n, pa.string()), ("reason", [None] * n, pa.string())):
        t = t.set_column(t.schema.get_field_index(col), col, pa.array(values, typ))
    for col in ("width", "height", "brightness_mean", "sharpness"):  # the synthetic error rows had none
        arr = t.column(col).to_pylist()
        t = t.set_column(t.schema.get_field_index(col), col, pa.array([v if v is not None else arr[0] for v in arr],
                                                                       t.schema.field(col).type))
    (root / "data" / "interim").mkdir(parents=True)
    pq.write_table(t, root / "data" / "interim" / "manifest.parquet")
    (root / ".complete").touch()
    return root


STEP = """
import json, sys
from pixelscope.config import parse_params
from pixelscope.curate.step import curate_step
p = parse_params({"paths": {"issues": "none.parquet"}, "curate": {"exclude": ["unreadable"]},
                  "validate": {"on_failure": "warn"}})
r = curate_step(p, sys.argv[1])
print(json.dumps({"images": r.counts["included"], "seconds": r.seconds, "exports": r.metrics["export_seconds"]}))
"""


def cp_seconds(root: Path) -> float:
    dst = WORK / "cp-target"
    shutil.rmtree(dst, ignore_errors=True)
    subprocess.run(["sync"], check=False)
    t0 = time.perf_counter()
    subprocess.run(["cp", "-r", str(root / "data" / "raw"), str(dst)], check=True)
    subprocess.run(["sync"], check=False)
    seconds = time.perf_counter() - t0
    shutil.rmtree(dst, ignore_errors=True)
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    runs = []
    for n in args.sizes:
        root = build(n)
        shutil.rmtree(root / "data" / "curated", ignore_errors=True)
        shutil.rmtree(root / "expectations", ignore_errors=True)
        shutil.copytree(HERE.parent / "expectations", root / "expectations")  # the curated set's quality check
        r = measure([sys.executable, "-c", STEP, str(root)])
        r["cp_seconds"] = round(cp_seconds(root), 2)
        r["bytes"] = sum(f.stat().st_size for f in (root / "data" / "raw").rglob("*.jpg"))
        shutil.rmtree(root / "data" / "curated", ignore_errors=True)
        print(json.dumps(r), flush=True)
        runs.append(r)
    if not args.no_write:
        write(runs)


def write(runs: list[dict]) -> None:
    lines = [f"\n### Curate and export — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, {os.cpu_count()} cores\n",
             "`python benchmarks/bench_curate.py`: the curate step (ledger, the four exports, the curated profile, "
             "the card) in its own process; images/s per export; `cp -r` of the same raw bytes for scale.\n",
             "| images | MB | step s | peak RSS MiB | cp -r img/s | torchvision img/s | imagefolder img/s | "
             "webdataset img/s (× cp) | parquet img/s (× cp) |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in runs:
        n, e = r["images"], r["exports"]
        cp = n / r["cp_seconds"]
        rate = {f: n / max(s, 1e-9) for f, s in e.items()}
        lines.append(f"| {n:,} | {r['bytes'] / 1e6:,.0f} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {cp:,.0f} | "
                     f"{rate['torchvision']:,.0f} | {rate['imagefolder']:,.0f} | "
                     f"{rate['webdataset']:,.0f} ({rate['webdataset'] / cp:.2f}) | "
                     f"{rate['parquet']:,.0f} ({rate['parquet'] / cp:.2f}) |")
    with open(HERE.parent / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
