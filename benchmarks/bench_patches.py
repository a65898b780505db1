"""The Patches page at 100,000 objects, timed in a real browser.

    python benchmarks/bench_patches.py                       # 10,000 images, 100,000 objects
    python benchmarks/bench_patches.py --objects 20000       # a smaller table

The bundle starts as the detection demo's real one (`python -m flows.demo_detection`, 30 scenes:
summary, profile, manifest schema, objects schema), then its manifest is widened to 10,000 images
and its objects table to N synthetic objects over them (random boxes, five classes, crop
features), with real 160-px WebP thumbnails per image (bench_dashboard's), and no raw images at
hand, so every patch is cut from a thumbnail as on a machine without the data.

`streamlit run` as `pixelscope dashboard` starts it, driven by Playwright in Debian's Chromium
(bench_dashboard's `ready`: the server's script run finished and the browser drew it; then the
grid's 24 patches are in the page, every image loaded — included in the time):
the page's first load, warm reloads, and a filter in the URL (first and warm).
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
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))

from bench_dashboard import CHROMIUM, PeakRSS, ScriptRuns, fake_thumbnails, serve, timed  # noqa: E402

WORK = HERE / ".work" / "patches"
KEEP = ("summary.json", "profile.json", "manifest.parquet", "objects.parquet")
FILTER = "class = 'cat' AND rel_area < 0.01 AND crop_sharpness > 100"
GRID = """() => { const im = [...document.querySelectorAll('[data-testid="stImage"] img')];
  return im.length >= 24 && im.every(i => i.complete && i.naturalWidth > 0); }"""


def demo_bundle() -> Path:
    """The detection demo's publish folder (made once)."""
    project = WORK / "dd"
    if not (project / "reports" / "publish" / "objects.parquet").exists():
        subprocess.run([sys.executable, "-m", "flows.demo_detection", "--project", str(project), "--scenes", "30"],
                       cwd=REPO, check=True)
    return project / "reports" / "publish"


def make_bundle(images: int, objects: int) -> Path:
    out = WORK / f"bundle-{images}-{objects}"
    if (out / ".complete").exists():
        return out
    src = demo_bundle()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    for name in ("summary.json", "profile.json"):
        shutil.copy(src / name, out / name)
    manifest = pq.read_table(src / "manifest.parquet")
    ok = manifest.filter(pa.compute.equal(manifest.column("status"), "ok"))
    rows = ok.take(np.arange(images) % ok.num_rows)
    ids = [f"{k:064x}" for k in range(images)]
    paths = [f"synthetic/{k:06d}.jpg" for k in range(images)]
    rows = rows.set_column(rows.schema.get_field_index("id"), "id", pa.array(ids))
    rows = rows.set_column(rows.schema.get_field_index("path"), "path", pa.array(paths))
    pq.write_table(rows, out / "manifest.parquet")
    rng = np.random.default_rng(0)
    w, h = 512.0, 384.0
    image = rng.integers(0, images, objects)
    bw, bh = rng.uniform(8, 200, objects), rng.uniform(8, 200, objects)
    x0, y0 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    template = pq.read_table(src / "objects.parquet")
    classes = np.array(["astronaut", "cat", "coffee", "rocket", "motorcycle"])
    cols = {"path": np.array(paths)[image], "id": np.array(ids)[image], "object": np.arange(objects) % 10,
            "class": classes[rng.integers(0, 5, objects)], "class_id": rng.integers(1, 6, objects),
            "x0": x0, "y0": y0, "x1": x0 + bw, "y1": y0 + bh, "width": bw, "height": bh,
            "cx": (x0 + bw / 2) / w, "cy": (y0 + bh / 2) / h, "area": bw * bh, "rel_area": bw * bh / (w * h),
            "aspect": bw / bh, "crowd": np.zeros(objects, bool), "truncated": np.zeros(objects, bool),
            "crop_brightness": rng.uniform(0, 1, objects), "crop_contrast": rng.uniform(0, 0.4, objects),
            "crop_sharpness": rng.lognormal(5, 1.5, objects), "status": np.array(["ok"] * objects),
            "source": np.array(["synthetic.json"] * objects)}
    table = pa.table({f.name: pa.array(cols[f.name], f.type) if f.name in cols else pa.nulls(objects, f.type)
                      for f in template.schema})
    pq.write_table(table, out / "objects.parquet")
    fake_thumbnails(out / "thumbnails", ids)
    (out / ".complete").touch()
    return out


def drive(bundle: Path) -> dict:
    from playwright.sync_api import sync_playwright

    proc, url = serve(bundle)
    rss = PeakRSS(proc.pid)
    out: dict = {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            runs = ScriptRuns(page)
            for name, where in (("first", ""), ("warm", ""), ("warm_again", ""),
                                ("filtered", "?pwhere=" + urllib.parse.quote(FILTER)),
                                ("filtered_again", "?pwhere=" + urllib.parse.quote(FILTER))):
                t0 = time.perf_counter()
                timed(page, runs, f"{url}/patches{where}")
                page.wait_for_function(GRID, timeout=120_000, polling="raf")  # and the grid drawn, images loaded
                out[name] = time.perf_counter() - t0
                if page.locator("[data-testid='stException']").count():
                    raise SystemExit(f"{name}: an exception on the Patches page")
                out[f"{name}_caption"] = next((ln for ln in page.inner_text("body").splitlines()
                                               if " objects · " in ln), "")
                out[f"{name}_patches"] = page.locator("[data-testid='stImage']").count()
                print(f"{name:10s} {out[name]:.2f} s  {out[name + '_caption'][:80]}", flush=True)
            browser.close()
    finally:
        out["peak_rss_mb"] = rss.stop() / 2**20
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    bundle = make_bundle(a.images, a.objects)
    r = drive(bundle)
    row = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{platform.node()} {platform.machine()}",
           "cores": os.cpu_count(), "images": a.images, "objects": a.objects, **r}
    (HERE / "results").mkdir(exist_ok=True)
    with (HERE / "results" / "patches.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    if a.no_write:
        return
    lines = [f"\n### Patches page at {a.objects:,} objects — {row['date'][:10]}, {platform.machine()}, {os.cpu_count()} cores\n",
             f"`python benchmarks/bench_patches.py`: the detection demo's bundle widened to {a.images:,} images and "
             f"{a.objects:,} synthetic objects (crops cut from real 160-px WebP thumbnails); Streamlit driven by "
             "Playwright in Debian's Chromium, ready = script run finished and every image drawn. Target (issue 31): "
             "≤ 2 s warm.\n",
             "| visit | seconds | patches drawn |", "|---|---:|---:|",
             f"| first load (server cold) | {r['first']:.2f} | {r['first_patches']} |",
             f"| warm | {r['warm']:.2f} | {r['warm_patches']} |",
             f"| warm, again | {r['warm_again']:.2f} | {r['warm_again_patches']} |",
             f"| filter in the URL (`{FILTER}`): other patches, cut for the first time | {r['filtered']:.2f} | "
             f"{r['filtered_patches']} |",
             f"| the same filter, warm | {r['filtered_again']:.2f} | {r['filtered_again_patches']} |",
             "", f"Filtered caption: {r['filtered_caption'][:120]}. Streamlit peak RSS {r['peak_rss_mb']:,.0f} MiB.\n"]
    with (REPO / "BENCHMARKS.md").open("a") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
