"""ImageLogger (pixelscope.image_logger) in a running process: call latency, worker throughput
beside ingest's per-image cost, memory over a million images, and whylogs' image logging on the
same arrays.

    python benchmarks/bench_image_logger.py                  # everything, appends to BENCHMARKS.md
    python benchmarks/bench_image_logger.py --million 200000 # a shorter memory run

Every figure comes from its own process (peak RSS is the process' own):
- latency: 64 x 64 arrays logged at a paced 1,000 calls/s for 10 s; the duration of each log()
  call (it only enqueues), p50 / p99 / max; images counted = calls.
- throughput: 2,000 arrays of 256 x 256 (crops of the corpus' photos, the same .npy file for both
  tools), logged until the last window is written: pixelscope's ImageLogger (one thread, and
  workers=2 processes) vs whylogs'
  `log_image` (its documented image API, one view per image merged as its docs show), images/s
  and peak RSS.
- ingest parity: the same 500 photos as JPEG files: the ingest step with one worker vs the logger
  given each file's bytes (the same code path), images/s.
- memory: a million 32 x 32 arrays through one logger (1-hour windows, a fake clock advancing
  10 s per 1,000 images so windows roll), RSS every 100,000 images.
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
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
WORK = HERE / ".work" / "logger"
CORPUS = HERE.parent.parent / "shared" / "corpus"


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def arrays(n: int = 500, side: int = 256) -> Path:
    """Crops of the corpus' photos as one uint8 .npy (n x side x side x 3), and the photos as JPEGs."""
    from PIL import Image

    out = WORK / f"arrays-{n}-{side}.npy"
    jpegs = WORK / "jpegs"
    if out.exists():
        return out
    files = sorted((CORPUS / "labeled" / "hymenoptera").rglob("*.jpg")) + \
        sorted((CORPUS / "exif-samples" / "cameras").glob("*.jpg"))
    jpegs.mkdir(parents=True, exist_ok=True)
    a = np.empty((n, side, side, 3), np.uint8)
    for k in range(n):
        src = files[k % len(files)]
        im = Image.open(src).convert("RGB")
        w, h = im.size
        s = min(w, h)
        x, y = (k * 37) % max(1, w - s + 1), (k * 53) % max(1, h - s + 1)
        crop = im.crop((x, y, x + s, y + s)).resize((side, side), Image.BILINEAR)
        a[k] = np.asarray(crop)
        crop.save(jpegs / f"{k:04d}.jpg", quality=90)
    np.save(out, a)
    return out


def child(mode: str, arg: str, n: int) -> dict:
    """One measurement, in this (fresh) process."""
    from pixelscope import ImageLogger

    out = WORK / f"out-{mode}"
    if out.exists():  # a window file left by an earlier run would be merged into (one profile per window)
        import shutil

        shutil.rmtree(out)
    if mode == "latency":
        img = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        times = np.empty(n, np.int64)
        with ImageLogger(window="1h", out=out, project=WORK, history=False) as log:
            t_next = time.perf_counter()
            for k in range(n):
                t0 = time.perf_counter_ns()
                log.log(img)
                times[k] = time.perf_counter_ns() - t0
                t_next += 0.001
                pause = t_next - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
        w = log.windows[-1]
        us = times / 1000
        return {"calls": n, "p50_us": round(float(np.percentile(us, 50)), 1),
                "p99_us": round(float(np.percentile(us, 99)), 1), "max_us": round(float(us.max()), 1),
                "counted": sum(x.images for x in log.windows), "profiled": w.profiled}
    if mode == "throughput":  # arg: <npy>::<worker processes>
        npy, workers = arg.split("::")
        a = np.load(npy)
        t0 = time.perf_counter()
        with ImageLogger(window="1d", out=out, project=WORK, history=False, workers=int(workers)) as log:
            for k in range(n):
                log.log(a[k % len(a)])
        seconds = time.perf_counter() - t0
        return {"images": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1),
                "peak_rss_mb": round(peak_mb(), 1), "profiled": sum(x.profiled for x in log.windows)}
    if mode == "ingest":
        from pixelscope.config import parse_params
        from pixelscope.ingest.step import ingest_step

        p = parse_params({"ingest": {"workers": 1}, "paths": {"raw": arg, "manifest": str(WORK / "m.parquet"),
                                                              "metrics": str(WORK / "metrics")}})
        t0 = time.perf_counter()
        r = ingest_step(p, ".")
        seconds = time.perf_counter() - t0
        return {"images": r.counts["files_seen"], "seconds": round(seconds, 2),
                "images_per_s": round(r.counts["files_seen"] / seconds, 1)}
    if mode == "logger-bytes":
        blobs = [f.read_bytes() for f in sorted(Path(arg).glob("*.jpg"))]
        t0 = time.perf_counter()
        with ImageLogger(window="1d", out=out, project=WORK, history=False) as log:
            for b in blobs:
                log.log(b)
        seconds = time.perf_counter() - t0
        return {"images": len(blobs), "seconds": round(seconds, 2), "images_per_s": round(len(blobs) / seconds, 1)}
    if mode == "memory":
        rng = np.random.default_rng(0)
        pool = rng.integers(0, 255, (1000, 32, 32, 3), dtype=np.uint8)
        clock = [1_764_000_000.0]
        rss = []
        t0 = time.perf_counter()
        with ImageLogger(window="1h", out=out, project=WORK, history=False, clock=lambda: clock[0]) as log:
            for k in range(n):
                log.log(pool[k % 1000])
                if k % 1000 == 999:
                    clock[0] += 10.0
                if k % 100_000 == 99_999:
                    rss.append(round(rss_mb(), 1))
        seconds = time.perf_counter() - t0
        return {"images": n, "seconds": round(seconds, 1), "images_per_s": round(n / seconds, 1), "rss_mb": rss,
                "windows": len(log.windows), "counted": sum(x.images for x in log.windows)}
    raise SystemExit(f"unknown mode {mode}")


