"""Exact duplicates (same bytes, or same decoded pixels) and near-duplicates (hash or embedding).

- Same bytes: rows with the same id (the content hash).
- Same pixels: candidates with the same size and pHash within 2 bits are decoded at full
  size and compared by a digest of their oriented RGB pixels, so a PNG re-save of a JPEG's
  pixels or a copy with its metadata stripped is caught without decoding every image twice.
- Near, fused rule (the default): candidate pairs come from the pHash (within
  issues.candidate_max_hamming bits) and the embedding kNN graph (cosine >= issues.candidate_min_cosine);
  each is scored by issues.near_duplicate_model — a logistic model of the Hamming distance, the
  cosine and the smaller image's size, fit on calibration sources by benchmarks/bench_duplicates.py —
  and kept at P >= issues.near_duplicate_min_probability. Size matters: a 32 x 32 image's hash and
  embedding say less than a photo's, so a fixed pair of cut-offs is either blind on photos or
  loose on tiny images. `near_duplicate_score` is that probability.
- Near, thresholds rule (and any pair where an image has no embedding): pHash Hamming <=
  issues.hash_max_distance or cosine >= issues.embedding_min_cosine; the signal that fired is reported.
- The hash is taken inside letterbox / pillarbox padding (features.ImageView.thumb32), and each
  image's mirrored pHash (phash_mirror) is a second query, so a padded or a left-right flipped
  copy is as near as a plain one.

Groups never chain: images are taken best first (issues.representative, where `-central` — near
more of the others — puts an original before its watermarked copy); each one not yet
grouped becomes a representative and takes its own ungrouped neighbours, so every member
is within the thresholds of its group's representative, never only of another member.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pixelscope.config import DuplicateModel, IngestConfig
from pixelscope.io.decode import ImageError, decode
from pixelscope.io.location import read_bytes
from pixelscope.io.url import Url
from pixelscope.issues.base import Dataset, Finding, finder
from pixelscope.issues.representative import preference
from pixelscope.neighbours import hamming, hamming_pairs, hash_bits, pair_cosines

PIXEL_CANDIDATE_BITS = 2  # pHash bits by which two decodes of the same pixels may differ at working size


def pixel_digest(path: Path | Url, width: int, height: int) -> str | None:
    """sha256 of the oriented RGB pixels at full size (None when the file cannot be decoded)."""
    try:
        d = decode(read_bytes(path), max(width, height), IngestConfig().max_image_pixels)
    except (OSError, ImageError):
        return None
    return hashlib.sha256(f"{d.rgb.shape}".encode() + d.rgb.tobytes()).hexdigest()


def _same_pixels(data: Dataset, ok: pd.DataFrame) -> dict[int, str]:
    """Row -> pixel digest, for rows whose pixels may equal another file's (different bytes)."""
    codes, have = hash_bits(ok["phash"].tolist())
    rows = ok.index.to_numpy()[have]
    i, j, _ = hamming_pairs(codes[have], PIXEL_CANDIDATE_BITS)
    a, b = ok.loc[rows[i]], ok.loc[rows[j]]
    same = (a["width"].to_numpy() == b["width"].to_numpy()) & (a["height"].to_numpy() == b["height"].to_numpy()) \
        & (a["id"].to_numpy() != b["id"].to_numpy())
    candidates = sorted(set(rows[i][same]) | set(rows[j][same]))
    digests = {}
    for r in candidates:
        digest = pixel_digest(data.raw / ok.at[r, "path"], int(ok.at[r, "width"]), int(ok.at[r, "height"]))
        if digest is not None:
            digests[int(r)] = digest
    return digests


