"""cleanvision's dark / light / blurry flags (its defaults) over a folder.

Runs inside its own venv. Prints one JSON line: per flag, the flagged paths relative to the folder.
"""

import json
import os
import sys
import time

from cleanvision import Imagelab

root = sys.argv[1]
t0 = time.perf_counter()
lab = Imagelab(data_path=root)
lab.find_issues({"dark": {}, "light": {}, "blurry": {}}, verbose=False)
issues = lab.issues
flags = {kind: sorted(os.path.relpath(p, root) for p in issues.index[issues[f"is_{kind}_issue"]])
         for kind in ("dark", "light", "blurry")}
print(json.dumps({"tool": "cleanvision", "setting": "dark / light / blurry (defaults)",
                  "seconds": time.perf_counter() - t0, "flags": flags}))
