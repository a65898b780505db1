"""The README's dashboard pictures: every page of the demo project, in Debian's Chromium.

    make demo && .venv/bin/python docs/dashboard/screenshots.py [--project demo] [--out docs/dashboard]

Serves the project read-only on a free loopback port (bench_dashboard's `serve`: Streamlit as
`pixelscope dashboard --read-only` starts it), opens each page, waits until Streamlit is idle and
writes `<page>.png`. The review pictures (review-*.png) and similar.png come from the browser tests:
PIXELSCOPE_SCREENSHOTS=1 pytest -k "review_in_a_real_browser or more_like_a_dropped".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_dashboard import CHROMIUM, serve  # noqa: E402  (one way to start the dashboard for a script)

PAGES = ["overview", "features", "compare", "drift", "embedding_map", "clusters", "images", "issues", "curated", "decisions",
         "evaluation", "versions"]
QUERY = {"embedding_map": "?color=cluster", "clusters": "?cluster=0"}  # what the README's pictures show


def main(argv: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path("demo"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    a = ap.parse_args(argv)
    if not (a.project / "reports" / "publish" / "summary.json").exists():
        raise SystemExit(f"no bundle in {a.project}: run `make demo` first")
    project = a.project.resolve()
    proc, url = serve(project / "reports" / "publish", {"PIXELSCOPE_PROJECT": str(project), "PIXELSCOPE_READ_ONLY": "1"})
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for name in PAGES:
                page.goto(f"{url}/{'' if name == 'overview' else name}{QUERY.get(name, '')}")
                page.wait_for_function("() => document.querySelector('[data-testid=\"stMain\"] h1')", timeout=60_000)
                page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')",
                                       timeout=60_000)
                page.wait_for_timeout(1500)
                page.screenshot(path=str(a.out / f"{name}.png"))
                print(f"wrote {a.out / name}.png")
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


if __name__ == "__main__":
    main(sys.argv[1:])
