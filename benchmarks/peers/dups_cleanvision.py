"""cleanvision's exact and near-duplicate sets (its defaults: md5, pHash 8) over a folder.

Runs inside its own venv. Prints one JSON line: the pairs within each set, paths relative to the folder.
"""

import itertools
import json
import os
import sys
import time

from cleanvision import Imagelab

root = sys.argv[1]
t0 = time.perf_counter()
lab = Imagelab(data_path=root)
lab.find_issues({"exact_duplicates": {}, "near_duplicates": {}}, verbose=False)
sets = lab.info["exact_duplicates"]["sets"] + lab.info["near_duplicates"]["sets"]
pairs = sorted({tuple(sorted(os.path.relpath(p, root) for p in ab)) for s in sets for ab in itertools.combinations(s, 2)})
print(json.dumps({"tool": "cleanvision", "setting": "exact + near duplicate sets (defaults)",
                  "seconds": time.perf_counter() - t0, "pairs": pairs}))
