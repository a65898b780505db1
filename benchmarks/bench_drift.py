"""Drift calibration and power: false alarms on same-distribution batches, detection of real shifts.

    python benchmarks/bench_drift.py [--pool 1600] [--batch 200] [--ref-sizes 200 1000]
                                     [--trials 30] [--null-trials 200] [--no-whylogs]

Images: the demo generator (random crops of six real photos shipped with scikit-image,
resized, exposure / colour jittered, JPEG 70-95), a pool of `--pool` images, and the
corpus's real RGB JPEG photos (../shared/corpus) as a second, genuinely real set.
Each shift is applied to the same pool images before their JPEG encoding, so a shifted
copy differs from its original by the shift alone.

Every trial draws a reference batch and a current batch of disjoint images, builds the two
profiles the way the pipeline does (manifest rows -> sketches, embedding vectors ->
embedding statistics) and runs `pixelscope.validate.drift.compare` with the project's drift params.
A trial is flagged when any row drifts. whylogs' default drift runs on the same batches
(peers/whylogs_drift.py, in its own venv). Per-row results go to .work/drift/rows.parquet
(for calibrating thresholds offline); the summary is appended to results/drift.jsonl.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from PIL import Image, ImageEnhance, ImageFilter  # noqa: E402

WORK = HERE / ".work" / "drift"
CORPUS = HERE.parent.parent / "shared" / "corpus"

# image shifts, applied before encoding: (image, jpeg quality) -> (image, jpeg quality)
SHIFTS = {
    "brightness x0.8": lambda im, q: (ImageEnhance.Brightness(im).enhance(0.8), q),
    "brightness x1.2": lambda im, q: (ImageEnhance.Brightness(im).enhance(1.2), q),
    "gaussian blur sigma=1.5": lambda im, q: (im.filter(ImageFilter.GaussianBlur(1.5)), q),
    "jpeg quality 30": lambda im, q: (im, 30),
    "downscale 50%": lambda im, q: (im.resize((im.width // 2, im.height // 2), Image.Resampling.LANCZOS), q),
    "grayscale": lambda im, q: (im.convert("L").convert("RGB"), q),  # 10 % / 20 % of a batch, see conditions
    "hue rotation 10deg": lambda im, q: (rotate_hue(im, 10), q),
}


def rotate_hue(im: Image.Image, degrees: float) -> Image.Image:
    """The hue of every pixel turned by `degrees` (HSV), saturation and value kept."""
    hsv = np.asarray(im.convert("RGB").convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(int) + round(degrees / 360 * 256)) % 256
    return Image.fromarray(hsv, "HSV").convert("RGB")


def folder_of(shift: str | None) -> str:
    return "base" if shift is None else shift.replace(" ", "_").replace("%", "pct").replace("=", "")


def _make(job: tuple[str, str, int, str | None]) -> None:
    from pixelscope.demo import synth_image

    path, label, seed, shift = job
    img, quality = synth_image(label, seed)
    if shift is not None:
        img, quality = SHIFTS[shift](img, quality)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    Path(path).write_bytes(buf.getvalue())


def build_pool(n: int) -> Path:
    """raw/<shift folder>/<label>/<label>_<i>.jpg for the base images and every shift."""
    from multiprocessing import get_context

    from pixelscope.demo import BASE_PHOTOS

    raw = WORK / "raw"
    done = WORK / f"pool-{n}.complete"
    if done.exists():
        return raw
    labels = list(BASE_PHOTOS)
    jobs = []
    for shift in [None, *SHIFTS]:
        for i in range(n):
            label = labels[i % len(labels)]
            path = raw / folder_of(shift) / label / f"{label}_{i:05d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            jobs.append((str(path), label, 1_000_000 + i, shift))
    print(f"writing {len(jobs):,} pool images ({n:,} x {1 + len(SHIFTS)} versions) to {raw} ...", flush=True)
    with get_context("fork").Pool(os.cpu_count() or 2) as pool:
        for _ in pool.imap_unordered(_make, jobs, chunksize=32):
            pass
    done.touch()
    return raw


def ingest_and_embed(project: Path, raw: Path):
    """The pipeline's own ingest and embed steps over a folder -> (manifest table, embedding store)."""
    import pyarrow.parquet as pq

    from pixelscope.config import Params, PathsConfig
    from pixelscope.embed.step import embed_step
    from pixelscope.ingest.step import ingest_step
    from pixelscope.io.store import current_store

    params = Params(paths=PathsConfig(raw=raw.resolve(), manifest=Path("manifest.parquet"),
                                      tensors=Path("tensors"), embeddings=Path("embeddings"), metrics=Path("metrics")))
    project.mkdir(parents=True, exist_ok=True)
    manifest = project / "manifest.parquet"
    if not manifest.exists() or manifest.stat().st_mtime < max(f.stat().st_mtime for f in [raw, *WORK.glob("*.complete")]):
        print(f"ingest {raw} ...", flush=True)
        ingest_step(params, project)
    print(f"embed {raw} (incremental) ...", flush=True)
    c = embed_step(params, project).counts
    print(f"  {c['images']:,} images: {c['computed']:,} embedded, {c['reused']:,} reused, {c['errors']} errors", flush=True)
    store = current_store(project / "embeddings")
    table = pq.read_table(manifest)
    return table, store


