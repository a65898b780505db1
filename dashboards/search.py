"""More like this from a dropped file: the file is embedded and searched by `pixelscope similar`
in a process of its own (the dashboard never imports a model: it stays light).

Where: the bundle's compressed index (search/, pixelscope/compressed_index.py) when it has one —
re-ranked by the project's embedding store when the project is at hand, else approximate, and
the query embedded with the settings the bundle recorded — or else the project's store alone.
Offered only on a loopback-bound dashboard (it runs a model on a file it was handed).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from dashboards import actions
from dashboards.common import bundle, bundle_folder

MAX_BYTES = 50 * 1024 * 1024  # a dropped file larger than this is refused before it is written
TIMEOUT_S = 120


def available() -> str | None:
    """None when a file can be searched, else why not (shown instead of the uploader)."""
    if str(st.get_option("server.address") or "") not in actions.LOOPBACK:
        return "searching by a file works on a dashboard bound to loopback only"
    if not bundle().has("search") and not actions.params_file().exists():
        return (f"this bundle has no search index and there is no project at {actions.project()} (republish, "
                "or start it with `pixelscope dashboard --project DIR`)")
    return None


def command(path: Path, k: int) -> list[str]:
    """`pixelscope similar FILE --json`, through the bundle's index when it has one, with the project's
    params when they are at hand."""
    cmd = [sys.executable, "-m", "pixelscope", "similar", str(path), "--k", str(k), "--json"]
    if bundle().has("search"):
        cmd += ["--bundle", str(bundle_folder())]
    if actions.params_file().exists():
        cmd += ["--params", str(actions.params_file())]
    return cmd


@st.cache_data(show_spinner=False, max_entries=16)
def search_file(digest: str, data: bytes, suffix: str, k: int) -> dict[str, Any]:
    """`pixelscope similar FILE --json` on a temporary copy of the bytes (cached by their sha256)."""
    if len(data) > MAX_BYTES:
        return {"error": f"the file is {len(data) / 2**20:.0f} MiB; at most {MAX_BYTES // 2**20} MiB"}
    safe = suffix if suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif",
                                        ".heic", ".avif") else ".img"
    with tempfile.TemporaryDirectory(prefix="pixelscope-query-") as tmp:
        path = Path(tmp) / f"query{safe}"
        path.write_bytes(data)
        try:
            r = subprocess.run(command(path, k), cwd=actions.project() if actions.params_file().exists() else tmp,
                               capture_output=True, text=True, timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            return {"error": f"the search took over {TIMEOUT_S} s and was stopped"}
    if r.returncode != 0:
        lines = [x for x in (r.stderr or r.stdout).splitlines() if x.strip()]
        return {"error": lines[-1] if lines else f"pixelscope similar failed ({r.returncode})"}
    return json.loads(r.stdout)


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
