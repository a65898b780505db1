"""The dashboard at scale: a bundle of 100,000 images, every page timed in a real browser.

    python benchmarks/bench_dashboard.py                 # 100k, appends to BENCHMARKS.md
    python benchmarks/bench_dashboard.py --size 10000    # a smaller bundle

The bundle is made by the real steps on a synthetic project (bench_issues_scale's manifest
of clustered 1280-d embeddings, hashes, features, labels, splits, copies and errors): the
projection (PCA, as the embed step writes it), profile, issues, validate (drift against a
reference whose brightness is shifted) and publish. Thumbnails are real 160-px WebP files,
made once from 64 synthetic pictures and stored per id in the publish layout (so publish
has none to make, as on a rerun).

Then `streamlit run` (as `pixelscope dashboard` starts it) is driven by Playwright in
Debian's Chromium: each page is opened in a fresh server (first load) and again (warm);
"ready" is the server's script run finished and the browser's images and charts drawn. The embedding
map's box selection of every point and a hover sweep (frame gaps in the browser) show
whether it stays interactive; the Streamlit process tree's peak RSS is sampled all along.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from bench_issues_scale import build  # noqa: E402  (the synthetic manifest + embedding store)

WORK = HERE / ".work" / "dashboard"
CHROMIUM = "/usr/bin/chromium"
PAGES = ["overview", "features", "compare", "drift", "embedding_map", "clusters", "images", "issues", "curated", "versions",
         "evaluation"]


def params(root: Path):
    from pixelscope.config import parse_params

    return parse_params({
        "paths": {"raw": "raw", "manifest": "manifest.parquet", "profile": "profile.json", "embeddings": "embeddings",
                  "issues": "issues.parquet", "issue_pairs": "pairs.parquet", "issues_summary": "issues.json",
                  "neighbours": "neighbours.parquet", "metrics": "metrics", "publish": "publish"},
        "validate": {"suites": str(REPO / "expectations"), "results": "validate", "reference": "reference.json",
                     "on_failure": "warn"},
        "ingest": {"workers": 1},
        "profile": {"predictions": "predictions.parquet"},
    })


def fake_thumbnails(folder: Path, ids: list[str]) -> None:
    """Real WebP thumbnails (64 synthetic pictures, 160 px) stored per id in the publish layout."""
    from PIL import Image

    from pixelscope.publish.thumbnails import PART_ROWS, SCHEMA, _write

    rng = np.random.default_rng(0)
    pics = []
    for k in range(64):
        h, w = (120, 160) if k % 3 else (160, 160)
        yy, xx = np.mgrid[0:h, 0:w]
        rgb = np.stack([(xx * (k + 1)) % 256, (yy * (64 - k)) % 256, rng.integers(0, 256, (h, w))], -1)
        buf = io.BytesIO()
        Image.fromarray(rgb.astype(np.uint8)).save(buf, format="WEBP", quality=70, method=4)
        pics.append((buf.getvalue(), w, h))
    folder.mkdir(parents=True, exist_ok=True)
    for s, start in enumerate(range(0, len(ids), PART_ROWS)):
        part = ids[start:start + PART_ROWS]
        pick = [pics[hash(i) % len(pics)] for i in part]
        t = pa.table({"id": part, "webp": [p[0] for p in pick], "width": [p[1] for p in pick],
                      "height": [p[2] for p in pick]}, schema=SCHEMA)
        _write(folder / f"part-{s:05d}.parquet", t)


def make_bundle(n: int) -> Path:
    """The real steps on the synthetic project; returns the publish folder (cached under .work)."""
    from pixelscope.embed.projection import clusters, min_cluster_size, project
    from pixelscope.io.store import current_store
    from pixelscope.issues.step import issues_step
    from pixelscope.profile import Profile
    from pixelscope.profile.step import profile_step
    from pixelscope.publish.step import publish_step
    from pixelscope.validate.step import validate_step

    root = build(n, WORK / f"n{n}")
    done = root / ".bundle-complete-2"  # 2: with clusters of the map and a model's predictions
    if done.exists():
        return root / "publish"
    p = params(root)
    t0 = time.perf_counter()
    manifest = pq.read_table(root / "manifest.parquet", columns=["id", "path", "label"]).to_pandas()
    store = current_store(root / "embeddings")
    have = store.ids()
    first = manifest[manifest["id"].isin(have)].drop_duplicates("id")
    xy, used = project(store.get(first["id"].tolist()), "pca")
    found = clusters(xy, min_cluster_size(len(xy)))  # on the PCA map: UMAP at 100k is bench_map's figure
    t = pa.table({"id": first["id"].tolist(), "path": [str(root / "raw" / q) for q in first["path"]],
                  "label": first["label"].tolist(), "x": xy[:, 0], "y": xy[:, 1], "cluster": pa.array(found, pa.int32())})
    pq.write_table(t.replace_schema_metadata({"pixelscope.projection": used}), store.folder / "projection.parquet")
    print(f"projection ({used}) and {found.max() + 1} clusters {time.perf_counter() - t0:.0f} s", flush=True)
    rng = np.random.default_rng(0)  # a model right 80 % of the time, less sure when wrong
    labels = sorted(first["label"].dropna().unique())
    wrong = rng.random(len(first)) < 0.2
    pred = np.where(wrong, rng.choice(labels, len(first)), first["label"].fillna(labels[0]))
    pq.write_table(pa.table({"id": first["id"].tolist(), "prediction": pred.tolist(),
                             "confidence": np.where(wrong, rng.uniform(0.3, 0.7, len(first)), rng.uniform(0.6, 1, len(first)))}),
                   root / "predictions.parquet")
    ref = pq.read_table(root / "manifest.parquet")
    shifted = pa.compute.add(ref.column("brightness_mean"), 0.04)
    ref = ref.set_column(ref.schema.get_field_index("brightness_mean"), "brightness_mean", shifted)
    pq.write_table(ref, root / "reference-manifest.parquet")
    Profile.from_manifest(root / "reference-manifest.parquet").save(root / "reference.json")
    for step in (profile_step, issues_step, validate_step):
        t0 = time.perf_counter()
        r = step(p, root)
        print(f"{step.__name__} {time.perf_counter() - t0:.0f} s: {r.summary}", flush=True)
    ok = pq.read_table(root / "manifest.parquet", columns=["id", "status"]).to_pandas()
    fake_thumbnails(root / "publish" / "thumbnails", sorted(set(ok.loc[ok["status"] == "ok", "id"])))
    r = publish_step(p, root)
    print(r.summary, flush=True)
    done.touch()
    return root / "publish"


class PeakRSS:
    """Samples the RSS of a process and its children every 50 ms."""

    def __init__(self, pid: int):
        import psutil

        self.proc, self.peak, self._stop = psutil.Process(pid), 0, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            try:
                rss = sum(q.memory_info().rss for q in [self.proc, *self.proc.children(recursive=True)])
                self.peak = max(self.peak, rss)
            except psutil.Error:
                pass
            time.sleep(0.05)

    def now(self) -> int:
        return sum(q.memory_info().rss for q in [self.proc, *self.proc.children(recursive=True)])

    def stop(self) -> int:
        self._stop.set()
        self._t.join()
        return self.peak


def serve(bundle: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """`pixelscope dashboard`'s Streamlit over bundle (extra environment: env) on a free port."""
    from pixelscope.cli.dashboard import streamlit_command

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(streamlit_command(port), env={**os.environ, "PIXELSCOPE_BUNDLE": str(bundle), **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=REPO)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return proc, url
        except OSError:
            time.sleep(0.25)
    proc.kill()
    raise SystemExit("streamlit did not start")


class ScriptRuns:
    """Counts the script runs the server reports finished (Streamlit's own `script_finished`
    message on the page's websocket), so "ready" never fires between two elements."""

    def __init__(self, page):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

        self.done, self._msg = 0, ForwardMsg
        page.on("websocket", lambda ws: ws.on("framereceived", self._frame))

    def _frame(self, payload) -> None:
        if isinstance(payload, str):
            return
        m = self._msg()
        try:
            m.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - not a ForwardMsg: not ours to count
            return
        if m.WhichOneof("type") == "script_finished" and m.script_finished == self._msg.FINISHED_SUCCESSFULLY:
            self.done += 1


DRAWN = """() => !document.querySelector('[data-testid="stStatusWidget"]')
  && document.querySelector('[data-testid="stMain"] h1')
  && [...document.images].every(i => i.complete)
  && [...document.querySelectorAll('[data-testid="stPlotlyChart"]')].every(c => c.querySelector('.main-svg'))"""


def ready(page, runs: ScriptRuns, before: int) -> None:
    """The script run finished on the server, and the browser drew it: no running indicator, the
    title, every image loaded, every Plotly chart drawn."""
    deadline = time.perf_counter() + 120
    while runs.done <= before:
        if time.perf_counter() > deadline:
            raise SystemExit(f"no finished script run within 120 s at {page.url}")
        page.wait_for_timeout(10)
    page.wait_for_function(DRAWN, timeout=120_000, polling="raf")


def timed(page, runs: ScriptRuns, url: str) -> float:
    before = runs.done
    t0 = time.perf_counter()
    page.goto(url)
    ready(page, runs, before)
    return time.perf_counter() - t0


FRAMES_ON = """() => {
  window.__gaps = []; window.__on = true; let last = performance.now();
  const tick = (t) => { window.__gaps.push(t - last); last = t; if (window.__on) requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
}"""
FRAMES_OFF = "() => { window.__on = false; return window.__gaps; }"


def drive(bundle: Path, n_points: int) -> dict:
    from playwright.sync_api import sync_playwright

    proc, url = serve(bundle)
    rss = PeakRSS(proc.pid)
    hosts: set[str] = set()
    out: dict = {"first": {}, "warm": {}}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            runs = ScriptRuns(page)
            page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
            for round_ in ("first", "warm"):
                for name in PAGES:
                    out[round_][name] = timed(page, runs, f"{url}/{'' if name == 'overview' else name}")
                    errors = page.locator("[data-testid='stException']").count()
                    if errors:
                        raise SystemExit(f"{name}: {errors} exception(s) on the page")
                    print(f"{round_:5s} {name:14s} {out[round_][name]:.2f} s", flush=True)
            out["rss_after_pages_mb"] = rss.now() / 2**20
            out["images_filter"] = timed(page, runs, f"{url}/images?where=label%20%3D%20'class3'%20AND%20width%20%3E%20800")
            text = page.inner_text("body")
            out["images_filter_text"] = next((ln for ln in text.splitlines() if "images" in ln and "match" in ln), "")
            timed(page, runs, f"{url}/embedding_map")
            page.wait_for_selector(".nsewdrag")
            plot = page.locator(".nsewdrag").first.bounding_box()
            page.mouse.move(plot["x"] + plot["width"] / 2, plot["y"] + plot["height"] / 2)
            page.evaluate(FRAMES_ON)  # frame gaps while the mouse sweeps over every point
            for k in range(60):
                page.mouse.move(plot["x"] + plot["width"] * (0.1 + 0.8 * k / 59),
                                plot["y"] + plot["height"] * (0.2 + 0.6 * ((k * 7) % 59) / 59))
                page.wait_for_timeout(50)
            gaps = page.evaluate(FRAMES_OFF)
            gaps = sorted(gaps[1:])
            out["hover_frames"] = len(gaps)
            out["hover_frame_p95_ms"] = gaps[int(0.95 * (len(gaps) - 1))] if gaps else None
            out["hover_frame_max_ms"] = gaps[-1] if gaps else None
            before = runs.done
            t0 = time.perf_counter()
            page.mouse.move(plot["x"] + 2, plot["y"] + 2)
            page.mouse.down()
            page.mouse.move(plot["x"] + plot["width"] - 2, plot["y"] + plot["height"] - 2, steps=12)
            page.mouse.up()
            ready(page, runs, before)
            page.wait_for_selector("[data-testid='stImage']", timeout=120_000)
            out["box_select_all"] = time.perf_counter() - t0
            line = next((ln for ln in page.inner_text("body").splitlines() if ln.endswith(" selected")), "")
            out["box_select_text"] = line
            if line != f"{n_points:,} selected":
                raise SystemExit(f"the box over the whole map selected {line!r}, not {n_points:,}")
            browser.close()
    finally:
        out["peak_rss_mb"] = rss.stop() / 2**20
        proc.terminate()
        proc.wait(timeout=30)
    out["hosts"] = sorted(hosts)
    return out


def write(n: int, r: dict, bundle: Path) -> None:
    size = sum(f.stat().st_size for f in bundle.rglob("*") if f.is_file()) / 2**20
    first, warm = r["first"], r["warm"]
    lines = [f"\n### Dashboard at {n:,} images — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
             f"{os.cpu_count()} cores\n",
             "`python benchmarks/bench_dashboard.py --size N`: a bundle made by the real projection (PCA), profile, "
             "issues, validate and publish steps on bench_issues_scale's synthetic project (thumbnails: real 160-px "
             f"WebP, {size:,.0f} MiB bundle); `streamlit run` as `pixelscope dashboard` starts it, driven by "
             "Playwright in Debian's Chromium. Ready = the server reported the script run finished (its "
             "`script_finished` websocket message) and the browser drew it (no running indicator, every image "
             "loaded, every Plotly chart drawn), timed from `page.goto`. First load = first visit of each page "
             "after the server started (its imports and caches cold); warm = the second visit. "
             "Target: ≤ 5 s first, ≤ 2 s warm, peak RSS ≤ 1 GB.\n",
             "| page | first load (s) | warm (s) |", "|---|---:|---:|"]
    for name in PAGES:
        lines.append(f"| {name} | {first[name]:.2f} | {warm[name]:.2f} |")
    lines += ["",
              f"- Worst page: first {max(first.values()):.2f} s ({max(first, key=first.get)}), warm "
              f"{max(warm.values()):.2f} s ({max(warm, key=warm.get)}); median warm "
              f"{statistics.median(warm.values()):.2f} s.",
              f"- Images page with a filter in the URL (`label = 'class3' AND width > 800`): {r['images_filter']:.2f} s "
              f"({r['images_filter_text']}).",
              f"- Embedding map, a box over every point: {r['box_select_text']} and the first grid page drawn in "
              f"{r['box_select_all']:.2f} s; a mouse sweep over the WebGL scatter (60 moves, 50 ms apart): "
              f"{r['hover_frames']} frames, gap p95 {r['hover_frame_p95_ms']:.0f} ms, max {r['hover_frame_max_ms']:.0f} ms.",
              f"- Streamlit process peak RSS {r['peak_rss_mb']:,.0f} MiB (after opening every page twice: "
              f"{r['rss_after_pages_mb']:,.0f} MiB). Requests went to: {', '.join(r['hosts'])}.\n"]
    with open(REPO / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("PIXELSCOPE_QUIET", "1")
    bundle = make_bundle(args.size)
    n_points = pq.read_metadata(bundle / "projection.parquet").num_rows
    r = drive(bundle, n_points)
    print(json.dumps(r, default=str), flush=True)
    if not args.no_write:
        write(args.size, r, bundle)


if __name__ == "__main__":
    main()
