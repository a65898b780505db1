"""All issue finders at scale: the real issues step on a synthetic manifest of 10,000 and
100,000 images (clustered 1280-d embeddings in a real store, hashes, features, labels),
timed with peak RSS on this machine, and the approximate graph's recall against exact search.

    python benchmarks/bench_issues_scale.py                  # 10k and 100k, appends to BENCHMARKS.md
    python benchmarks/bench_issues_scale.py --sizes 10000    # one size

The synthetic set: n/50 "scenes" (cluster centres) in 10 classes; 3 % of images are near
copies of another (cosine ~0.99, pHash a few bits apart), 1 % byte copies (same id),
2 % flipped labels, 0.5 % unreadable rows, an 80/10/10 train/val/test split by path.
The step runs in its own process (`python -m pixelscope issues`-equivalent call of
issues_step), so peak RSS is that of the step alone.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_profile import measure  # noqa: E402  (same RSS sampling of the whole process tree)

WORK = HERE / ".work" / "issues-scale"
DIM = 1280  # the default model's width (EfficientNet-Lite0)


def build(n: int, root: Path) -> Path:
    """Write manifest.parquet and an embedding store for n synthetic images under root."""
    from pixelscope.ingest.step import manifest_columns
    from pixelscope.io.manifest import manifest_schema
    from pixelscope.io.store import CURRENT, ShardStore

    done = root / ".complete"
    if done.exists():
        return root
    rng = np.random.default_rng(n)
    scenes = max(10, n // 50)
    centres = rng.normal(size=(scenes, DIM)).astype(np.float32)
    scene = rng.integers(0, scenes, n)
    x = centres[scene] + 1.1 * rng.normal(size=(n, DIM)).astype(np.float32)
    hashes = rng.integers(0, 2**63, n, dtype=np.int64).astype(np.uint64) * np.uint64(2) + rng.integers(0, 2, n).astype(np.uint64)
    near = rng.choice(n, int(0.03 * n), replace=False)
    src = rng.integers(0, n, len(near))
    x[near] = x[src] + 0.1 * rng.normal(size=(len(near), DIM)).astype(np.float32)
    flips = np.zeros(len(near), np.uint64)
    for _ in range(3):  # up to three bits apart
        flips |= np.uint64(1) << rng.integers(0, 64, len(near)).astype(np.uint64)
    hashes[near] = hashes[src] ^ flips
    ids = np.array([f"{i:064x}" for i in rng.integers(0, 2**62, n)], dtype=object)
    copies = rng.choice(n, int(0.01 * n), replace=False)
    copy_src = rng.integers(0, n, len(copies))
    ids[copies], x[copies], hashes[copies] = ids[copy_src], x[copy_src], hashes[copy_src]
    labels = np.array([f"class{c}" for c in range(10)], dtype=object)[scene % 10]
    flipped = rng.choice(n, int(0.02 * n), replace=False)
    labels[flipped] = np.array([f"class{c}" for c in range(10)], dtype=object)[rng.integers(0, 10, len(flipped))]
    errors = rng.random(n) < 0.005
    split = np.array(["train", "val", "test"], dtype=object)[rng.choice(3, n, p=[0.8, 0.1, 0.1])]
    width = rng.integers(320, 1600, n).astype(np.int32)
    height = (width * rng.choice([0.75, 1.0, 0.5625], n)).astype(np.int32)
    cols = manifest_columns()
    data: dict[str, object] = {c.name: [None] * n for c in cols}
    data.update({
        "id": ids.tolist(), "path": [f"{s}/{lab}/img{i:07d}.jpg" for i, (s, lab) in enumerate(zip(split, labels))],
        "source": split.tolist(), "label": labels.tolist(), "split": split.tolist(),
        "status": np.where(errors, "error", "ok").tolist(), "reason": np.where(errors, "decode_error", None).tolist(),
        "bytes": rng.integers(20_000, 900_000, n).tolist(), "format": ["JPEG"] * n, "mode": ["RGB"] * n,
        "width": width.tolist(), "height": height.tolist(), "frames": [1] * n,
        "aspect_ratio": (width / height).tolist(), "border_fraction": rng.beta(1, 30, n).tolist(),
        "brightness_mean": rng.beta(5, 5, n).tolist(), "brightness_p05": rng.beta(2, 8, n).tolist(),
        "brightness_p95": rng.beta(8, 2, n).tolist(), "contrast_rms": rng.beta(3, 8, n).tolist(),
        "dark_fraction": rng.beta(1, 10, n).tolist(), "bright_fraction": rng.beta(1, 10, n).tolist(),
        "entropy": (8 * rng.beta(12, 2, n)).tolist(), "saturation_mean": rng.beta(3, 5, n).tolist(),
        "colored_fraction": rng.beta(6, 2, n).tolist(), "colorfulness": rng.gamma(4, 10, n).tolist(),
        "is_grayscale": np.where(rng.random(n) < 0.02, "true", "false").tolist(),
        "sharpness": rng.lognormal(5, 1, n).tolist(), "edge_density": rng.beta(2, 10, n).tolist(),
        "phash": [f"{h:016x}" for h in hashes], "dhash": [f"{h:016x}" for h in hashes[::-1]],
    })
    # drawn last, so the columns above are the same as in earlier runs of this benchmark
    mirrored = rng.integers(0, 2**63, n, dtype=np.uint64)  # the pHash of the mirrored image: unrelated bits
    mirrored[copies] = mirrored[copy_src]
    # sharpness in proportion to contrast squared, as real images have it (the blurry flag reads their
    # ratio: detail ~ lognormal around 0.5, so about 1 % fall below the 0.05 bar), from the same draws
    contrast = np.array(data["contrast_rms"], dtype=float)
    data["sharpness"] = (np.array(data["sharpness"], dtype=float) / np.exp(5) * 0.5 * (255 * contrast) ** 2).tolist()
    data.update({"phash_mirror": [f"{h:016x}" for h in mirrored],
                 "clipped_highlights": rng.beta(1, 12, n).tolist(), "clipped_shadows": rng.beta(1, 12, n).tolist()})
    for k in [c.name for c in cols if c.name not in ("id", "path", "label", "split", "status", "reason", "source")]:
        if data[k][0] is not None:
            data[k] = [None if e else v for v, e in zip(data[k], errors)]
    root.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pydict(data, schema=manifest_schema(cols)), root / "manifest.parquet",
                   row_group_size=4096)
    store = ShardStore.create(root / "embeddings", "synthetic", "float16", (DIM,), model="synthetic")
    ok = ~errors
    seen: dict[str, int] = {}
    for i in np.flatnonzero(ok):
        seen.setdefault(ids[i], int(i))
    keep = list(seen.values())
    for s in range(0, len(keep), 8192):
        part = keep[s:s + 8192]
        store.add([ids[i] for i in part], x[part].astype(np.float16))
    (root / "embeddings" / CURRENT).write_text(json.dumps({"key": "synthetic", "model": "synthetic", "dim": DIM}))
    done.touch()
    return root


STEP = """
import json, sys, time
from pixelscope.config import parse_params
from pixelscope.issues.step import issues_step
root, exact_max = sys.argv[1], int(sys.argv[2])
p = parse_params({"paths": {"manifest": "manifest.parquet", "raw": "raw", "embeddings": "embeddings",
                            "issues": "issues.parquet", "issue_pairs": "pairs.parquet",
                            "issues_summary": "issues.json", "metrics": "metrics"},
                  "issues": {"exact_index_max": exact_max}})
