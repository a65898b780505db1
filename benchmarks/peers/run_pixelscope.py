"""pixelscope's ingest (decode + full feature set + manifest) and profile over a folder.

Prints one JSON line. Same measurement as the peers: in-process time of the real work.
"""

import json
import sys
import time
from pathlib import Path

from pixelscope.config import parse_params
from pixelscope.ingest.step import ingest_step
from pixelscope.profile.step import profile_step


def main() -> None:
    root, work = Path(sys.argv[1]), Path(sys.argv[2])
    params = parse_params({"ingest": {"workers": int(sys.argv[3]) if len(sys.argv) > 3 else 0},
                           "paths": {"raw": str(root), "manifest": str(work / "manifest.parquet"),
                                     "profile": str(work / "profile.json"), "embeddings": str(work / "none"),
                                     "metrics": str(work / "metrics")}})
    t0 = time.perf_counter()
    s = ingest_step(params, ".")
    p = profile_step(params, ".")
    seconds = time.perf_counter() - t0
    print(json.dumps({"tool": "pixelscope", "images": s.counts["files_seen"], "ok": s.counts["ok"], "seconds": seconds,
                      "ingest_seconds": s.seconds, "profile_seconds": p.seconds, "profile_bytes": p.details["bytes"],
                      "workers": s.details["workers"]}))


if __name__ == "__main__":
    main()