class Batches:
    """Profiles of any subset of the pool's manifest rows, built as the pipeline builds them."""

    def __init__(self, table, vectors: dict[str, np.ndarray], meta: dict, params, extra_kinds: dict[str, str]):
        import pyarrow as pa

        from pixelscope.io.manifest import column_kinds

        self.params = params
        # the pool's folders would tell the batches apart: one neutral source for every row
        self.table = table.set_column(table.schema.get_field_index("source"), "source",
                                      pa.array(["pool"] * table.num_rows))
        self.kinds = {**column_kinds(table.schema), **extra_kinds}
        self.ids = self.table.column("id").to_pylist()
        self.labels = self.table.column("label").to_pylist()
        self.vectors, self.meta = vectors, meta

    def profile(self, rows: np.ndarray):
        import pyarrow as pa

        from pixelscope.profile import Profile
        from pixelscope.profile.embedding import EmbeddingStats

        p = Profile.empty(self.kinds, self.params.profile)
        p.update(self.table.take(pa.array(rows, type=pa.int64())))
        ids = [self.ids[i] for i in rows]
        vectors = np.stack([self.vectors[i] for i in ids])
        labels = [self.labels[i] for i in rows]
        meta = self.meta
        p.embedding = EmbeddingStats.build(meta["model"], meta["key"], meta["row_shape"][0],
                                           lambda: [(np.array(ids), vectors, labels)],
                                           kll_k=self.params.profile.segment_kll_k,
                                           sample_size=self.params.embed.sample_size,
                                           max_labels=self.params.profile.max_segment_values)
        return p


