"""Objects at scale: a synthetic COCO set of 100,000 images and 1,000,000 boxes (80 classes).

    python benchmarks/bench_objects.py                    # 100k images, 10 boxes each
    python benchmarks/bench_objects.py --images 10000     # a quicker run

Each figure from its own process (peak RSS is that process's own):
- parse + objects table: pixelscope.annotations (read the JSON, check every box against its image,
  the objects and per-image tables), against a manifest of the same 100k images;
- pycocotools' COCO(file) loading the same JSON (load + index), the same run;
- the object profile (sketches overall and per class) and merging two halves' profiles;
- the objects finder (duplicate boxes, class overlap, small / cut objects, ...) over the 1M boxes.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
WORK = HERE / ".work" / "objects"


def peak_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def make_set(images: int, per_image: int) -> tuple[Path, Path]:
    """The COCO JSON and a manifest (path, id, width, height, status) of the same images."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    WORK.mkdir(parents=True, exist_ok=True)
    ann_file, manifest = WORK / f"coco-{images}-{per_image}.json", WORK / f"manifest-{images}.parquet"
    if ann_file.exists() and manifest.exists():
        return ann_file, manifest
    rng = np.random.default_rng(0)
    w, h = 1000, 750
    n = images * per_image
    bw, bh = rng.uniform(5, 300, n), rng.uniform(5, 300, n)
    x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    cats = rng.integers(1, 81, n)
    image_of = np.repeat(np.arange(images), per_image)
    with ann_file.open("w") as fh:
        fh.write('{"images": [')
        fh.write(",".join(f'{{"id": {k}, "file_name": "img/{k:07d}.jpg", "width": {w}, "height": {h}}}'
                          for k in range(images)))
        fh.write('], "categories": [')
        fh.write(",".join(f'{{"id": {c}, "name": "class{c}"}}' for c in range(1, 81)))
        fh.write('], "annotations": [')
        fh.write(",".join(f'{{"id": {k + 1}, "image_id": {int(image_of[k])}, "category_id": {int(cats[k])}, "iscrowd": 0, '
                          f'"bbox": [{x[k]:.1f}, {y[k]:.1f}, {bw[k]:.1f}, {bh[k]:.1f}], "area": {bw[k] * bh[k]:.1f}}}'
                          for k in range(n)))
        fh.write("]}")
    pq.write_table(pa.table({"path": [f"img/{k:07d}.jpg" for k in range(images)],
                             "id": [f"{k:064x}" for k in range(images)], "width": [w] * images, "height": [h] * images,
                             "status": ["ok"] * images, "label": [None] * images}), manifest)
    return ann_file, manifest


def child(mode: str, ann_file: str, manifest: str) -> dict:
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    if mode == "pycocotools":
        from pycocotools.coco import COCO

        coco = COCO(ann_file)
        return {"seconds": round(time.perf_counter() - t0, 2), "peak_rss_mb": peak_mb(), "objects": len(coco.anns)}
    from pixelscope.annotations.formats import read
    from pixelscope.annotations.objects import objects_table

    found = read(Path(ann_file))
    objects, images, counts = objects_table(found, pq.read_table(manifest))
    parsed = time.perf_counter() - t0
    out = {"parse_and_table_seconds": round(parsed, 2), "peak_rss_mb": peak_mb(), "objects": counts["kept"]}
    if mode == "pixelscope":
        return out
    if mode == "profile":
        from pixelscope.config import ProfileConfig
        from pixelscope.profile.objects import object_profile

        path = WORK / "objects.parquet"
        pq.write_table(objects, path)
        half = objects.num_rows // 2
        pq.write_table(objects.slice(0, half), WORK / "a.parquet")
        pq.write_table(objects.slice(half), WORK / "b.parquet")
        t1 = time.perf_counter()
        whole = object_profile(path, ProfileConfig())
        out["profile_seconds"] = round(time.perf_counter() - t1, 2)
        a, b = object_profile(WORK / "a.parquet", ProfileConfig()), object_profile(WORK / "b.parquet", ProfileConfig())
        assert whole is not None and a is not None and b is not None
        t2 = time.perf_counter()
        a.merge(b)
        out["merge_seconds"] = round(time.perf_counter() - t2, 3)
        out["profile_bytes"] = len(whole.serialize())
        out["merged_equals_whole_count"] = a.ok == whole.ok
        return out
    if mode == "finder":
        import pandas as pd

        from pixelscope.config import IssuesConfig
        from pixelscope.issues.base import Dataset
        from pixelscope.issues.objects import objects as finder

        frame = pq.read_table(manifest).to_pandas()
        data = Dataset(frame, IssuesConfig(), objects=objects.to_pandas())
        t1 = time.perf_counter()
        f = finder(data, {})
        out["finder_seconds"] = round(time.perf_counter() - t1, 2)
        out["flagged"] = f.summary["by_flag"]
        out["peak_rss_mb"] = peak_mb()
        del pd
        return out
    if mode == "predictions":  # the finder with a model's boxes: cleanlab per box + the unmatched check
        from pixelscope.config import IssuesConfig
        from pixelscope.issues.base import Dataset
        from pixelscope.issues.objects import _unmatched
        from pixelscope.issues.objects import objects as finder

        gt = objects.to_pandas()
        rng = np.random.default_rng(1)
        pred = gt.copy()  # the true boxes jittered by up to 2 px, confident
        for c in ("x0", "y0", "x1", "y1"):
            pred[c] = pred[c] + rng.uniform(-2, 2, len(pred))
        pred["score"] = rng.uniform(0.9, 0.99, len(pred))
        frame = pq.read_table(manifest).to_pandas()
        t1 = time.perf_counter()
        unmatched = _unmatched(gt, pred[pred["score"] >= 0.95])
        out["unmatched_seconds"] = round(time.perf_counter() - t1, 2)
        out["unmatched_images"] = len(unmatched)
        t1 = time.perf_counter()
        f = finder(Dataset(frame, IssuesConfig(), objects=gt, predicted=pred), {})
        out["finder_with_predictions_seconds"] = round(time.perf_counter() - t1, 2)
        out["flagged"] = f.summary["by_flag"]
        out["predicted"] = len(pred)
        out["peak_rss_mb"] = peak_mb()
        return out
    raise SystemExit(f"unknown mode {mode}")


