"""The box finders on detection demo sets they were not tuned on: recall per planted fault kind
and precision per finder, seed by seed (pixelscope.demo_detection; seed 0 is the set the rules
were developed on, the others are held out).

    python benchmarks/bench_detection_finders.py --seeds 1 2 3 --scenes 300

ingest -> objects -> issues (no embeddings: the box finders do not use them), the shipped defaults.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def one(seed: int, scenes: int) -> dict:
    import pyarrow.parquet as pq

    from pixelscope.annotations.step import objects_step
    from pixelscope.config import parse_params
    from pixelscope.demo_detection import build_detection_demo, found_faults
    from pixelscope.ingest.step import ingest_step
    from pixelscope.issues.step import issues_step

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        built = build_detection_demo(root / "data" / "raw", scenes, seed=seed)
        p = parse_params({"ingest": {"workers": 1, "labels": "none",
                                     "annotations": {"path": "data/raw/annotations.json",
                                                     "predictions": "data/raw/predictions.json"}},
                          "paths": {"embeddings": "none"}})
        ingest_step(p, root)
        objects_step(p, root)
        t0 = time.perf_counter()
        issues_step(p, root)
        seconds = time.perf_counter() - t0
        issues = pq.read_table(root / p.paths.issues).to_pandas()
        planted = json.loads((root / "data" / "raw" / "planted.json").read_text())
        return {"seed": seed, **built, "issues_seconds": round(seconds, 2),
                "found": found_faults(planted, issues, list(issues["path"]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--scenes", type=int, default=300)
    a = ap.parse_args()
    rows = [one(s, a.scenes) for s in a.seeds]
    for r in rows:
        print(json.dumps(r))
    kinds = ("shifted", "duplicated", "missing", "wrong_class")
    lines = [f"\n### Box finders on detection demo sets not tuned on — {datetime.now(UTC):%Y-%m-%d}, "
             f"{platform.node()} {platform.machine()}\n",
             f"`python benchmarks/bench_detection_finders.py --seeds {' '.join(map(str, a.seeds))} --scenes {a.scenes}` "
             "(seed 0 is the set the rules were developed on; these seeds are not). Recall: planted scenes flagged by "
             "the finder for that kind; precision: flagged scenes that had such a fault planted.\n",
             "| seed | scenes | boxes | " + " | ".join(f"{k} (found / planted)" for k in kinds)
             + " | duplicate_boxes precision | box_label_issue precision |",
             "|---:|---:|---:|" + "---|" * len(kinds) + "---:|---:|"]
    for r in rows:
        f = r["found"]
        lines.append(f"| {r['seed']} | {r['scenes']} | {r['objects']} | "
                     + " | ".join(f"{f[k]['found']} / {f[k]['planted']}" for k in kinds)
                     + f" | {f['duplicate_boxes']['right']} / {f['duplicate_boxes']['flagged']} | "
                     f"{f['box_label_issue']['right']} / {f['box_label_issue']['flagged']} |")
    with (HERE / "results" / "detection_finders.jsonl").open("a") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    with (HERE.parent / "BENCHMARKS.md").open("a") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
