"""Near-duplicate precision / recall on real photos with known copies, and threshold calibration.

    python benchmarks/bench_duplicates.py            # build the set, calibrate, evaluate, append results

The set: photos from ../shared/corpus (hymenoptera ants/bees: many near-similar photos of one
kind, the hard negatives; exif-samples cameras: EXIF to strip) and, of each, eleven copies —
byte copy, JPEG re-encode q40, resize 50 %, centre crop 90 %, brightness x1.15, rotation 3°,
horizontal flip, a text watermark, letterbox padding to square, PNG re-save, EXIF stripped.
Two images are a true pair when they come from the same photo. The originals are split in
two halves: thresholds (issues.hash_max_distance, issues.embedding_min_cosine) are chosen on
the calibration half by running the real grouping over a grid (best pair F1 with precision
>= 0.95; near-ties within 0.002 F1 go to the strictest thresholds), then the real issues
step (its non-chaining groups) is scored on the held-out half.

Then the same copies of a source the thresholds never saw — `cifar` (32 x 32 CIFAR-10) —
through the real pipeline with the calibrated thresholds, scored per copy kind and per size
bucket (longer side <= 64 px, <= 256, larger), beside the peers on the same folder
(`--peers cleanvision` runs only the ones named). The corpus' graphics (Pillow's and
scikit-image's test images) cannot serve: Pillow's are mostly one picture ("hopper") in many
formats, so its originals are duplicates of each other and the pair truth would be wrong.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFont

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
WORK = HERE / ".work" / "duplicates"
CORPUS = HERE.parent.parent / "shared" / "corpus"
PEERS = {  # each in its own venv (benchmarks/.work/venv-<name>), made on first use
    "cleanvision": ["cleanvision==0.3.7"],
    "imagededup": ["imagededup==0.3.3.post2"],
    "fastdup": ["fastdup==2.54"],
}
TRANSFORMS = ("bytes", "jpeg_q40", "resize_50", "crop_90", "brightness_115", "rotate_3", "hflip", "watermark",
              "letterbox", "png", "exif_stripped")


def strip_exif(data: bytes) -> bytes:
    """The same JPEG stream without its APP1 (EXIF / XMP) segments: the pixels do not change."""
    if data[:2] != b"\xff\xd8":
        return data
    out, i = bytearray(data[:2]), 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDA:  # start of scan: the rest is image data
            break
        if marker != 0xE1:
            out += data[i:i + 2 + length]
        i += 2 + length
    return bytes(out + data[i:])


def make_copy(src: Path, kind: str, dst: Path) -> Path:
    data = src.read_bytes()
    if kind == "bytes":
        dst.write_bytes(data)
        return dst
    if kind == "exif_stripped":
        dst.write_bytes(strip_exif(data))
        return dst
    im = Image.open(src).convert("RGB")
    im.info.pop("transparency", None)  # a palette's transparent index means nothing in RGB
    w, h = im.size
    if kind == "jpeg_q40":
        im.save(dst, "JPEG", quality=40)
    elif kind == "resize_50":
        im.resize((max(1, w // 2), max(1, h // 2)), Image.LANCZOS).save(dst, "JPEG", quality=92)
    elif kind == "crop_90":
        dw, dh = int(w * 0.05), int(h * 0.05)
        im.crop((dw, dh, w - dw, h - dh)).save(dst, "JPEG", quality=92)
    elif kind == "brightness_115":
        ImageEnhance.Brightness(im).enhance(1.15).save(dst, "JPEG", quality=92)
    elif kind == "rotate_3":
        im.rotate(3, resample=Image.BICUBIC).save(dst, "JPEG", quality=92)
    elif kind == "hflip":
        im.transpose(Image.FLIP_LEFT_RIGHT).save(dst, "JPEG", quality=92)
    elif kind == "watermark":
        draw = ImageDraw.Draw(im)
        font = ImageFont.load_default(size=max(12, h // 12))
        draw.text((w // 20, h - h // 6), "(c) pixelscope 2026", fill=(255, 255, 255), font=font)
        im.save(dst, "JPEG", quality=92)
    elif kind == "letterbox":
        side = max(w, h)
        canvas = Image.new("RGB", (side, side))
        canvas.paste(im, ((side - w) // 2, (side - h) // 2))
        canvas.save(dst, "JPEG", quality=92)
    elif kind == "png":
        im.save(dst, "PNG")
    return dst


def originals() -> list[Path]:
    hym = sorted((CORPUS / "labeled" / "hymenoptera").rglob("*.jpg"))
    cams = sorted((CORPUS / "exif-samples" / "cameras").glob("*.jpg"))
    return hym + cams


def unseen(source: str) -> list[Path]:
    """Originals of a source the calibration never saw (readable as RGB, at least 8 px a side)."""
    folders = {"cifar": ["labeled/cifar10"]}[source]
    keep = []
    for p in sorted(f for d in folders for f in (CORPUS / d).rglob("*") if f.is_file()):
        try:
            with Image.open(p) as im:
                im.convert("RGB")
                if min(im.size) >= 8:
                    keep.append(p)
        except Exception:  # noqa: BLE001  # the corpus' broken and exotic files: not originals
            continue
    return keep


def build(root: Path, sources: list[Path] | None = None) -> dict[str, tuple[int, str]]:
    """root/<original index>/<kind>.<ext>; returns rel path -> (family, kind)."""
    truth = {}
    if root.exists():
        shutil.rmtree(root)
    for k, src in enumerate(originals() if sources is None else sources):
        folder = root / f"{k:04d}"
        folder.mkdir(parents=True)
        orig = folder / f"original{src.suffix.lower()}"
        shutil.copy(src, orig)
        truth[orig.relative_to(root).as_posix()] = (k, "original")
        for kind in TRANSFORMS:
            dst = make_copy(src, kind, folder / f"{kind}{'.png' if kind == 'png' else '.jpg'}")
            truth[dst.relative_to(root).as_posix()] = (k, kind)
    return truth


def pair_scores(pred: np.ndarray, true: np.ndarray) -> dict[str, float]:
    tp = int((pred & true).sum())
    fp = int((pred & ~true).sum())
    fn = int((~pred & true).sum())
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(2 * p * r / (p + r) if p + r else 0.0, 4),
            "tp": tp, "fp": fp, "fn": fn}


def run_peer(name: str, folder: Path) -> dict:
    """The peer's duplicate pairs over folder (its own process and venv, its defaults)."""
    env = {**os.environ, "SENTRY_OPT_OUT": "1"}  # fastdup: no telemetry
    from bench_profile import peer_python  # one way to make a peer's venv

    r = subprocess.run([str(peer_python(name, packages=PEERS[name])), str(HERE / "peers" / f"dups_{name}.py"), str(folder)],
                       capture_output=True, text=True, env=env, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed ({r.returncode}):\n{r.stderr[-3000:]}")
    return json.loads(next(line for line in reversed(r.stdout.splitlines()) if line.startswith('{"tool"')))


def pair_matrix(pairs: list, paths: list[str]) -> np.ndarray:
    """A peer's pair list as a symmetric bool matrix over the images at paths."""
    at = {p: k for k, p in enumerate(paths)}
    m = np.zeros((len(paths), len(paths)), bool)
    for a, b in pairs:
        if a in at and b in at:
            m[at[a], at[b]] = m[at[b], at[a]] = True
    return m


def by_transform(pred: np.ndarray, true: np.ndarray, hi: tuple, is_orig: np.ndarray, kind: np.ndarray) -> dict:
    """Recall of the (original, copy) pairs, per copy kind (pred, true: over the pairs hi)."""
    per = {}
    for k in TRANSFORMS:
        pick = ((is_orig[:, None] & (kind == k)[None, :]) | ((kind == k)[:, None] & is_orig[None, :]))[hi] & true
        per[k] = round(float(pred[pick].mean()), 4) if pick.any() else None
    return per


def score_pairs(pairs: list, paths: list[str], true: np.ndarray, hi: tuple, is_orig: np.ndarray, hkind: np.ndarray
                ) -> tuple[dict, dict]:
    """Pair precision / recall of a pair list over the images at paths, overall and per transform."""
    pred = pair_matrix(pairs, paths)[hi]
    return pair_scores(pred, true), by_transform(pred, true, hi, is_orig, hkind)


def run_steps(p, truth: dict[str, tuple[int, str]]) -> tuple:
    """ingest, embed and issues under params p; the readable rows' issues table, families and kinds, seconds."""
    import pyarrow.parquet as pq

    from pixelscope.embed.step import embed_step
    from pixelscope.ingest.step import ingest_step
    from pixelscope.issues.step import issues_step

    t0 = time.perf_counter()
    ingest_step(p, ".")
    embed_step(p, ".")
    issues_step(p, ".")
    seconds = time.perf_counter() - t0
    t = pq.read_table(p.paths.issues).to_pandas()
    t = t[t["status"] == "ok"].reset_index(drop=True)
    return t, np.array([truth[x][0] for x in t["path"]]), np.array([truth[x][1] for x in t["path"]]), seconds


def grouped(t) -> np.ndarray:
    """Pairs (upper triangle) the issues step put in one duplicate group."""
    group = t["duplicate_group"].to_numpy(dtype=float)
    return ((group[:, None] == group[None, :]) & ~np.isnan(group)[:, None])[np.triu_indices(len(t), 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--min-precision", type=float, default=0.95)
    ap.add_argument("--no-peers", action="store_true", help="skip cleanvision / imagededup / fastdup")
    ap.add_argument("--peers", nargs="+", choices=list(PEERS), help="only these peers")
    args = ap.parse_args()
    peer_names = [] if args.no_peers else (args.peers or list(PEERS))

    from pixelscope.config import parse_params
    from pixelscope.embed.step import embed_step
    from pixelscope.ingest.step import ingest_step
    from pixelscope.issues.step import load_dataset
    from pixelscope.neighbours import hash_bits

    t0 = time.perf_counter()
    raw = WORK / "raw"
    truth = build(raw)
    params = parse_params({"paths": {"raw": str(raw), "manifest": str(WORK / "manifest.parquet"),
                                     "tensors": str(WORK / "tensors"), "embeddings": str(WORK / "embeddings"),
                                     "issues": str(WORK / "issues.parquet"),
                                     "issue_pairs": str(WORK / "pairs.parquet"),
                                     "issues_summary": str(WORK / "issues.json"), "metrics": str(WORK / "metrics")}})
    ingest_step(params, ".")
    embed_step(params, ".")
    data, _ = load_dataset(params, ".")
    frame = data.frame[data.frame["status"] == "ok"].reset_index(drop=True)
    fam = np.array([truth[p][0] for p in frame["path"]])
    kind = np.array([truth[p][1] for p in frame["path"]])
    codes, _ = hash_bits(frame["phash"].tolist())
    bits = np.unpackbits(codes, axis=1).astype(np.int16)
    hamming = bits.shape[1] - (bits @ bits.T + (1 - bits) @ (1 - bits).T)
    where = data.embeddings.index_of()
    vec = data.embeddings.vectors[[where[i] for i in frame["id"]]]
    cosine = vec @ vec.T
    iu = np.triu_indices(len(frame), 1)
    same = (fam[:, None] == fam[None, :])[iu]
    calib = ((fam % 2 == 0)[:, None] & (fam % 2 == 0)[None, :])[iu]
    ham, cos = hamming[iu], cosine[iu]

    # calibration half: run the real grouping (non-chaining, representative first) for every pair of
    # thresholds; keep the best pair F1 among those with precision >= min_precision
    from pixelscope.config import IssuesConfig
    from pixelscope.issues import Dataset, Embeddings
    from pixelscope.issues.duplicates import near_duplicate

    cal = frame[fam % 2 == 0].reset_index(drop=True)
    cal_fam = fam[fam % 2 == 0]
    cal_ids = sorted(set(cal["id"]))
    cal_emb = Embeddings(cal_ids, data.embeddings.vectors[[where[i] for i in cal_ids]], "calibration")
    ci = np.triu_indices(len(cal), 1)
    cal_true = (cal_fam[:, None] == cal_fam[None, :])[ci]
    grid = []
    for h in (0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 24):
        for c in (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98):
            cfg = IssuesConfig(hash_max_distance=h, embedding_min_cosine=c)
            g = near_duplicate(Dataset(cal, cfg, cal_emb), {}).columns["duplicate_group"].to_numpy(dtype=float)
            pred = ((g[:, None] == g[None, :]) & ~np.isnan(g)[:, None])[ci]
            grid.append({"hash_max_distance": h, "embedding_min_cosine": c, **pair_scores(pred, cal_true)})
    ok = [g for g in grid if g["precision"] >= args.min_precision] or grid
    top = max(g["f1"] for g in ok)
    # near-ties (within 0.002 F1) go to the strictest thresholds: they transfer better to other data
    best = min((g for g in ok if g["f1"] >= top - 0.002), key=lambda g: (g["hash_max_distance"], -g["embedding_min_cosine"]))
    print(f"calibration half (groups): hash <= {best['hash_max_distance']}, cosine >= {best['embedding_min_cosine']}: "
          f"P {best['precision']}, R {best['recall']}, F1 {best['f1']}")
    for g in sorted(grid, key=lambda g: -g["f1"])[:5]:
        print(f"  {g}")
    signals = {}
    is_orig = kind == "original"
    for signal, pred in (("hash", ham <= best["hash_max_distance"]), ("embedding", cos >= best["embedding_min_cosine"])):
        print(f"  {signal} alone: {pair_scores(pred[calib], same[calib])}")
        signals[signal] = {}
        for k in TRANSFORMS:  # which signal catches which copy, on the calibration half
            pick = ((is_orig[:, None] & (kind == k)[None, :]) | ((kind == k)[:, None] & is_orig[None, :]))[iu]
            pick &= same & calib
            signals[signal][k] = round(float(pred[pick].mean()), 3)
        print("    recall by transform: " + ", ".join(f"{k} {v}" for k, v in signals[signal].items()))

    # held-out half: the real issues step with those thresholds (non-chaining groups)
    held = WORK / "held-out"
    if held.exists():
        shutil.rmtree(held)
    for f in sorted(raw.iterdir()):
        if int(f.name) % 2 == 1:
            shutil.copytree(f, held / f.name)
    hp = parse_params({**params.model_dump(mode="json"),
                       "issues": {"hash_max_distance": best["hash_max_distance"],
                                  "embedding_min_cosine": best["embedding_min_cosine"]}})
    hp.paths.raw, hp.paths.manifest = held, WORK / "held-manifest.parquet"
    t, hfam, hkind, t_step = run_steps(hp, truth)
    hi = np.triu_indices(len(t), 1)
    pred = grouped(t)
    true = (hfam[:, None] == hfam[None, :])[hi]
    overall = pair_scores(pred, true)
    is_orig = hkind == "original"
    per = by_transform(pred, true, hi, is_orig, hkind)
    print(f"held-out half, issues step groups: {overall}")
    print("recall of (original, copy) pairs by transform: " + ", ".join(f"{k} {v}" for k, v in per.items()))
    peers = {"pixelscope": {"setting": "issues step, calibrated defaults (groups)", "seconds": round(t_step, 1),
                            **overall, "recall_by_transform": per}}
    for name in peer_names:  # the same held-out folder, each peer's defaults
        out = run_peer(name, held)
        for form in ("pairs", "components"):
            if form in out:
                scores, by = score_pairs(out[form], list(t["path"]), true, hi, is_orig, hkind)
                label = name if form == "pairs" else f"{name} (connected components)"
                peers[label] = {"setting": out["setting"] if form == "pairs" else "its connected components",
                                "seconds": round(out["seconds"], 1), **scores, "recall_by_transform": by}
                print(f"{label}: {scores}")
    row = {"date": datetime.now(UTC).isoformat(timespec="seconds"), "machine": f"{platform.node()} {platform.machine()}",
           "originals": int(fam.max() + 1), "images": int(len(frame)), "min_precision": args.min_precision,
           "calibrated": best, "calibration_recall_by_signal": signals, "held_out": overall, "held_out_recall_by_transform": per,
           "held_out_side_by_side": peers,
           "unseen_sources": {s: unseen_source(s, hp, peer_names) for s in ("cifar",)},
           "seconds": round(time.perf_counter() - t0, 1)}
    out = HERE / "results" / "duplicates.jsonl"
    with out.open("a") as fh:
        fh.write(json.dumps(row) + "\n")
    print(f"appended to {out}")
    write_table(row)


def unseen_source(source: str, hp, peer_names: list[str]) -> dict:
    """The copies of a source the thresholds never saw, through ingest, embed and issues with the calibrated
    thresholds; pair scores per copy kind and per size bucket (of the original), beside the peers."""
    import pyarrow.parquet as pq

    root = WORK / f"unseen-{source}"
    truth = build(root, unseen(source))
    p = hp.model_copy(deep=True)
    p.paths.raw, p.paths.manifest = root, WORK / f"unseen-{source}.parquet"
    t, fam, kind, t_step = run_steps(p, truth)
    size = pq.read_table(p.paths.manifest, columns=["path", "width", "height"]).to_pandas().set_index("path")
    side = np.maximum(size.loc[t["path"], "width"], size.loc[t["path"], "height"]).to_numpy()
    orig_side = {f: s for f, k, s in zip(fam, kind, side) if k == "original"}
    bucket = np.array(["<=64" if orig_side.get(f, 0) <= 64 else "<=256" if orig_side.get(f, 0) <= 256 else ">256"
                       for f in fam])
    hi = np.triu_indices(len(t), 1)
    true = (fam[:, None] == fam[None, :])[hi]
    is_orig = kind == "original"

    def scored(pred: np.ndarray, seconds: float, setting: str) -> dict:
        by_size = {}
        for b in ("<=64", "<=256", ">256"):
            inside = ((bucket == b)[:, None] & (bucket == b)[None, :])[hi]
            if (true & inside).any():
                by_size[b] = pair_scores(pred[inside], true[inside])
        return {"setting": setting, "seconds": round(seconds, 1), **pair_scores(pred, true),
                "recall_by_transform": by_transform(pred, true, hi, is_orig, kind), "by_size": by_size}

    out = {"originals": int(is_orig.sum()), "images": len(t),
           "tools": {"pixelscope": scored(grouped(t), t_step, "issues step, calibrated defaults (groups)")}}
    print(f"unseen {source}: {json.dumps(out['tools']['pixelscope'])}", flush=True)
    for name in peer_names:
        res = run_peer(name, root)
        for form in ("pairs", "components"):
            if form in res:
                pred = pair_matrix(res[form], list(t["path"]))[hi]
                label = name if form == "pairs" else f"{name} (connected components)"
                out["tools"][label] = scored(pred, res["seconds"], res["setting"] if form == "pairs" else
                                             "its connected components")
                print(f"unseen {source}, {label}: {pair_scores(pred, true)}", flush=True)
    return out


def write_table(row: dict) -> None:
    """The side-by-side table, appended to BENCHMARKS.md."""
    tools = row["held_out_side_by_side"]
    head = "| tool (setting) | P | R | F1 | s | " + " | ".join(TRANSFORMS) + " |"
    lines = [f"\n### Near-duplicates side by side — {row['date'][:10]}, {row['machine']}\n",
             f"`python benchmarks/bench_duplicates.py`: held-out half ({row['held_out']['tp'] + row['held_out']['fn']:,} "
             f"true pairs), pair precision / recall, and recall of (original, copy) pairs per transform; "
             f"each peer in its own venv with its defaults. Seconds: pixelscope = ingest + embed + issues on 2 cores "
             f"(embed reuses the calibration pass's stored embeddings); peers = their whole run.\n",
             head, "|" + "---|" * (5 + len(TRANSFORMS))]
    for name, r in tools.items():
        by = r["recall_by_transform"]
        lines.append(f"| {name} ({r['setting']}) | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                     f"{r['seconds']} | " + " | ".join(f"{by[k]:.2f}" for k in TRANSFORMS) + " |")
    ours = tools["pixelscope"]["recall_by_transform"]
    beaten = {k: [n for n, r in tools.items() if n != "pixelscope" and r["recall_by_transform"][k] > ours[k]]
              for k in TRANSFORMS}
    behind = {k: v for k, v in beaten.items() if v}
    lines.append("\nTransforms where a peer's recall is above pixelscope's: "
                 + (", ".join(f"{k} ({', '.join(v)})" for k, v in behind.items()) if behind else "none") + ".\n")
    for source, u in row.get("unseen_sources", {}).items():
        lines += [f"\nSources the thresholds never saw — **{source}** ({u['originals']} originals, {u['images']} images; "
                  "by size: pair P / R within each size bucket of the original):\n", head + " by size |",
                  "|" + "---|" * (6 + len(TRANSFORMS))]
        for name, r in u["tools"].items():
            by = r["recall_by_transform"]
            sizes = "; ".join(f"{b}: {s['precision']:.2f} / {s['recall']:.2f}" for b, s in r["by_size"].items())
            lines.append(f"| {name} ({r['setting']}) | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                         f"{r['seconds']} | " + " | ".join("–" if by[k] is None else f"{by[k]:.2f}" for k in TRANSFORMS)
                         + f" | {sizes} |")
    with open(HERE.parent / "BENCHMARKS.md", "a") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    main()
