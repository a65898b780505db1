"""The bundle's compressed search index (pixelscope/compressed_index.py): size, speed, recall.

    taskset -c 0,1 python benchmarks/bench_compressed_index.py            # real crops + 100,000 synthetic

1. Real embeddings: 8 random crops (50-100 % of each side, half of them mirrored) of every
   readable photo in ../shared/corpus, embedded with the project's default model; 200 of them
   held out as queries. Recall@10 against the exact top 10 of the rest, for the index shipped
   (64-byte PQ: codes only, decoded cosine, refined by the exact vectors) and for the
   alternatives it was chosen over (PCA to 64 / 96 dimensions with 8-bit scalars, PQ at 80 bytes).
2. Scale: 100,000 synthetic unit vectors (bench_map.vectors: 200 directions in 1280-d with
   noise, a hard case for quantisation), in a real embedding store and a bundle-like folder:
   build time, index bytes per image, load time (CompressedIndex: index + manifest), median and
   p95 query time codes-only and refined through the store, recall@10 against exact search.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from bench_map import vectors  # noqa: E402

from pixelscope import compressed_index  # noqa: E402
from pixelscope.io.store import ShardStore  # noqa: E402

CORPUS = HERE.parent.parent / "shared" / "corpus"


def corpus_crops(per_image: int = 8) -> np.ndarray:
    import torch
    from PIL import Image, ImageOps

    from pixelscope.config import Params
    from pixelscope.embed.infer import Embedder
    from pixelscope.embed.transforms import build

    params = Params()
    prep = build(params.preprocess)
    embed = Embedder(params.embed, prep, "cpu")
    rng = random.Random(0)
    out, batch = [], []
    for f in sorted(p for p in CORPUS.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png")):
        try:
            im = ImageOps.exif_transpose(Image.open(f)).convert("RGB")
        except Exception:  # noqa: BLE001  # the corpus' broken files on purpose
            continue
        im.thumbnail((512, 512))
        if min(im.size) < 16:
            continue
        for v in range(per_image):
            w, h = im.size
            s = rng.uniform(0.5, 1.0)
            cw, ch = max(1, int(w * s)), max(1, int(h * s))
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            crop = im.crop((x, y, x + cw, y + ch))
            if rng.random() < 0.5:
                crop = ImageOps.mirror(crop)
            batch.append(prep.apply(torch.from_numpy(np.array(crop)).permute(2, 0, 1).contiguous(), v))
            if len(batch) == 64:
                out.append(embed(torch.stack(batch)))
                batch = []
    if batch:
        out.append(embed(torch.stack(batch)))
    x = np.concatenate(out).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class Rows:
    """A store stand-in for vectors already in memory (ids are row numbers as strings)."""

    def __init__(self, x: np.ndarray):
        self.x = x

    def get(self, ids: list[str]) -> np.ndarray:
        return self.x[[int(i) for i in ids]]


def recall(got: list[list[int]], true: np.ndarray) -> float:
    return float(np.mean([len(set(g[:10]) & set(t[:10])) / 10 for g, t in zip(got, true)]))


def bundle_like(folder: Path, x: np.ndarray, ids: list[str]) -> compressed_index.CompressedIndex:
    pq.write_table(pa.table({"id": ids, "status": ["ok"] * len(ids)}), folder / "manifest.parquet")
    compressed_index.write(folder / "search", ids, x, {"key": "bench"})
    return compressed_index.CompressedIndex(folder)


def real(x: np.ndarray) -> dict:
    rng = np.random.default_rng(1)
    held = rng.choice(len(x), 200, replace=False)
    keep = np.setdiff1d(np.arange(len(x)), held)
    base, queries = x[keep], x[held]
    flat = faiss.IndexFlatIP(base.shape[1])
    flat.add(base)
    _, true = flat.search(queries, 10)
    ids = [f"{i:08d}" for i in range(len(base))]
    row: dict = {"vectors": len(x), "queries": len(queries)}
    with tempfile.TemporaryDirectory() as tmp:
        index = bundle_like(Path(tmp), base, ids)
        _, codes = index.index.search(queries, 10)
        row["pq64_codes_recall10"] = round(recall(codes.tolist(), true), 3)
        row["pq64_decoded_recall10"] = round(recall([[int(i) for i in index.search(q, 10).ids] for q in queries], true), 3)
        row["pq64_refined_recall10"] = round(recall([[int(i) for i in index.search(q, 10, Rows(base)).ids]
                                                    for q in queries], true), 3)
    d = base.shape[1]
    for name, alt in (("pca64_sq8", faiss.IndexPreTransform(faiss.PCAMatrix(d, 64), faiss.IndexScalarQuantizer(
                          64, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT))),
                      ("pca96_sq8", faiss.IndexPreTransform(faiss.PCAMatrix(d, 96), faiss.IndexScalarQuantizer(
                          96, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT))),
                      ("pq80", faiss.IndexPQ(d, 80, 8, faiss.METRIC_INNER_PRODUCT))):
        alt.train(base)
        alt.add(base)
        row[f"{name}_recall10"] = round(recall(alt.search(queries, 10)[1].tolist(), true), 3)
    return row


def scale(n: int) -> dict:
    x, _ = vectors(n)
    ids = [f"{i:064x}" for i in range(n)]  # sorted, like the manifest's ids
    rng = np.random.default_rng(2)
    queries = x[rng.choice(n, 200, replace=False)] + rng.normal(scale=0.01, size=(200, x.shape[1])).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, true = flat.search(queries, 10)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = ShardStore.create(folder / "store", "bench", "float16", (x.shape[1],))
        for s in range(0, n, 4096):
            store.add(ids[s:s + 4096], x[s:s + 4096])
        t0 = time.perf_counter()
        bundle_like(folder, x, ids)
        built = time.perf_counter() - t0
        meta = json.loads((folder / "search" / "model.json").read_text())
        t0 = time.perf_counter()
        index = compressed_index.CompressedIndex(folder)
        loaded = time.perf_counter() - t0
        store = ShardStore.open(folder / "store", "bench")
        store.ids()  # the store's id index, built once (as `pixelscope similar` does on open)
        row = {"images": n, "build_s": round(built, 1), "index_bytes": meta["index_bytes"],
               "bytes_per_image": meta["bytes_per_image"], "load_s": round(loaded, 2), "index": meta["index"]}
        for name, st in (("codes", None), ("refined", store)):
            times, got = [], []
            for q in queries:
                t0 = time.perf_counter()
                found = index.search(q, 10, st)
                times.append(time.perf_counter() - t0)
                got.append([int(i, 16) for i in found.ids])
            row[f"{name}_query_ms"] = round(1000 * float(np.median(times)), 2)
            row[f"{name}_query_p95_ms"] = round(1000 * float(np.percentile(times, 95)), 2)
            row[f"{name}_recall10"] = round(recall(got, true), 3)
    return row


def main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    ap.add_argument("--out", type=Path, default=HERE / "results" / "compressed_index.json")
    a = ap.parse_args(argv)
    faiss.omp_set_num_threads(2)
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": platform.node(),
              "cpus": len(__import__("os").sched_getaffinity(0))}
    if CORPUS.is_dir():
        result["real"] = real(corpus_crops())
        print(json.dumps(result["real"]), flush=True)
    result["scale"] = []
    for n in a.sizes:
        result["scale"].append(scale(n))
        print(json.dumps(result["scale"][-1]), flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