@finder("exact_duplicate", _builtin=True)
def exact_duplicate(data: Dataset, found: dict[str, Finding]) -> Finding:
    """Rows with the same bytes (id) or the same decoded pixels."""
    frame = data.frame
    ok = frame[data.ok]
    ids, paths = frame["id"].to_numpy(dtype=object), frame["path"].to_numpy(dtype=object)
    digests = _same_pixels(data, ok) if data.raw is not None else {}
    key = pd.Series([digests.get(int(r), ids[r]) for r in ok.index], index=ok.index, dtype=object)
    members = key[key.map(key.value_counts()) > 1]
    rank = preference(frame, data.cfg.representative)  # by row position (the manifest's RangeIndex)
    units: dict[str, list[int]] = defaultdict(list)  # exact group key -> rows, best first
    for r in ok.index[np.argsort(rank[ok.index], kind="stable")]:
        units[key[r]].append(int(r))
    flagged = pd.Series(False, index=frame.index)
    flagged[members.index] = True
    pairs, reasons = [], {}
    for rows in (u for u in units.values() if len(u) > 1):
        by_id: dict[str, list[int]] = defaultdict(list)
        for r in rows:
            by_id[ids[r]].append(r)
        for same in by_id.values():  # the same bytes: each copy against the first (best) one
            for r in same[1:]:
                pairs.append(_pair(same[0], r, "exact_bytes"))
                reasons[r] = [f"same bytes as {paths[same[0]]}"]
        for same in by_id.values():  # the same pixels, other bytes: each file against the representative
            if same[0] != rows[0]:
                pairs.append(_pair(rows[0], same[0], "exact_pixels"))
                for r in same:
                    reasons[r] = [f"same pixels as {paths[rows[0]]}"]
        reasons[rows[0]] = [f"kept of {len(rows)} identical files (issues.representative)"]
    f = Finding("exact_duplicate", {"exact_duplicate": flagged, "exact_duplicate_score": flagged.astype(float)},
                reasons, pairs, {"flagged": int(flagged.sum()), "groups": int(sum(len(v) > 1 for v in units.values())),
                                 "pixel_checked": len(digests)})
    f.shared = {"units": list(units.values()), "rank": rank}
    return f


def _pair(a: int, b: int, kind: str) -> dict[str, Any]:
    return {"a": a, "b": b, "kind": kind, "signal": kind.split("_")[1], "distance": 0.0, "similarity": 1.0}


NO_HASH = 999  # Hamming "distance" of a pair where one image has no hash


