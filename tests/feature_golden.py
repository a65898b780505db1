"""Feature values on the real corpus, as recorded before a speed change: the yardstick that
shows an optimisation changed no value beyond the documented tolerance.

    python -m tests.feature_golden      # re-record (only when a value is meant to change)

Every file of the corpus that ingest would take (its own discovery, default excludes) goes
through ingest's `process_file` with default settings; the
status, reason, size and every built-in feature are kept per path. Recorded on x86-64 with the
pinned OpenCV / Pillow wheels (requirements.txt): another CPU family or library version may
round an area-averaged thumbnail pixel differently, so a hash mismatch there means "re-record and
check", not necessarily a regression.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from typing import Any

GOLDEN = Path(__file__).parent / "data" / "corpus_features.json.gz"
KEPT = ("status", "reason", "width", "height")
# Documented tolerance (README, "What goes into the manifest"): numbers within 1e-9 relative (float summation order
# may differ between kernels); categorical values and hashes exactly.
REL_TOL = 1e-9


def compute(corpus: Path) -> dict[str, dict[str, Any]]:
    from pixelscope.config import parse_params
    from pixelscope.features import registered
    from pixelscope.ingest.step import _init_worker, process_file, settings_for
    from pixelscope.io.discover import discover

    params = parse_params({})
    s = settings_for(params.ingest, params.features)
    _init_worker(s)
    names = [f.name for f in registered() if f.builtin]
    entries, _ = discover(corpus, params.ingest)
    out = {}
    for e in entries:
        row = process_file(e, s)
        out[e.rel] = {k: row.get(k) for k in (*KEPT, *names)}
    return out


def load() -> dict[str, dict[str, Any]]:
    with gzip.open(GOLDEN, "rt") as fh:
        return json.load(fh)


if __name__ == "__main__":
    from tests.conftest import CORPUS

    values = compute(Path(sys.argv[1]) if len(sys.argv) > 1 else CORPUS)
    GOLDEN.parent.mkdir(exist_ok=True)
    with gzip.open(GOLDEN, "wt") as fh:
        json.dump(values, fh, sort_keys=True, indent=0)
    print(f"{len(values)} files -> {GOLDEN} ({GOLDEN.stat().st_size / 1024:.0f} KiB)")
