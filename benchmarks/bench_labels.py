"""Label-error candidates: flip 8 % of the labels of real labeled sets, see how many flips are found.

    python benchmarks/bench_labels.py [--seeds 5]

Sets: ../shared/corpus labeled/hymenoptera (ants / bees photos), labeled/cifar10 (32x32,
three classes, imbalanced 60/40/20) and the demo data (6 classes). Each set is ingested and
embedded once with the pipeline's own steps (EfficientNet-Lite0); then for each seed 8 % of
the readable images get another class, and the same embeddings go to
- pixelscope's `label_error` finder (out-of-sample kNN votes + cleanlab.find_label_issues),
- cleanlab Datalab with its defaults (`find_issues(features=...)`, its own venv:
  benchmarks/.work/venv-datalab, cleanlab[datalab]).
Reported: precision@k (k = number of flips; the k rows each ranks worst), and the precision /
recall of the set each one flags. Appends to benchmarks/results/labels.jsonl.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
WORK = HERE / ".work" / "labels"
CORPUS = HERE.parent.parent / "shared" / "corpus"
DATALAB = HERE / ".work" / "venv-datalab" / "bin" / "python"


def datalab_python() -> Path:
    if not DATALAB.exists():
        print("creating the Datalab venv (cleanlab[datalab]) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DATALAB.parents[1])], check=True)
        subprocess.run([str(DATALAB), "-m", "pip", "install", "--quiet", "cleanlab[datalab]==2.9.0"], check=True)
    return DATALAB


def embedded(name: str, raw: Path):
    """(frame of readable rows with their true labels, unit vectors aligned to the rows)."""
    from pixelscope.config import parse_params
    from pixelscope.embed.step import embed_step
    from pixelscope.ingest.step import ingest_step
    from pixelscope.issues.step import load_dataset

    w = WORK / name
    params = parse_params({"paths": {"raw": str(raw), "manifest": str(w / "manifest.parquet"), "tensors": str(w / "t"),
                                     "embeddings": str(w / "embeddings"), "metrics": str(w / "metrics")}})
    ingest_step(params, ".")
    embed_step(params, ".")
    data, _ = load_dataset(params, ".")
    frame = data.frame[data.ok & data.frame["label"].notna()].reset_index(drop=True)
    where = data.embeddings.index_of()
    return frame, data.embeddings.vectors[[where[i] for i in frame["id"]]]


def scores(ranking: np.ndarray, flagged: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    k = int(flipped.sum())
    top = ranking[:k]
    tp = int((flagged & flipped).sum())
    return {"precision_at_k": round(float(flipped[top].mean()), 4), "flagged": int(flagged.sum()),
            "precision": round(tp / max(1, int(flagged.sum())), 4), "recall": round(tp / max(1, k), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--rate", type=float, default=0.08)
    args = ap.parse_args()
    from pixelscope.config import IssuesConfig
    from pixelscope.demo import build_demo
    from pixelscope.issues import Dataset, Embeddings
    from pixelscope.issues.labels import label_error

    demo = WORK / "demo-raw"
    if not demo.exists():
        build_demo(demo, None, per_class=50, workers=2)
    sets = {"hymenoptera": CORPUS / "labeled" / "hymenoptera", "cifar10": CORPUS / "labeled" / "cifar10", "demo": demo}
    py = datalab_python()
    rows = []
    for name, raw in sets.items():
        frame, x = embedded(name, raw)
        classes = sorted(frame["label"].unique())
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            n = len(frame)
            flip = rng.choice(n, max(1, round(args.rate * n)), replace=False)
            given = frame["label"].to_numpy(dtype=object).copy()
            for i in flip:
                given[i] = rng.choice([c for c in classes if c != given[i]])
            flipped = np.zeros(n, bool)
            flipped[flip] = True
            f = frame.assign(label=given)
            ids = f["id"].tolist()
            ours = label_error(Dataset(f, IssuesConfig(), Embeddings(ids, x, "bench")), {})
            our_score = ours.columns["label_error_score"].to_numpy()
            mine = scores(np.argsort(-our_score, kind="stable"), ours.columns["label_error"].to_numpy(), flipped)
            np.save(WORK / "features.npy", x)
            (WORK / "labels.json").write_text(json.dumps(list(given)))
            out = subprocess.run([str(py), str(HERE / "peers" / "run_datalab.py"), str(WORK / "features.npy"),
                                  str(WORK / "labels.json")], capture_output=True, text=True, check=True)
            d = json.loads(out.stdout.strip().splitlines()[-1])
            peer = scores(np.argsort(np.array(d["label_score"]), kind="stable"), np.array(d["is_label_issue"]), flipped)
            rows.append({"set": name, "seed": seed, "images": n, "classes": len(classes), "flips": int(flipped.sum()),
                         "pixelscope": mine, "datalab": peer})
            print(f"{name} seed {seed}: {n} images, {int(flipped.sum())} flips | pixelscope {mine} | datalab {peer}",
                  flush=True)
    table = pd.DataFrame([{"set": r["set"], "tool": t, **r[t]} for r in rows for t in ("pixelscope", "datalab")])
    mean = table.groupby(["set", "tool"])[["precision_at_k", "precision", "recall"]].mean().round(3)
    print(mean.to_string())
    record = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{platform.node()} {platform.machine()}",
              "rate": args.rate, "seeds": args.seeds, "runs": rows, "mean": mean.reset_index().to_dict("records")}
    with (HERE / "results" / "labels.jsonl").open("a") as fh:
        fh.write(json.dumps(record) + "\n")
    (WORK / "features.npy").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
