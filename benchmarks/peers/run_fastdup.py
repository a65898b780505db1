"""fastdup's C++ image statistics only (`run_stats_only=True`: size, blur, brightness, colour
means / stds, no feature vectors, no similarity) over a folder, its default threads.

Runs inside its own venv. Prints one JSON line.
"""

import json
import os
import sys
import tempfile
import time

import fastdup

os.environ.setdefault("SENTRY_OPT_OUT", "1")  # no telemetry
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as work:
    fd = fastdup.create(work_dir=work, input_dir=os.path.abspath(sys.argv[1]))
    fd.run(run_stats_only=True, verbose=False, overwrite=True)
    stats = fd.img_stats()
    seconds = time.perf_counter() - t0
    columns = sorted(c for c in stats.columns if c not in ("filename", "index"))
print(json.dumps({"tool": "fastdup", "setting": "run_stats_only", "images": len(stats), "seconds": seconds,
                  "columns": columns}))
