"""pixelscope's ingest (decode + full feature set + manifest) and profile over a folder.

Prints one JSON line. Same measurement as the peers: in-process time of the real work.
"""

import json
import sys
import time
from pathlib import Path

from pixelscope.config import parse_params
from pixelscope.steps import ingest_step, profile_step


def main() -> None:
    root, work = Path(sys.argv[1]), Path(sys.argv[2])
    params = parse_params({"ingest": {"workers": int(sys.argv[3]) if len(sys.argv) > 3 else 0}})
    t0 = time.perf_counter()
    s = ingest_step(params, root, work / "manifest.parquet")
    p = profile_step(params, work / "manifest.parquet", work / "profile.json")
    seconds = time.perf_counter() - t0
    print(json.dumps({"tool": "pixelscope", "images": s.seen, "ok": s.ok, "seconds": seconds,
                      "ingest_seconds": s.seconds, "profile_seconds": p.seconds, "profile_bytes": p.bytes,
                      "workers": s.workers}))


if __name__ == "__main__":
    main()
