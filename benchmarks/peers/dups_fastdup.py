"""fastdup with its defaults (bundled model, similarity threshold 0.9, k=2 neighbours) over a folder.

Runs inside its own venv. Prints one JSON line: its similarity pairs, and the pairs within its
connected components, paths relative to the folder.
"""

import itertools
import json
import os
import sys
import tempfile
import time

import fastdup

root = os.path.abspath(sys.argv[1])
t0 = time.perf_counter()
with tempfile.TemporaryDirectory() as work:
    fd = fastdup.create(work_dir=work, input_dir=root)
    fd.run(verbose=False)
    sim = fd.similarity()
    cc, _ = fd.connected_components()


def rel(p: str) -> str:
    return os.path.relpath(os.path.abspath(p), root)  # fastdup names files relative to the working directory


pairs = sorted({tuple(sorted((rel(a), rel(b)))) for a, b in zip(sim["filename_from"], sim["filename_to"])})
groups = cc.groupby("component_id")["filename"].apply(list) if len(cc) else []
components = sorted({tuple(sorted((rel(a), rel(b)))) for g in groups for a, b in itertools.combinations(g, 2)})
print(json.dumps({"tool": "fastdup", "setting": "similarity pairs (defaults: threshold 0.9, k=2)",
                  "seconds": time.perf_counter() - t0, "pairs": pairs, "components": components}))
