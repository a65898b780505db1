"""imagededup's PHash with its defaults (max_distance_threshold=10) over a folder, recursively.

Runs inside its own venv. Prints one JSON line: the duplicate pairs, paths relative to the folder.
"""

import json
import sys
import time

from imagededup.methods import PHash

root = sys.argv[1]
t0 = time.perf_counter()
ph = PHash(verbose=False)
encodings = ph.encode_images(image_dir=root, recursive=True)
dups = ph.find_duplicates(encoding_map=encodings)
pairs = sorted({tuple(sorted((a, b))) for a, bs in dups.items() for b in bs})
print(json.dumps({"tool": "imagededup", "setting": "PHash, max_distance_threshold=10 (default)",
                  "seconds": time.perf_counter() - t0, "pairs": pairs}))