def with_semantic(table, stores):
    """table + semantic_class / semantic_confidence of each row's id (from the stores' semantic.parquet)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from pixelscope.io.store import SEMANTIC
    from pixelscope.profile.outputs import SEMANTIC_KINDS

    sem = pa.concat_tables([pq.read_table(s.folder / SEMANTIC) for s in stores])
    at = pc.index_in(table.column("id").combine_chunks(), value_set=sem.column("id"))
    for name in SEMANTIC_KINDS:
        table = table.append_column(name, sem.column(name).combine_chunks().take(at))
    return table, dict(SEMANTIC_KINDS)


def conditions() -> list[tuple[str, str]]:
    """(name, kind): kind 'null' counts false alarms, 'shift' counts detections."""
    return ([("same distribution", "null"), ("corpus photos, random halves", "null")]
            + [(s, "shift") for s in SHIFTS if s != "grayscale"]
            + [("20% grayscale", "shift"), ("10% grayscale", "shift"), ("10% blurred", "shift"),
               ("10% jpeg quality 30", "shift"), ("one class doubled", "shift"),
               ("different source (corpus photos)", "shift")])


# a share of the current batch taken from a shifted version (subtle, single-feature shifts)
PARTIAL = {"20% grayscale": "grayscale", "10% grayscale": "grayscale", "10% blurred": "gaussian blur sigma=1.5",
           "10% jpeg quality 30": "jpeg quality 30"}


def draw(name: str, rng: np.random.Generator, pool: dict, ref_size: int, batch: int, trial: int):
    """Row indices (into the combined manifest) of one trial's reference and current batches."""
    n = pool["n"]
    if name == "corpus photos, random halves":
        c = rng.permutation(pool["corpus"])
        half = min(batch, len(c) // 2)
        return c[:half], c[half:2 * half]
    perm = rng.permutation(n)
    ref_i, rest = perm[:ref_size], perm[ref_size:]
    ref = pool["rows"][None][ref_i]
    if name == "same distribution":
        return ref, pool["rows"][None][rest[:batch]]
    if name in pool["rows"]:
        return ref, pool["rows"][name][rest[:batch]]
    if name in PARTIAL:
        k = round(int(name.split("%")[0]) / 100 * batch)
        return ref, np.concatenate([pool["rows"][PARTIAL[name]][rest[:k]], pool["rows"][None][rest[k:batch]]])
    if name == "one class doubled":
        labels = pool["labels"]
        doubled = labels[trial % len(labels)]
        w = np.array([2.0 if pool["label_of"][i] == doubled else 1.0 for i in rest])
        return ref, pool["rows"][None][rng.choice(rest, batch, replace=False, p=w / w.sum())]
    if name == "different source (corpus photos)":
        return ref, rng.choice(pool["corpus"], min(batch, len(pool["corpus"])), replace=False)
    raise ValueError(name)


def oracle(pool: dict, ref_rows: np.ndarray, cur_rows: np.ndarray, doubled: str, alpha: float) -> bool:
    """The oracle bound of a class-mix trial: one one-sided two-proportion test on the class
    known to have grown, at the same alpha, on the same two batches."""
    from scipy import stats

    label_of = pool["table_labels"]
    x1 = sum(label_of[i] == doubled for i in ref_rows)
    x2 = sum(label_of[i] == doubled for i in cur_rows)
    n1, n2 = len(ref_rows), len(cur_rows)
    pooled = (x1 + x2) / (n1 + n2)
    se = (pooled * (1 - pooled) * (1 / n1 + 1 / n2)) ** 0.5
    return bool(se > 0 and stats.norm.sf((x2 / n2 - x1 / n1) / se) < alpha)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=1600, help="demo images per version (reference + current draws)")
    ap.add_argument("--batch", type=int, default=200, help="current batch size")
    ap.add_argument("--ref-sizes", type=int, nargs="+", default=[200, 1000], help="reference batch sizes")
    ap.add_argument("--trials", type=int, default=30, help="trials per shift")
    ap.add_argument("--null-trials", type=int, default=200, help="trials per same-distribution condition")
    ap.add_argument("--params", default=str(HERE.parent / "params.yaml"), help="drift params to use")
    ap.add_argument("--no-whylogs", action="store_true")
    ap.add_argument("--no-semantic", action="store_true", help="leave out the semantic columns (as before issue 17)")
    ap.add_argument("--whylogs-python", help="python of a venv with whylogs[image,viz]==1.6.4 and pandas (default: make one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import pandas as pd
    import psutil
    import pyarrow as pa

    from pixelscope.config import load_params
    from pixelscope.demo import BASE_PHOTOS
    from pixelscope.validate.drift import compare

    params = load_params(args.params)
    if not CORPUS.is_dir():
        sys.exit(f"needs the corpus at {CORPUS}")
    if max(args.ref_sizes) + args.batch > args.pool:
        sys.exit("--pool must hold the largest reference batch plus a current batch")

    raw = build_pool(args.pool)
    pool_table, pool_store = ingest_and_embed(WORK / "pool", raw)
    corpus_table, corpus_store = ingest_and_embed(WORK / "corpus", CORPUS)
    if pool_store.meta["key"] != corpus_store.meta["key"]:
        sys.exit("pool and corpus embedded with different settings")

    # the corpus's real photos: readable RGB JPEGs, given labels drawn from the pool's classes
    # (a camera's images arrive labeled with the same classes; the label is not the giveaway)
    labels = list(BASE_PHOTOS)
    c = corpus_table.to_pydict()
    keep = [i for i in range(corpus_table.num_rows)
            if c["status"][i] == "ok" and c["format"][i] == "JPEG" and c["mode"][i] == "RGB"]
    corpus_table = corpus_table.take(pa.array(keep, type=pa.int64()))
    lab_rng = np.random.default_rng(12345)
    corpus_table = corpus_table.set_column(corpus_table.schema.get_field_index("label"), "label",
                                           pa.array([labels[j] for j in lab_rng.integers(0, len(labels), len(keep))]))
    corpus_table = corpus_table.cast(pool_table.schema)
    table = pa.concat_tables([pool_table, corpus_table])

    vectors = {}  # every image's embedding, from the two stores (~30 MB)
    for t, store in ((pool_table, pool_store), (corpus_table, corpus_store)):
        ids = [i for i, st in zip(t.column("id").to_pylist(), t.column("status").to_pylist()) if st == "ok"]
        vectors.update(zip(ids, store.get(ids)))

    extra_kinds = {}
    if not args.no_semantic:  # the embed step's top-1 ImageNet class + confidence, as the profile step joins them
        table, extra_kinds = with_semantic(table, [pool_store, corpus_store])
    batches = Batches(table, vectors, pool_store.meta, params, extra_kinds)
    paths = pool_table.column("path").to_pylist()
    idx = {p: i for i, p in enumerate(paths)}
    ok = pool_table.column("status").to_pylist()
    rows_by = {}
    for shift in [None, *SHIFTS]:
        names = [f"{folder_of(shift)}/{labels[i % len(labels)]}/{labels[i % len(labels)]}_{i:05d}.jpg"
                 for i in range(args.pool)]
        rows_by[shift] = np.array([idx[n] for n in names])
        bad = [n for n, r in zip(names, rows_by[shift]) if ok[r] != "ok"]
        if bad:
            sys.exit(f"pool images that did not ingest: {bad[:5]} ({len(bad)}); delete {WORK} and rerun")
    pool = {"n": args.pool, "rows": rows_by, "labels": labels,
            "label_of": [labels[i % len(labels)] for i in range(args.pool)],
            "corpus": np.arange(pool_table.num_rows, table.num_rows), "table_labels": table.column("label").to_pylist()}
    print(f"pool: {args.pool:,} images x {1 + len(SHIFTS)} versions; corpus photos: {len(keep)}", flush=True)

    rng = np.random.default_rng(args.seed)
    trials, all_rows = [], []
    for ref_size in args.ref_sizes:
        for name, kind in conditions():
            if name == "corpus photos, random halves" and ref_size != args.ref_sizes[0]:
                continue  # the corpus holds ~2 x 130 photos: one size only
            n_trials = args.null_trials if kind == "null" else args.trials
            for t in range(n_trials):
                ref_rows, cur_rows = draw(name, rng, pool, ref_size, args.batch, t)
                t0 = time.perf_counter()
                rows = compare(batches.profile(ref_rows), batches.profile(cur_rows), params.drift)
                seconds = time.perf_counter() - t0
                fired = [f"{r.feature}[{r.segment}].{r.test}" for r in rows if r.drift]
                trials.append({"condition": name, "kind": kind, "ref_size": len(ref_rows), "cur_size": len(cur_rows),
                               "trial": t, "flagged": bool(fired), "fired": fired, "seconds": seconds,
                               "ref": ref_rows.tolist(), "cur": cur_rows.tolist(),
                               "oracle": oracle(pool, ref_rows, cur_rows, labels[t % len(labels)], params.drift.alpha)
                               if name == "one class doubled" else None})
                all_rows += [{**r.to_dict(), "condition": name, "ref_size": len(ref_rows), "trial": t} for r in rows]
            done = [x for x in trials if x["condition"] == name and x["ref_size"] == len(ref_rows)]
            print(f"ref {ref_size:>4} | {name:<34} pixelscope flagged {sum(x['flagged'] for x in done)}/{len(done)}", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(all_rows).to_parquet(WORK / "rows.parquet")

    if not args.no_whylogs:
        from bench_profile import peer_python

        py = peer_python("whylogs", args.whylogs_python)
        roots = [raw] * pool_table.num_rows + [CORPUS] * corpus_table.num_rows
        files = [str(r / p) for r, p in zip(roots, table.column("path").to_pylist())]
        job = json.dumps({"files": files, "labels": table.column("label").to_pylist(),
                          "trials": [{"ref": x["ref"], "cur": x["cur"]} for x in trials]})
        job_file, out_file = WORK / "whylogs_job.json", WORK / "whylogs_out.json"
        if job_file.exists() and job_file.read_text() == job and out_file.exists():
            print("whylogs: same batches as the last run, reusing its results", flush=True)
        else:  # the batches depend on --seed, --pool and the trial counts only, not on drift params
            out_file.unlink(missing_ok=True)
            job_file.write_text(job)
            print(f"whylogs: features of {len(files):,} files and {len(trials)} comparisons ...", flush=True)
            subprocess.run([str(py), str(HERE / "peers" / "whylogs_drift.py"), str(job_file), str(out_file)], check=True)
        wl = json.loads(out_file.read_text())
        for x, w in zip(trials, wl["trials"]):
            x["whylogs_flagged"], x["whylogs_drifted"] = w["flagged"], w["drifted"]

    machine = f"{platform.node()} {platform.machine()}, {psutil.cpu_count()} cores"
    date = datetime.now(UTC).isoformat(timespec="seconds")
    summary = []
    for (name, ref_size), group in pd.DataFrame(trials).groupby(["condition", "ref_size"], sort=False):
        fired = Counter(f.split("[")[0] + "." + f.rsplit(".", 1)[1] for fs in group["fired"] for f in fs)
        s = {"condition": name, "kind": group["kind"].iloc[0], "ref_size": int(ref_size),
             "cur_size": int(group["cur_size"].iloc[0]), "trials": len(group),
             "pixelscope_flagged": int(group["flagged"].sum()),
             "pixelscope_top_tests": [f"{k} ({v})" for k, v in fired.most_common(3)],
             **({"oracle_flagged": int(group["oracle"].sum())} if group["oracle"].notna().any() else {}),
             "seconds_per_comparison": round(float(group["seconds"].mean()), 3)}
        if "whylogs_flagged" in group:
            wfired = Counter(c for cs in group["whylogs_drifted"] for c in cs)
            s.update(whylogs_flagged=int(group["whylogs_flagged"].sum()),
                     whylogs_top_columns=[f"{k} ({v})" for k, v in wfired.most_common(3)])
        s.update(drift_params=params.drift.model_dump(), pool=args.pool, machine=machine, date=date)
        summary.append(s)
    out = HERE / "results" / "drift.jsonl"
    with out.open("a") as f:
        for s in summary:
            f.write(json.dumps(s) + "\n")
    print("\n| reference | condition | trials | pixelscope flagged | whylogs flagged | oracle bound |\n"
          "|---|---|---|---|---|---|")
    def rate(s: dict, k: str) -> str:
        return f"{s[k]}/{s['trials']} ({100 * s[k] / s['trials']:.0f} %)" if k in s else "-"

    for s in summary:
        print(f"| {s['ref_size']} | {s['condition']} | {s['trials']} | {rate(s, 'pixelscope_flagged')} "
              f"| {rate(s, 'whylogs_flagged')} | {rate(s, 'oracle_flagged')} |")
    print(f"\nappended to {out}; per-row results in {WORK / 'rows.parquet'}")


if __name__ == "__main__":
    main()