r = issues_step(p, root)
print(json.dumps({"images": r.counts["files_seen"], "seconds": r.seconds, "finders": r.metrics["finder_seconds"],
                  "flagged": {k: v for k, v in r.counts.items()},
                  "index": r.details["finders"]["near_duplicate"].get("index")}))
"""


def graph_recall(root: Path, queries: int = 2000) -> dict:
    """The approximate graph (IVF over a PCA, re-ranked) against exact search, for a random sample
    of query images: recall of their k nearest, and of their near-duplicate pairs."""
    import faiss

    from pixelscope.config import IssuesConfig
    from pixelscope.io.store import current_store
    from pixelscope.neighbours import knn_graph, unit_vectors

    store = current_store(root / "embeddings")
    ids = sorted(store.ids())
    x = unit_vectors(store, ids)
    cfg = IssuesConfig()
    t0 = time.perf_counter()
    approx = knn_graph(x, cfg.graph_k, exact_max=0, reduce_dim=cfg.reduce_dim)
    approx_s = time.perf_counter() - t0
    q = np.sort(np.random.default_rng(1).choice(len(x), min(queries, len(x)), replace=False))
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, e = flat.search(x[q], cfg.knn + 1)
    k = cfg.knn
    recall = float(np.mean([len(set(a[:k]) & (set(row) - {qi})) / k for a, row, qi in zip(approx.nbrs[q], e, q)]))
    lims, _, idx = flat.range_search(x[q], cfg.embedding_min_cosine)
    ep = {tuple(sorted((int(qi), int(j)))) for t, qi in enumerate(q) for j in idx[lims[t]:lims[t + 1]] if j != qi}
    i, j, _ = approx.pairs(cfg.embedding_min_cosine)
    qs = set(q.tolist())
    ap = {(int(a), int(b)) for a, b in zip(i, j) if a in qs or b in qs}
    return {"images": len(x), "queries": len(q), "recall_at_k": round(recall, 4), "k": k, "approx_s": round(approx_s, 1),
            "near_pairs_exact": len(ep), "near_pairs_found": len(ap & ep), "near_pairs_invented": len(ap - ep),
            "index": approx.index}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    runs = []
    for n in args.sizes:
        root = build(n, WORK / f"n{n}")
        r = measure([sys.executable, "-c", STEP, str(root), str(20_000)])
        r["images"] = n
        print(json.dumps(r), flush=True)
        runs.append(r)
    recall = graph_recall(WORK / f"n{max(args.sizes)}")
    print(json.dumps(recall), flush=True)
    if not args.no_write:
        write(runs, recall)


def write(runs: list[dict], recall: dict) -> None:
    lines = [f"\n### Issue finders at scale — {datetime.now(UTC):%Y-%m-%d}, {platform.machine()}, "
             f"{os.cpu_count()} cores\n",
             "`python benchmarks/bench_issues_scale.py`: the real issues step (all default finders) in its own "
             "process on a synthetic manifest (clustered 1280-d float16 embeddings in a real store, hashes, "
             "features, 10 classes, 3 % near copies, 1 % byte copies, 2 % flipped labels, 0.5 % unreadable).\n",
             "| images | seconds | peak RSS (MiB) | graph index | slowest finders (s) |", "|---:|---:|---:|---|---|"]
    for r in runs:
        slow = sorted(r["finders"].items(), key=lambda kv: -(kv[1] or 0))[:4]
        lines.append(f"| {r['images']:,} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {r['index']} | "
                     + ", ".join(f"{k} {v:.1f}" for k, v in slow) + " |")
    if len(runs) >= 2:
        a, b = runs[0], runs[-1]
        lines.append(f"\nGrowth {a['images']:,} → {b['images']:,} images: time ×{b['seconds'] / a['seconds']:.1f}, "
                     f"peak RSS ×{b['peak_rss_mb'] / a['peak_rss_mb']:.1f}.")
    lines.append(f"\nApproximate graph vs exact search on the {recall['images']:,}-image set ({recall['queries']:,} "
                 f"random query images): recall@{recall['k']} {recall['recall_at_k']:.3f}; their near-duplicate pairs "
                 f"(cosine ≥ the default) found {recall['near_pairs_found']:,} of {recall['near_pairs_exact']:,}, "
                 f"invented {recall['near_pairs_invented']}; graph built in {recall['approx_s']} s "
                 f"({recall['index']}).\n")
    with open(HERE.parent / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    main()
