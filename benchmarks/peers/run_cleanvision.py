"""cleanvision's Imagelab.find_issues over a folder (its default issue types and workers).

Runs inside its own venv. Prints one JSON line.
"""

import json
import sys
import time

from cleanvision import Imagelab

t0 = time.perf_counter()
lab = Imagelab(data_path=sys.argv[1])
lab.find_issues(verbose=False)
seconds = time.perf_counter() - t0
print(json.dumps({"tool": "cleanvision", "images": len(lab.issues), "seconds": seconds}))