class _UnitEvidence:
    """What a pair of units (exact-duplicate groups, each by its best file) is judged on: pHash codes
    (plain and mirrored), the longer side and the embedding row."""

    def __init__(self, data: Dataset, units: list[list[int]]):
        frame = data.frame
        reps = [u[0] for u in units]
        self.codes, self.have = hash_bits(frame["phash"].to_numpy(dtype=object)[reps].tolist())
        self.mirrored = self.codes.copy()  # no mirrored hash: the plain one again
        if "phash_mirror" in frame:
            mirrored, have_m = hash_bits(frame["phash_mirror"].to_numpy(dtype=object)[reps].tolist())
            self.mirrored[have_m] = mirrored[have_m]
        side = np.maximum(frame["width"].to_numpy(dtype=float)[reps], frame["height"].to_numpy(dtype=float)[reps])
        self.log_side = np.log2(np.maximum(np.nan_to_num(side, nan=8.0), 8.0))
        self.vectors: np.ndarray | None = None
        self.row = np.full(len(units), -1, np.int64)
        self.unit_of_row = np.empty(0, np.int64)
        if data.embeddings is not None:
            ids = frame["id"].to_numpy(dtype=object)
            unit_of_id = {ids[r]: u for u, members in enumerate(units) for r in members}
            self.unit_of_row = np.array([unit_of_id.get(i, -1) for i in data.embeddings.ids], dtype=np.int64)
            where = data.embeddings.index_of()
            self.row = np.array([where.get(ids[r], -1) for r in reps], dtype=np.int64)
            self.vectors = data.embeddings.vectors

    def hamming(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per pair: the smaller Hamming distance of plain and mirrored pHash (NO_HASH without one), and
        whether the mirrored one was smaller."""
        plain = hamming(self.codes[a], self.codes[b])
        flip = np.minimum(hamming(self.mirrored[a], self.codes[b]), hamming(self.codes[a], self.mirrored[b]))
        ok = self.have[a] & self.have[b]
        return np.where(ok, np.minimum(plain, flip), NO_HASH), ok & (flip < plain)

    def cosine(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Per pair: the embedding cosine (NaN where one has no embedding)."""
        out = np.full(len(a), np.nan)
        ok = (self.row[a] >= 0) & (self.row[b] >= 0)
        if self.vectors is not None and ok.any():
            out[ok] = pair_cosines(self.vectors, self.row[a[ok]], self.row[b[ok]])
        return out

    def probability(self, model: DuplicateModel, a: np.ndarray, b: np.ndarray, cosine: np.ndarray,
                    hams: np.ndarray | None = None) -> np.ndarray:
        """P(near-duplicate) of each pair under the fused model (issues.near_duplicate_model)."""
        h = (self.hamming(a, b)[0] if hams is None else hams).astype(float)
        h = np.minimum(h, 64) / 64  # no hash: as far as two hashes can be
        s = np.minimum(self.log_side[a], self.log_side[b])
        z = (model.intercept + model.hamming * h + model.cosine * cosine + model.log_side * s
             + model.hamming_log_side * h * s + model.cosine_log_side * cosine * s)
        return 1.0 / (1.0 + np.exp(-z))


@finder("near_duplicate", _builtin=True)
def near_duplicate(data: Dataset, found: dict[str, Finding]) -> Finding:
    """Groups of near-identical images (exact duplicates inside them count as one), non-chaining."""
    frame, cfg = data.frame, data.cfg
    exact = found.get("exact_duplicate") or exact_duplicate(data, found)
    units: list[list[int]] = exact.shared["units"]
    paths = frame["path"].to_numpy(dtype=object)
    reps = [u[0] for u in units]
    ev = _UnitEvidence(data, units)
    fused = cfg.near_duplicate_rule == "fused" and data.embeddings is not None
    hash_radius, cosine_floor = ((cfg.candidate_max_hamming, cfg.candidate_min_cosine) if fused
                                 else (cfg.hash_max_distance, cfg.embedding_min_cosine))
    candidates: list[tuple[np.ndarray, np.ndarray]] = []  # candidate unit pairs (a < b), from every search
    idx = np.flatnonzero(ev.have)
    for queries in (None, ev.mirrored[idx]):
        i, j, _ = hamming_pairs(ev.codes[idx], hash_radius, queries=queries)
        candidates.append((idx[i], idx[j]))
    index_used = "none (no embeddings)"
    if data.embeddings is not None:
        graph = data.graph()
        unit_of = ev.unit_of_row
        widen = None
        if fused:
            def widen(rows: np.ndarray, last: np.ndarray, sims: np.ndarray) -> np.ndarray:  # still a duplicate?
                a, b = unit_of[rows], np.where(last >= 0, unit_of[np.maximum(last, 0)], -1)
                ok = (a >= 0) & (b >= 0) & (sims >= cosine_floor)
                p = np.zeros(len(rows))
                p[ok] = ev.probability(cfg.near_duplicate_model, a[ok], b[ok], sims[ok])
                return p >= cfg.near_duplicate_min_probability
        i, j, _ = graph.pairs(cosine_floor, widen)
        ua, ub = unit_of[i], unit_of[j]
        keep = (ua >= 0) & (ub >= 0) & (ua != ub)
        candidates.append((np.minimum(ua, ub)[keep], np.maximum(ua, ub)[keep]))
        index_used = graph.index
    n_units = max(len(units), 1)
    key = np.unique(np.concatenate([np.asarray(x, np.int64) * n_units + np.asarray(y, np.int64) for x, y in candidates]))
    a, b = key // n_units, key % n_units  # each candidate pair once, sorted
    hams, mirrored = ev.hamming(a, b)
    cosines = ev.cosine(a, b)
    by_hash = hams <= cfg.hash_max_distance
    by_embedding = cosines >= cfg.embedding_min_cosine  # NaN (no embedding) compares False
    prob = np.full(len(a), np.nan)
    scorable = np.isfinite(cosines) & (hams <= 64) if fused else np.zeros(len(a), bool)
    prob[scorable] = ev.probability(cfg.near_duplicate_model, a[scorable], b[scorable], cosines[scorable], hams[scorable])
    near = np.where(scorable, prob >= cfg.near_duplicate_min_probability, by_hash | by_embedding)
    neighbours: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)  # unit -> unit -> evidence
    for k in np.flatnonzero(near).tolist():
        e: dict[str, Any] = {"signal": ("both" if by_hash[k] and by_embedding[k] else "hash" if by_hash[k] else
                                        "embedding" if by_embedding[k] else "fused")}
        if hams[k] <= 64:
            e.update(hamming=int(hams[k]), mirrored=bool(mirrored[k]))
        if np.isfinite(cosines[k]):
            e["cosine"] = float(cosines[k])
        e["score"] = float(prob[k]) if scorable[k] else max(e.get("cosine", 0.0), 1 - e.get("hamming", 64) / 64)
        if scorable[k]:
            e["probability"] = float(prob[k])
        neighbours[int(a[k])][int(b[k])] = neighbours[int(b[k])][int(a[k])] = e

    near_count = np.zeros(len(frame))  # per row: how many other units its unit is near (issues.representative -central)
    for u, members in enumerate(units):
        near_count[members] = len(neighbours.get(u, ()))
    rank = preference(frame, cfg.representative, {"central": lambda f: near_count})
    unit_rank = rank[reps] if reps else np.empty(0, np.int64)
    group_of: dict[int, int] = {}
    groups: list[list[int]] = []
    for u in np.argsort(unit_rank, kind="stable").tolist():
        if u in group_of:
            continue
        members = [u] + sorted((v for v in neighbours[u] if v not in group_of), key=lambda v: unit_rank[v])
        for v in members:
            group_of[v] = len(groups)
        groups.append(members)

    n = len(frame)
    flagged, score = np.zeros(n, bool), np.zeros(n)
    group = np.full(n, -1, np.int64)
    representative = np.zeros(n, bool)
    pairs, reasons = [], {}
    gid = 0
    for members in groups:
        rep = units[members[0]][0]
        representative[rep] = True
        rows = [r for v in members for r in units[v]]
        if len(rows) > 1:
            group[rows] = gid
            gid += 1
        for v in members[1:]:
            e = neighbours[members[0]][v]
            for r in units[v]:
                flagged[r] = True
                score[r] = max(score[r], e["score"])
                reasons[r] = [f"near-duplicate of {paths[rep]} ({_evidence(e)})"]
            pairs.append({"a": rep, "b": units[v][0], "kind": "near", "signal": e["signal"],
                          "distance": float(e["hamming"]) if "hamming" in e else np.nan,
                          "similarity": e.get("cosine", np.nan)})
        if len(members) > 1:
            flagged[rep] = True
            score[rep] = max(score[r] for v in members[1:] for r in units[v])
            reasons[rep] = [f"kept of a near-duplicate group of {len(rows)} (issues.representative)"]
    index = frame.index
    f = Finding("near_duplicate", {"near_duplicate": pd.Series(flagged, index=index),
                                   "near_duplicate_score": pd.Series(score, index=index),
                                   "duplicate_group": pd.Series(group, index=index, dtype="Int64").where(group >= 0),
                                   "representative": pd.Series(representative, index=index)},
                reasons, pairs, {"flagged": int(flagged.sum()), "groups": int(sum(len(g) > 1 for g in groups)),
                                 "pairs": {s: sum(p["signal"] == s for p in pairs)
                                           for s in ("hash", "embedding", "both", "fused")},
                                 "rule": ("fused" if fused else "thresholds" if cfg.near_duplicate_rule == "thresholds"
                                          else "thresholds (no embeddings to fuse)"),
                                 "candidates": len(a),
                                 "thresholds": {"hash_max_distance": cfg.hash_max_distance,
                                                "embedding_min_cosine": cfg.embedding_min_cosine,
                                                **({"candidate_max_hamming": cfg.candidate_max_hamming,
                                                    "candidate_min_cosine": cfg.candidate_min_cosine,
                                                    "min_probability": cfg.near_duplicate_min_probability,
                                                    "model": cfg.near_duplicate_model.model_dump()} if fused else {})},
                                 "index": index_used})
    return f


def _evidence(ev: dict[str, Any]) -> str:
    parts = [f"p {ev['probability']:.2f}"] if "probability" in ev else []
    if "hamming" in ev:
        parts.append(f"pHash {ev['hamming']} bits apart" + (" mirrored" if ev.get("mirrored") else ""))
    if "cosine" in ev:
        parts.append(f"embedding cosine {ev['cosine']:.3f}")
    return ", ".join(parts)
