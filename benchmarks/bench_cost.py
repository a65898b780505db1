"""Where an ingest + profile second goes: the per-image cost of each piece, on the 5,000-JPEG set.

    python benchmarks/bench_cost.py              # appends the table to BENCHMARKS.md
    python benchmarks/bench_cost.py --no-write --size 1000

One process, one core, warm page cache (every file is read once before timing). Each piece
is timed on its own, in the order ingest runs it, with time.perf_counter around the call:
- read + sha256 (the id), Image.open (header), the pixel decode (libjpeg-turbo reduced decode
  to the working size, or Pillow's draft + load), EXIF, orientation + shrink;
- the ImageView intermediates that features share (luma, its histogram and CDF, the 32x32
  thumbnail, HSV, hue histogram, chroma), each computed once per image;
- every registered feature on a view whose intermediates are already computed (its own work);
- the row's trip to the writer (pickle + unpickle of the row dict, what multiprocessing does),
  Arrow conversion + Parquet writing of the manifest, and the profile of the manifest
  (sketch updates), per image.
The sum is compared with a plain `process_file` loop over the same files (the real
per-image path) and with the pipeline's own 2-worker ingest + profile throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import pickle
import platform
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

VIEW_PARTS = ("luma", "luma_hist", "luma_cdf", "thumb32", "hsv", "hue_hist", "chroma")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=5000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    import cv2
    import pyarrow as pa
    import pyarrow.parquet as pq
    from bench_profile import image_set
    from PIL import Image

    from pixelscope.config import Params
    from pixelscope.features import ImageView, registered
    from pixelscope.ingest.step import _init_worker, manifest_columns, process_file, settings_for
    from pixelscope.io.decode import _jpeg_reduced, orient, shrink, to_rgb8
    from pixelscope.io.discover import discover
    from pixelscope.io.exif import read_exif
    from pixelscope.io.manifest import manifest_schema
    from pixelscope.profile import Profile

    root = image_set(args.size)
    params = Params()
    s = settings_for(params.ingest, params.features)
    _init_worker(s)
    entries = discover(root, params.ingest)[0][: args.size]
    for e in entries:  # warm the page cache
        Path(e.path).read_bytes()
    t = defaultdict(float)

    def timed(name, fn, *a):
        t0 = time.perf_counter()
        out = fn(*a)
        t[name] += time.perf_counter() - t0
        return out

    rows = []
    for e in entries:
        data = timed("read file", lambda p: Path(p).read_bytes(), e.path)
        timed("sha256 (id)", lambda d: hashlib.sha256(d).hexdigest(), data)
        im = timed("open (header)", lambda d: Image.open(io.BytesIO(d)), data)
        w0, h0 = im.size
        bgr = timed("decode pixels (reduced JPEG)", _jpeg_reduced, data, max(w0, h0), s.working_size) \
            if im.format == "JPEG" and im.mode in ("RGB", "L") else None
        rgb = bgr
        if bgr is None:
            def pil(im=im):
                im.draft(None, (s.working_size, s.working_size))
                im.load()
                return to_rgb8(im)
            rgb = timed("decode pixels (Pillow)", pil)
        exif, _ = timed("EXIF", read_exif, im)
        def orient_shrink(r, o, bgr=bgr is not None):
            small = shrink(orient(r, o), s.working_size)
            return cv2.cvtColor(small, cv2.COLOR_BGR2RGB) if bgr else small
        rgb = timed("orient + shrink (+ BGR to RGB)", orient_shrink, rgb, exif.get("exif_orientation"))
        view = ImageView(rgb, {"width": w0, "height": h0, "bytes": len(data), "format": im.format}, s.dark_level,
                         s.bright_level)
        for part in VIEW_PARTS:
            timed(f"view: {part}", getattr, view, part)
        for f in registered():
            timed(f"feature: {f.name}", f.fn, view)
        im.close()
        row = process_file(e, s)  # the real row, for the writer and profile timings below
        timed("row to writer (pickle + unpickle)", lambda r: pickle.loads(pickle.dumps(r, protocol=5)), row)
        rows.append(row)

    schema = manifest_schema(manifest_columns(list(params.features.plugins)))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "manifest.parquet"

        def write():
            table = pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)
            pq.write_table(table, out, row_group_size=params.ingest.chunk_rows)
        timed("manifest: Arrow + Parquet", write)
        timed("profile: sketches of the manifest", Profile.from_manifest, out)

    t0 = time.perf_counter()
    for e in entries:
        process_file(e, s)
    whole = time.perf_counter() - t0

    import resource

    from pixelscope.config import parse_params
    from pixelscope.ingest.step import ingest_step
    from pixelscope.profile.step import profile_step

    def cpu() -> float:
        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    with tempfile.TemporaryDirectory() as tmp:  # the pipeline's own steps, 2 workers, same files
        two = parse_params({"paths": {"raw": str(root), "manifest": "m.parquet", "profile": "p.json",
                                      "embeddings": "emb", "metrics": "metrics"}, "ingest": {"workers": 2}})
        c0, w0 = cpu(), time.perf_counter()
        ingest_step(two, tmp)
        ingest_wall, ingest_cpu = time.perf_counter() - w0, cpu() - c0
        c0, w0 = cpu(), time.perf_counter()
        profile_step(two, tmp)
        profile_wall, profile_cpu = time.perf_counter() - w0, cpu() - c0
    steps = {"ingest_wall": ingest_wall, "ingest_cpu": ingest_cpu, "profile_wall": profile_wall,
             "profile_cpu": profile_cpu}

    n = len(entries)
    total = sum(t.values())
    ms = {k: 1000 * v / n for k, v in t.items()}
    groups = {"decode": [k for k in ms if k in ("read file", "sha256 (id)", "open (header)", "EXIF")
                         or k.startswith("orient")
                         or k.startswith("decode")],
              "intermediates": [k for k in ms if k.startswith("view:")],
              "features": [k for k in ms if k.startswith("feature:")],
              "writing and profile": [k for k in ms if k.startswith(("row to", "manifest", "profile"))]}
    for name, keys in groups.items():
        print(f"{name:22s} {sum(ms[k] for k in keys):7.3f} ms/image")
    for k, v in sorted(ms.items(), key=lambda kv: -kv[1]):
        print(f"  {k:40s} {v:7.3f} ms  {100 * v / (1000 * total / n):5.1f} %")
    print(f"sum {1000 * total / n:.2f} ms/image; process_file loop alone {1000 * whole / n:.2f} ms/image "
          f"({n / whole:.0f} images/s on one core)")
    m = len(list(root.rglob("*.jpg")))
    pipeline = (f"the ingest step with 2 workers: {steps['ingest_wall']:.1f} s wall ({m / steps['ingest_wall']:.0f} "
                f"images/s), {1000 * steps['ingest_cpu'] / m:.2f} ms CPU/image (all processes); the profile step: "
                f"{steps['profile_wall']:.1f} s wall, {1000 * steps['profile_cpu'] / m:.2f} ms CPU/image; together "
                f"{m / (steps['ingest_wall'] + steps['profile_wall']):.0f} images/s")
    print(pipeline)
    if args.no_write:
        return
    lines = [f"\n### Per-image cost breakdown — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
             f"{os.cpu_count()} cores (one used)\n",
             f"`python benchmarks/bench_cost.py`: the {n:,}-JPEG benchmark set (bench_profile's, warm cache), every "
             "piece of ingest + profile timed on its own, in one process. The features run on a view whose shared "
             "intermediates are already computed, so each line is that feature's own work.\n",
             "| piece | ms / image | share |", "|---|---:|---:|"]
    for name, keys in groups.items():
        lines.append(f"| **{name}** | **{sum(ms[k] for k in keys):.3f}** | "
                     f"**{100 * sum(ms[k] for k in keys) / (1000 * total / n):.1f} %** |")
        for k in sorted(keys, key=lambda k: -ms[k]):
            lines.append(f"| {k} | {ms[k]:.3f} | {100 * ms[k] / (1000 * total / n):.1f} % |")
    lines.append(f"| **sum** | **{1000 * total / n:.2f}** | 100 % |")
    lines.append(f"\nThe real per-image path (`process_file` over the same files, one core): "
                 f"{1000 * whole / n:.2f} ms/image, {n / whole:.0f} images/s. Against it, {pipeline} "
                 f"({m:,} files).\n")
    with open(HERE.parent / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
