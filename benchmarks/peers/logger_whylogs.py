"""whylogs' image logging on the arrays of an .npy file: `log_image` per image (its documented
image API), the views merged into one profile, as its docs show. Runs in its own venv (whylogs
1.6.4 needs numpy<2). Prints one JSON line: images/s and peak RSS."""

import json
import resource
import sys
import time

import numpy as np
from PIL import Image
from whylogs.extras.image_metric import log_image

a = np.load(sys.argv[1])
n = int(sys.argv[2])
t0 = time.perf_counter()
view = None
for k in range(n):
    v = log_image(Image.fromarray(a[k % len(a)])).view()
    view = v if view is None else view.merge(v)
seconds = time.perf_counter() - t0
print(json.dumps({"tool": "whylogs", "images": n, "seconds": round(seconds, 2), "images_per_s": round(n / seconds, 1),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))