def run(mode: str, ann_file: Path, manifest: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", mode, str(ann_file), str(manifest)],
                       capture_output=True, text=True, timeout=3600)
    if r.returncode:
        raise RuntimeError(f"{mode}: {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--images", type=int, default=100_000)
    ap.add_argument("--per-image", type=int, default=10)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child)))
        return
    ann_file, manifest = make_set(a.images, a.per_image)
    row = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{platform.node()} {platform.machine()}",
           "images": a.images, "boxes": a.images * a.per_image, "json_mb": round(ann_file.stat().st_size / 2**20, 1)}
    for mode in ("pixelscope", "pycocotools", "profile", "finder", "predictions"):
        row[mode] = run(mode, ann_file, manifest)
        print(mode, row[mode], flush=True)
    with (HERE / "results" / "objects.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    p, c, pr, f, fp = row["pixelscope"], row["pycocotools"], row["profile"], row["finder"], row["predictions"]
    lines = [f"\n### Objects at scale — {row['date'][:10]}, {row['machine']}\n",
             f"`python benchmarks/bench_objects.py --images {a.images}`: a synthetic COCO JSON of {a.images:,} images "
             f"and {row['boxes']:,} boxes ({row['json_mb']} MB, 80 classes), each figure from its own process.\n",
             "| what | seconds | peak RSS |", "|---|---:|---:|",
             f"| pixelscope: parse + check every box + objects and per-image tables | {p['parse_and_table_seconds']} | "
             f"{p['peak_rss_mb']} MB |",
             f"| pycocotools `COCO(file)` (load + index; no checks, no tables) | {c['seconds']} | {c['peak_rss_mb']} MB |",
             f"| object profile (sketches overall and per class) | {pr['profile_seconds']} | |",
             f"| merging two halves' object profiles | {pr['merge_seconds']} | |",
             f"| the objects finder over every box | {f['finder_seconds']} | {f['peak_rss_mb']} MB (with the table) |",
             f"| with {fp['predicted']:,} predicted boxes: the unmatched-prediction check | {fp['unmatched_seconds']} | |",
             f"| with {fp['predicted']:,} predicted boxes: the whole objects finder (cleanlab.object_detection's "
             "badloc / swap / overlooked scores per box, in one process per core, are most of it) | "
             f"{fp['finder_with_predictions_seconds']} | {fp['peak_rss_mb']} MB |",
             "", f"Targets (issue 31): parse + objects table ≤ 60 s and ≤ 2 GB; finders ≤ 60 s at 1 M boxes. "
             f"Object profile {pr['profile_bytes'] / 1024:,.0f} KiB.\n"]
    with (HERE.parent / "BENCHMARKS.md").open("a") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
