"""What the objects stage's crop features cost, next to ingest on the same real images.

    python benchmarks/bench_crops.py                 # ../shared/corpus, 10 random boxes per image
    python benchmarks/bench_crops.py --copies 4      # the corpus 4 times over (other bytes: new ids)

Ingest (2 workers) reads every file of ../shared/corpus; a COCO file gives each readable image 10
random boxes; then the objects stage runs with `ingest.annotations.crop_features` off and on (the
same 2 workers). The difference is what crop features cost: one reduced decode per annotated image
with ingest's decoder, and three numbers per box.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))
WORK = HERE / ".work" / "crops"
CORPUS = REPO.parent / "shared" / "corpus"


def main() -> None:
    from pixelscope.annotations.step import objects_step
    from pixelscope.config import parse_params
    from pixelscope.ingest.step import ingest_step

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--boxes", type=int, default=10)
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    raw = WORK / "data" / "raw"
    for k in range(a.copies):
        shutil.copytree(CORPUS, raw / f"copy{k}", ignore=shutil.ignore_patterns("odd"))
        if k:  # other bytes, so other ids: append a byte (JPEG and PNG decoders ignore trailing data)
            for f in (raw / f"copy{k}").rglob("*"):
                if f.is_file():
                    with f.open("ab") as fh:
                        fh.write(bytes([k]))
    base = {"ingest": {"workers": 2, "labels": "none"}, "paths": {"embeddings": "none"}}
    p = parse_params(base)
    t0 = time.perf_counter()
    ingest_step(p, WORK)
    ingest_s = time.perf_counter() - t0
    m = pq.read_table(WORK / p.paths.manifest, columns=["path", "width", "height", "status"]).to_pandas()
    m = m[m["status"] == "ok"]
    mp = m["width"] * m["height"] / 1e6
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k, (path, w, h) in enumerate(zip(m["path"], m["width"], m["height"])):
        images.append({"id": k, "file_name": path, "width": int(w), "height": int(h)})
        for _ in range(a.boxes):
            bw, bh = rng.uniform(0.05, 0.5) * w, rng.uniform(0.05, 0.5) * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": 1, "bbox": [x, y, bw, bh], "iscrowd": 0})
    (WORK / "coco.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                "categories": [{"id": 1, "name": "thing"}]}))
    seconds = {}
    for crops in (False, True):
        q = parse_params({**base, "ingest": {**base["ingest"], "annotations": {"path": "coco.json", "crop_features": crops}}})
        t0 = time.perf_counter()
        r = objects_step(q, WORK)
        seconds[crops] = time.perf_counter() - t0
        assert r.counts["kept"] == len(anns), r.summary
    o = pq.read_table(WORK / p.paths.objects, columns=["crop_sharpness", "crop_brightness"]).to_pandas()
    cost = seconds[True] - seconds[False]
    row = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{platform.node()} {platform.machine()}",
           "cores": os.cpu_count(), "images": len(m), "max_mp": round(float(mp.max()), 1),
           "median_mp": round(float(mp.median()), 3), "photos_over_1mp": int((mp > 1).sum()),
           "boxes": len(anns), "ingest_seconds": round(ingest_s, 2),
           "objects_seconds_without": round(seconds[False], 2), "objects_seconds_with": round(seconds[True], 2),
           "crop_seconds": round(cost, 2), "ms_per_image": round(1000 * cost / len(m), 2),
           "share_of_ingest": round(cost / ingest_s, 3), "with_sharpness": int(o["crop_sharpness"].notna().sum()),
           "with_brightness": int(o["crop_brightness"].notna().sum())}
    print(json.dumps(row))
    (HERE / "results").mkdir(exist_ok=True)
    with (HERE / "results" / "crops.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    if a.no_write:
        return
    lines = [f"\n### Crop features — {row['date'][:10]}, {platform.machine()}, {os.cpu_count()} cores\n",
             f"`python benchmarks/bench_crops.py --copies {a.copies}`: ../shared/corpus ({len(m):,} readable images, "
             f"many cameras and formats; median {row['median_mp']} MP, {row['photos_over_1mp']} over 1 MP, the largest "
             f"{row['max_mp']} MP) with {a.boxes} random boxes each ({len(anns):,} boxes); 2 workers.\n",
             "| what | seconds |", "|---|---:|",
             f"| ingest (decode, 23 features, EXIF) | {row['ingest_seconds']} |",
             f"| objects stage, crop_features: false | {row['objects_seconds_without']} |",
             f"| objects stage, crop_features: true | {row['objects_seconds_with']} |",
             f"| crop features alone | {row['crop_seconds']} ({row['ms_per_image']} ms per image, "
             f"{row['share_of_ingest']:.0%} of ingest) |",
             "", f"{row['with_brightness']:,} boxes got brightness and contrast, {row['with_sharpness']:,} a sharpness "
             f"(the rest are under 3 working pixels on a side).\n"]
    with (REPO / "BENCHMARKS.md").open("a") as fh:
        fh.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
