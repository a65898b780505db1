"""The detection demo `make demo-detection` builds: composed scenes with known boxes, planted
annotation faults and a simulated model's boxes, through the whole pipeline, then checked.

    python -m flows.demo_detection                       # demo-detection/, 120 scenes
    python -m flows.demo_detection --project /tmp/dd --scenes 60
    python -m flows.demo_detection --annotations yolo      # the same scenes as YOLO labels (or voc: XML)

`demo-detection/` is a project of its own (git + DVC), like `make demo`'s: the scenes, their COCO
annotations and the model's COCO results under data/raw (pixelscope.demo_detection), params that
point ingest.annotations at them, curate writing COCO, YOLO and Hugging Face parquet. After the
pipeline (Prefect; every stage, objects included) it measures what the finders caught of the
planted faults (recall per kind, precision per finder) and the COCO metrics of the model's boxes,
and writes them to reports/demo_detection.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger

from flows.demo import commit, new_project
from flows.pipeline import run_pipeline
from pixelscope.config import load_params, set_params
from pixelscope.errors import PixelscopeError
from pixelscope.pipeline.stages import dvc_yaml

PARAMS: dict[str, Any] = {
    "validate": {"on_failure": "warn"},
    "ingest": {"labels": "none"},
    "curate": {"formats": ["coco", "yolo", "parquet"], "exclude": ["unreadable", "exact_duplicate"]},
}


@flow(name="demo-detection")
def demo_detection(project: str = "demo-detection", scenes: int = 120, seed: int = 0,
                   annotations: str = "coco") -> dict[str, Any]:
    """Build the detection demo project with its ground truth in `annotations` format (coco, yolo or
    voc), run the pipeline, and measure the planted faults found."""
    import pyarrow.parquet as pq

    from pixelscope.annotations.evaluate import evaluate_boxes
    from pixelscope.demo_detection import build_detection_demo, found_faults, write_as

    log = get_run_logger()
    t0 = time.perf_counter()
    root = Path(project).resolve()
    new_project(root, PARAMS)
    built = build_detection_demo(root / "data" / "raw", scenes, seed=seed)
    where = {k: f"data/raw/{v}" if k in ("path", "predictions") else v
             for k, v in write_as(root / "data" / "raw", annotations).items()}
    set_params(root / "params.yaml", {"ingest": {"annotations": where}})
    (root / "dvc.yaml").write_text(dvc_yaml(root / "params.yaml"))  # the annotation files are the objects stage's deps
    log.info("demo-detection: %d scenes, %d annotated boxes (%s), %d planted faults", built["scenes"], built["objects"],
             annotations, built["planted"])
    params = load_params(root / "params.yaml")
    ran = run_pipeline(params, root)
    commit(root, f"detection demo: {scenes} scenes through the pipeline", tag="v1")
    issues = pq.read_table(params.paths.under(root).issues).to_pandas()
    planted = json.loads((root / "data" / "raw" / "planted.json").read_text())
    found = found_faults(planted, issues, list(issues["path"]))
    boxes = evaluate_boxes(params, root)
    result = {"project": str(root), "annotations": annotations, **built, "found": found, "boxes": boxes, "ran": ran["ran"],
              "seconds": round(time.perf_counter() - t0, 1)}
    (root / "reports" / "demo_detection.json").write_text(json.dumps(result, indent=1, default=str))
    return result


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(prog="python -m flows.demo_detection", description=__doc__.splitlines()[0])
    ap.add_argument("--project", default="demo-detection", help="the project's folder (rebuilt from scratch)")
    ap.add_argument("--scenes", type=int, default=120)
    ap.add_argument("--seed", type=int, default=0, help="another seed: other scenes, other planted faults")
    ap.add_argument("--annotations", choices=["coco", "yolo", "voc"], default="coco",
                    help="the ground truth's format (yolo and voc: the model's boxes as YOLO txt with confidences)")
    a = ap.parse_args(argv)
    try:
        r = demo_detection(a.project, a.scenes, a.seed, a.annotations)
    except PixelscopeError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    print(f"detection demo: {r['project']} ({r['scenes']} scenes, {r['objects']} boxes) in {r['seconds']:.0f} s")
    for kind, f in r["found"].items():
        print(f"  {kind}: " + ", ".join(f"{k} {v}" for k, v in f.items()))
    if r["boxes"]:
        b = r["boxes"]
        print(f"  the simulated model's boxes: mAP {b['map']}, mAP@50 {b['map50']}; "
              f"{b['errors']['false_positives']} false positives, {b['errors']['false_negatives']} false negatives")


if __name__ == "__main__":
    main(sys.argv[1:])
