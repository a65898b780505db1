"""Exact duplicates (same bytes, or same decoded pixels) and near-duplicates (hash or embedding).

- Same bytes: rows with the same id (the content hash).
- Same pixels: candidates with the same size and pHash within 2 bits are decoded at full
  size and compared by a digest of their oriented RGB pixels, so a PNG re-save of a JPEG's
  pixels or a copy with its metadata stripped is caught without decoding every image twice.
- Near: a pair fires on perceptual hash (pHash Hamming <= issues.hash_max_distance) or on
  embedding cosine (>= issues.embedding_min_cosine); the signal that fired is reported. The
  hash is taken inside letterbox / pillarbox padding (features.ImageView.thumb32), and each
  image's mirrored pHash (phash_mirror) is a second query, so a padded or a left-right flipped
  copy is as near as a plain one.

Groups never chain: images are taken best first (issues.representative); each one not yet
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

from pixelscope.config import IngestConfig
from pixelscope.io.decode import ImageError, decode
from pixelscope.issues.base import Dataset, Finding, finder
from pixelscope.issues.representative import preference
from pixelscope.neighbours import hamming_pairs, hash_bits

PIXEL_CANDIDATE_BITS = 2  # pHash bits by which two decodes of the same pixels may differ at working size


def pixel_digest(path: Path, width: int, height: int) -> str | None:
    """sha256 of the oriented RGB pixels at full size (None when the file cannot be decoded)."""
    try:
        d = decode(path.read_bytes(), max(width, height), IngestConfig().max_image_pixels)
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
        digest = pixel_digest(Path(data.raw) / ok.at[r, "path"], int(ok.at[r, "width"]), int(ok.at[r, "height"]))
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


@finder("near_duplicate", _builtin=True)
def near_duplicate(data: Dataset, found: dict[str, Finding]) -> Finding:
    """Groups of near-identical images (exact duplicates inside them count as one), non-chaining."""
    frame, cfg = data.frame, data.cfg
    exact = found.get("exact_duplicate") or exact_duplicate(data, found)
    units: list[list[int]] = exact.shared["units"]
    rank = exact.shared["rank"]
    ids, paths = frame["id"].to_numpy(dtype=object), frame["path"].to_numpy(dtype=object)
    reps = [u[0] for u in units]
    codes, have = hash_bits(frame["phash"].to_numpy(dtype=object)[reps].tolist())
    neighbours: dict[int, dict[int, dict[str, Any]]] = defaultdict(dict)  # unit -> unit -> evidence

    idx = np.flatnonzero(have)
    i, j, dist = hamming_pairs(codes[have], cfg.hash_max_distance)
    for a, b, d in zip(idx[i], idx[j], dist):
        for x, y in ((a, b), (b, a)):
            neighbours[int(x)][int(y)] = {"hamming": int(d)}
    if "phash_mirror" in frame:
        mirrored, have_m = hash_bits(frame["phash_mirror"].to_numpy(dtype=object)[reps].tolist())
        both = np.flatnonzero(have & have_m)
        i, j, dist = hamming_pairs(codes[both], cfg.hash_max_distance, queries=mirrored[both])
        for a, b, d in zip(both[i], both[j], dist):
            for x, y in ((a, b), (b, a)):
                ev = neighbours[int(x)].setdefault(int(y), {})
                if d < ev.get("hamming", 65):
                    ev.update(hamming=int(d), mirrored=True)
    index_used = "none (no embeddings)"
    if data.embeddings is not None:
        unit_of_id = {ids[r]: u for u, members in enumerate(units) for r in members}
        unit_of = np.array([unit_of_id.get(i, -1) for i in data.embeddings.ids], dtype=np.int64)
        graph = data.graph()
        i, j, sim = graph.pairs(cfg.embedding_min_cosine)
        ua, ub = unit_of[i], unit_of[j]
        keep = (ua >= 0) & (ub >= 0) & (ua != ub)
        for a, b, s in zip(ua[keep], ub[keep], sim[keep]):
            for x, y in ((a, b), (b, a)):
                ev = neighbours[int(x)].setdefault(int(y), {})
                ev["cosine"] = max(float(s), ev.get("cosine", -1.0))
        index_used = graph.index

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
            ev = neighbours[members[0]][v]
            signal = "both" if "hamming" in ev and "cosine" in ev else ("hash" if "hamming" in ev else "embedding")
            sim = max(ev.get("cosine", 0.0), 1 - ev.get("hamming", 64) / 64)
            for r in units[v]:
                flagged[r] = True
                score[r] = max(score[r], sim)
                reasons[r] = [f"near-duplicate of {paths[rep]} ({_evidence(ev)})"]
            pairs.append({"a": rep, "b": units[v][0], "kind": "near", "signal": signal,
                          "distance": float(ev["hamming"]) if "hamming" in ev else np.nan,
                          "similarity": ev.get("cosine", np.nan)})
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
                                 "pairs": {s: sum(p["signal"] == s for p in pairs) for s in ("hash", "embedding", "both")},
                                 "thresholds": {"hash_max_distance": cfg.hash_max_distance,
                                                "embedding_min_cosine": cfg.embedding_min_cosine},
                                 "index": index_used})
    return f


def _evidence(ev: dict[str, Any]) -> str:
    parts = []
    if "hamming" in ev:
        parts.append(f"pHash {ev['hamming']} bits apart" + (" mirrored" if ev.get("mirrored") else ""))
    if "cosine" in ev:
        parts.append(f"embedding cosine {ev['cosine']:.3f}")
    return ", ".join(parts)
