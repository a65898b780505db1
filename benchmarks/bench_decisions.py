"""Review decisions at scale, on the 100,000-image synthetic bundle of bench_dashboard.

    python benchmarks/bench_decisions.py                 # 100k, appends to BENCHMARKS.md
    python benchmarks/bench_decisions.py --size 10000

Three figures (targets from the "act where you look" issue):
1. recording one decision over 10,000 selected images (what the dashboard's "select all
   matching" + Record does: review.record, one JSON line per image, appended under the lock and
   fsynced) — target ≤ 1 s; and picking those 10,000 with a filter over the 100k manifest;
2. the Decisions page with 50,000 entries in the file, warm, in Chromium (as bench_dashboard
   times pages) — target ≤ 2 s;
3. Apply = the curate step's time plus ≤ 10 %: `python -m pixelscope.curate.apply` (a process
   of its own: imports, ledger snapshot, curate, publish, diff) against the same curate and
   publish steps called in one warm process (exports off: the synthetic project has no image files).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(REPO))
from bench_dashboard import CHROMIUM, ScriptRuns, make_bundle, serve, timed  # noqa: E402

PARAMS_YAML = """paths: {{raw: raw, manifest: manifest.parquet, profile: profile.json, embeddings: embeddings,
  issues: issues.parquet, issue_pairs: pairs.parquet, issues_summary: issues.json, neighbours: neighbours.parquet,
  metrics: metrics, publish: publish}}
validate: {{suites: {suites}, results: validate, reference: reference.json, on_failure: warn}}
curate: {{formats: [], decisions: decisions.jsonl}}
"""


def main() -> None:
    from pixelscope.config import load_params
    from pixelscope.curate import decisions, review
    from pixelscope.curate.step import curate_step
    from pixelscope.publish.step import publish_step

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=100_000)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    bundle = make_bundle(args.size)
    root = bundle.parent
    (root / "params.yaml").write_text(PARAMS_YAML.format(suites=REPO / "expectations"))
    p = load_params(root / "params.yaml", {})
    file = root / "decisions.jsonl"
    out: dict = {}

    # 1. one decision over 10,000 images
    frame = review.images_frame(p, root)
    t0 = time.perf_counter()
    rows = review.pick(p, root, where="label IN ('class1', 'class2') AND width > 0", frame=frame)[:10_000]
    out["pick_s"] = time.perf_counter() - t0
    targets = review.targets_of(frame, rows)
    runs = []
    for _ in range(5):
        file.unlink(missing_ok=True)
        t0 = time.perf_counter()
        review.record(p, root, "exclude", targets, reason="benchmark", where="dashboard:images", author="bench")
        runs.append(time.perf_counter() - t0)
    out["record_10k_s"] = statistics.median(runs)
    out["record_10k_bytes"] = file.stat().st_size
    print(f"pick {out['pick_s']:.2f} s, record 10k median {out['record_10k_s']:.3f} s", flush=True)

    # 2. the Decisions page with 50,000 entries
    file.unlink()
    ids = frame["id"].tolist()
    for start in range(0, 50_000, 10_000):
        chunk = [(ids[(start + k) % len(ids)], frame["path"].iat[(start + k) % len(ids)]) for k in range(10_000)]
        review.record(p, root, ("exclude", "tag", "include", "exclude", "relabel")[start // 10_000], chunk,
                      value={"tag": "t", "relabel": "class9"}.get(("exclude", "tag", "include", "exclude",
                                                                   "relabel")[start // 10_000]), reason=f"batch {start}",
                      author=f"reviewer{start // 10_000 % 2}")
    t0 = time.perf_counter()
    entries = decisions.read(file)
    decisions.resolve(entries)
    out["read_resolve_50k_s"] = time.perf_counter() - t0
    from playwright.sync_api import sync_playwright

    proc, url = serve(bundle, {"PIXELSCOPE_PROJECT": str(root)})
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            runs_seen = ScriptRuns(page)
            out["decisions_first_s"] = timed(page, runs_seen, f"{url}/decisions")
            warm = [timed(page, runs_seen, f"{url}/decisions") for _ in range(3)]
            out["decisions_warm_s"] = statistics.median(warm)
            out["decisions_text"] = next((ln for ln in page.inner_text("body").splitlines() if "entries" in ln), "")
            if page.locator("[data-testid='stException']").count():
                raise SystemExit("the Decisions page raised")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    print(f"decisions page first {out['decisions_first_s']:.2f} s, warm {out['decisions_warm_s']:.2f} s "
          f"({out['decisions_text']})", flush=True)

    # 3. Apply against the steps it runs
    t0 = time.perf_counter()
    c = curate_step(p, root)
    out["curate_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    publish_step(p, root)
    out["publish_s"] = time.perf_counter() - t0
    status = root / ".pixelscope" / "apply" / "status.json"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pixelscope.curate.apply", "--project", str(root), "--params", "params.yaml"],
                   check=True, cwd=REPO)
    out["apply_s"] = time.perf_counter() - t0
    s = json.loads(status.read_text())
    if s.get("state") != "done":
        raise SystemExit(f"apply failed: {s.get('error')}")
    out["overhead_s"] = out["apply_s"] - out["curate_s"] - out["publish_s"]
    out["apply_phases"] = s.get("seconds", {})
    out["included"] = c.counts["included"]
    print(json.dumps(out, indent=1), flush=True)
    shutil.rmtree(root / ".pixelscope", ignore_errors=True)
    file.unlink(missing_ok=True)
    if not args.no_write:
        write(args.size, out)


def write(n: int, r: dict) -> None:
    lines = [f"\n### Review decisions at {n:,} images — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
             f"{os.cpu_count()} cores\n",
             "`python benchmarks/bench_decisions.py`: bench_dashboard's synthetic 100k bundle and project.\n",
             "| what | measured | target |", "|---|---:|---:|",
             f"| record one decision over 10,000 images (review.record: 10,000 lines, {r['record_10k_bytes'] / 2**20:.1f} MiB, "
             f"locked append + fsync; median of 5) | {r['record_10k_s']:.3f} s | ≤ 1 s |",
             f"| pick them with a filter over the 100k manifest (`--where`, the curate engine) | {r['pick_s']:.2f} s | — |",
             f"| read + replay 50,000 entries | {r['read_resolve_50k_s']:.2f} s | — |",
             f"| Decisions page, 50,000 entries, first load | {r['decisions_first_s']:.2f} s | — |",
             f"| Decisions page, 50,000 entries, warm (median of 3) | {r['decisions_warm_s']:.2f} s | ≤ 2 s |",
             f"| curate step ({r['included']:,} included; exports off) | {r['curate_s']:.1f} s | — |",
             f"| publish step | {r['publish_s']:.1f} s | — |",
             f"| Apply (`python -m pixelscope.curate.apply`: curate + publish in a new process) | {r['apply_s']:.1f} s | — |",
             f"| Apply's own cost (Apply − curate − publish) | {r['overhead_s']:.1f} s "
             f"({100 * r['overhead_s'] / r['curate_s']:.0f} % of curate) | ≤ 10 % of curate |",
             "", "Apply's phases (s, from its status file): " + ", ".join(f"{k} {v}" for k, v in r["apply_phases"].items())
             + ".", ""]
    with open(REPO / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    main()
