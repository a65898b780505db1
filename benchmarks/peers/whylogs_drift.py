"""whylogs' default drift on its own image features, for the batches bench_drift.py draws.

Runs inside whylogs' venv (whylogs 1.6.4 needs numpy<2). Usage:
    python whylogs_drift.py JOB.json OUT.json

JOB: {"files": [path, ...], "labels": [label, ...], "trials": [{"ref": [i, ...], "cur": [i, ...]}, ...]}
OUT: {"seconds_features": s, "trials": [{"flagged": bool, "drifted": [column, ...]}, ...]}

Features: per file, the dictionary whylogs' ImageMetric tracks (`get_pil_exif_metadata` +
`get_pil_image_metadata`: width, height, colorspace, HSV mean/stddev, entropy, EXIF tags),
computed once per file with whylogs' own functions. A batch is profiled with `why.log` over
those rows plus the label (one row per image, the same numbers `log_image` feeds its
submetrics), and compared with `calculate_drift_scores` at its defaults (KS for numbers,
chi-square for strings; DRIFT when p < 0.05). A batch is flagged when any column is DRIFT.
"""

import json
import sys
import time
from multiprocessing import Pool

import pandas as pd
import whylogs as why
from PIL import Image
from whylogs.extras.image_metric import get_pil_exif_metadata, get_pil_image_metadata
from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores


def features(path: str) -> dict:
    with Image.open(path) as img:
        row = {f"image.{k}": v for k, v in get_pil_exif_metadata(img).items()}
        row.update({f"image.{k}": v for k, v in get_pil_image_metadata(img).items()})
    # whylogs logs scalars; tuples / bytes in EXIF become strings as in a DataFrame of objects
    return {k: (v if isinstance(v, (int, float, str)) else str(v)) for k, v in row.items()}


def main() -> None:
    job = json.loads(open(sys.argv[1]).read())
    t0 = time.perf_counter()
    with Pool(2) as pool:
        rows = pool.map(features, job["files"], chunksize=16)
    seconds_features = time.perf_counter() - t0
    for row, label in zip(rows, job["labels"]):
        row["label"] = label

    def view(idx: list[int]):
        return why.log(pandas=pd.DataFrame([rows[i] for i in idx])).view()

    out = []
    t1 = time.perf_counter()
    for trial in job["trials"]:
        scores = calculate_drift_scores(target_view=view(trial["cur"]), reference_view=view(trial["ref"]),
                                        with_thresholds=True)
        drifted = sorted(c for c, s in scores.items() if s and s.get("drift_category") == "DRIFT")
        out.append({"flagged": bool(drifted), "drifted": drifted})
    json.dump({"seconds_features": seconds_features, "seconds_compare": time.perf_counter() - t1, "trials": out},
              open(sys.argv[2], "w"))


if __name__ == "__main__":
    main()
