"""The README's dashboard pictures: every page of the demo project, in Debian's Chromium.

    make demo && .venv/bin/python docs/dashboard/screenshots.py [--project demo] [--out docs/dashboard]

Serves the project read-only on a free loopback port (as `pixelscope dashboard --read-only` does),
opens each page, waits until Streamlit is idle and writes `<page>.png`. The review pictures
(review-*.png) come from the browser review test: PIXELSCOPE_SCREENSHOTS=1 pytest -k review_in_a_real_browser.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PAGES = ["overview", "features", "compare", "drift", "embedding_map", "clusters", "images", "issues", "curated", "decisions",
         "evaluation", "versions"]
CHROMIUM = Path("/usr/bin/chromium")
QUERY = {"embedding_map": "?color=cluster", "clusters": "?cluster=0"}  # what the README's pictures show


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str, seconds: float = 60) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                return True
        except OSError:
            time.sleep(0.5)
    return False


def main(argv: list[str]) -> None:
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--project", type=Path, default=Path("demo"))
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    a = ap.parse_args(argv)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pixelscope", "dashboard", "--project", str(a.project),
                             "--port", str(port), "--read-only"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items() if not k.startswith("PIXELSCOPE_")})
    url = f"http://127.0.0.1:{port}"
    try:
        if not healthy(url):
            raise SystemExit("the dashboard did not start (run `make demo` first)")
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
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
