"""The embedding map and its clusters at scale: UMAP (pixelscope.embed.projection) against PCA.

    taskset -c 0,1 python benchmarks/bench_map.py --sizes 10000 100000

Vectors: a mixture of 200 directions in 1280-d with noise (unit vectors, like an image
embedding's classes and sub-styles), seeded. Per size: the time of the PCA map, of the UMAP map
(fit on at most FIT_SAMPLE, the rest transformed), of HDBSCAN on the map, the clusters found, and
how many of each image's 10 true nearest neighbours (cosine over all images, exact faiss) are
among its 10 nearest on the map, over 1,000 held-out images (for UMAP above FIT_SAMPLE: images
the fit never saw); also sklearn's trustworthiness on a 2,000-image subsample.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pixelscope.embed.projection import FIT_SAMPLE, clusters, min_cluster_size, pca_map, project  # noqa: E402


def vectors(n: int, dim: int = 1280, k: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, dim)).astype(np.float32)
    which = rng.integers(0, k, n)
    x = centres[which] + rng.normal(scale=1.2, size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), which


def kept(x: np.ndarray, xy: np.ndarray, probe: np.ndarray, k: int = 10) -> float:
    import faiss
    from sklearn.neighbors import NearestNeighbors

    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    _, true = index.search(x[probe], k + 1)
    _, near = NearestNeighbors(n_neighbors=k + 1).fit(xy).kneighbors(xy[probe])
    return float(np.mean([len(set(t[1:]) & set(m[1:])) / k for t, m in zip(true, near)]))


def similar_speed(x: np.ndarray, queries: int = 200) -> dict[str, float]:
    """`pixelscope similar`'s search at this size: building the searcher (the load; exact up to
    issues.exact_index_max, a re-ranked IVF above, as the finders use) and the median query."""
    from pixelscope.config import IssuesConfig
    from pixelscope.neighbours import searcher

    cfg = IssuesConfig()
    t0 = time.perf_counter()
    search, used = searcher(x, cfg.exact_index_max, cfg.reduce_dim)
    load = time.perf_counter() - t0
    times = []
    for q in np.random.default_rng(2).choice(len(x), queries, replace=False):
        t0 = time.perf_counter()
        search(x[q:q + 1], 11)
        times.append(time.perf_counter() - t0)
    return {"similar_load_s": round(load, 2), "similar_query_ms": round(1000 * float(np.median(times)), 2),
            "similar_query_p95_ms": round(1000 * float(np.percentile(times, 95)), 2), "similar_index": used}


def main(argv: list[str]) -> None:
    from sklearn.manifold import trustworthiness

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "map.json")
    ap.add_argument("--similar-only", action="store_true", help="only the search timings")
    a = ap.parse_args(argv)
    rows = []
    for n in a.sizes:
        x, which = vectors(n)
        if a.similar_only:
            print(json.dumps({"images": n, **similar_speed(x)}), flush=True)
            continue
        rng = np.random.default_rng(1)
        probe = rng.choice(n, 1000, replace=False)
        t0 = time.perf_counter()
        pca = pca_map(x)
        t_pca = time.perf_counter() - t0
        t0 = time.perf_counter()
        umap_xy, method = project(x, "umap")
        t_umap = time.perf_counter() - t0
        size = min_cluster_size(n)
        t0 = time.perf_counter()
        found = clusters(umap_xy, size)
        t_hdb = time.perf_counter() - t0
        sub = rng.choice(n, 2000, replace=False)
        row = {"images": n, "fit_sample": min(n, FIT_SAMPLE), "pca_s": round(t_pca, 1), "umap_s": round(t_umap, 1),
               "hdbscan_s": round(t_hdb, 1), "map_and_clusters_s": round(t_umap + t_hdb, 1),
               "clusters": int(found.max()) + 1, "noise_share": round(float((found < 0).mean()), 3),
               "min_cluster_size": size, "mixture_directions": 200,
               "kept_umap": round(kept(x, umap_xy, probe), 3), "kept_pca": round(kept(x, pca, probe), 3),
               "trust_umap": round(float(trustworthiness(x[sub], umap_xy[sub], n_neighbors=10, metric="cosine")), 3),
               "trust_pca": round(float(trustworthiness(x[sub], pca[sub], n_neighbors=10, metric="cosine")), 3),
               "method": method, **similar_speed(x)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
                                 "cpus": len(__import__("os").sched_getaffinity(0)), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
