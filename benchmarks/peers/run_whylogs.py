"""whylogs' image profiling over a folder: log_image per image, views merged into one profile.

Runs inside its own venv (whylogs 1.6.4 needs numpy<2). Prints one JSON line.
"""

import json
import sys
import time
from pathlib import Path

from PIL import Image
from whylogs.extras.image_metric import log_image

files = sorted(p for p in Path(sys.argv[1]).rglob("*") if p.is_file())
t0 = time.perf_counter()
view = None
for f in files:
    with Image.open(f) as img:
        v = log_image(img).view()
    view = v if view is None else view.merge(v)
seconds = time.perf_counter() - t0
print(json.dumps({"tool": "whylogs", "images": len(files), "seconds": seconds, "columns": len(view.get_columns())}))