def run_child(mode: str, arg: str, n: int) -> dict:
    r = subprocess.run([sys.executable, __file__, "--child", mode, arg, str(n)], capture_output=True, text=True,
                       timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_whylogs(npy: Path, n: int) -> dict:
    from bench_profile import PEERS, peer_python

    r = subprocess.run([str(peer_python("whylogs", packages=PEERS["whylogs"])), str(HERE / "peers" / "logger_whylogs.py"),
                        str(npy), str(n)], capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        raise RuntimeError(f"whylogs failed:\n{r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    ap.add_argument("--million", type=int, default=1_000_000)
    ap.add_argument("--throughput", type=int, default=2000)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], int(args.child[2]))))
        return
    npy = arrays()
    row = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{platform.node()} {platform.machine()}"}
    row["latency"] = run_child("latency", "-", 10_000)
    print("latency", row["latency"], flush=True)
    row["throughput"] = {"pixelscope": run_child("throughput", f"{npy}::1", args.throughput),
                         "pixelscope, 2 worker processes": run_child("throughput", f"{npy}::2", args.throughput),
                         "whylogs": run_whylogs(npy, args.throughput)}
    print("throughput", row["throughput"], flush=True)
    row["ingest_parity"] = {"ingest (1 worker)": run_child("ingest", str(WORK / "jpegs"), 0),
                            "ImageLogger (file bytes)": run_child("logger-bytes", str(WORK / "jpegs"), 0)}
    print("ingest parity", row["ingest_parity"], flush=True)
    row["memory"] = run_child("memory", "-", args.million)
    print("memory", row["memory"], flush=True)
    with (HERE / "results" / "image_logger.jsonl").open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    write_table(row)


def write_table(row: dict) -> None:
    lat, tp, ip, mem = row["latency"], row["throughput"], row["ingest_parity"], row["memory"]
    ratio = tp["pixelscope"]["images_per_s"] / tp["whylogs"]["images_per_s"]
    ratio2 = tp["pixelscope, 2 worker processes"]["images_per_s"] / tp["whylogs"]["images_per_s"]
    parity = ip["ImageLogger (file bytes)"]["images_per_s"] / ip["ingest (1 worker)"]["images_per_s"]
    lines = [f"\n### ImageLogger in a running process — {row['date'][:10]}, {row['machine']}\n",
             "`python benchmarks/bench_image_logger.py` (each figure from its own process):\n",
             f"- log() call at a paced 1,000 calls/s (64 x 64 arrays, {lat['calls']:,} calls): p50 {lat['p50_us']} µs, "
             f"**p99 {lat['p99_us']} µs**, max {lat['max_us']} µs; images counted {lat['counted']:,} = calls.",
             f"- 256 x 256 arrays, {tp['pixelscope']['images']:,} images: pixelscope ImageLogger "
             f"**{tp['pixelscope']['images_per_s']} images/s** (peak RSS {tp['pixelscope']['peak_rss_mb']} MB) vs whylogs "
             f"`log_image` {tp['whylogs']['images_per_s']} images/s (peak RSS {tp['whylogs']['peak_rss_mb']} MB): "
             f"**{ratio:.1f}×** with the default one thread; with `workers=2` (two spawned processes) "
             f"{tp['pixelscope, 2 worker processes']['images_per_s']} images/s, **{ratio2:.1f}×** (peak RSS of the "
             f"logging process {tp['pixelscope, 2 worker processes']['peak_rss_mb']} MB, workers not counted).",
             f"- The same 500 photos as JPEG files: ingest with one worker {ip['ingest (1 worker)']['images_per_s']} "
             f"images/s, the logger given their bytes {ip['ImageLogger (file bytes)']['images_per_s']} images/s "
             f"(**{parity:.2f}×** ingest's rate).",
             f"- {mem['images']:,} images of 32 x 32 through one logger ({mem['windows']} hourly windows): "
             f"{mem['images_per_s']:,} images/s; RSS every 100,000 images (MB): {mem['rss_mb']}.\n"]
    with open(HERE.parent / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    main()
