"""More like this: the dataset images nearest to one image, by embedding cosine.

The query is a dataset image (its id, an id prefix of 6+ characters, or its manifest path) —
its stored vector — or any image file, embedded by the project's own preprocess transforms and
model (the same code path as the embed step, so a byte copy of a dataset file finds that file
at cosine 1). The search is neighbours.searcher over the embedding store: exact up to
`issues.exact_index_max` vectors, the re-ranked IVF above it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from pixelscope.config import Params
from pixelscope.curate.review import MIN_PREFIX  # one rule for id prefixes, as `pixelscope decide --id`
from pixelscope.errors import BadInput, ConfigError, InputMissing
from pixelscope.io.decode import ImageError


@dataclass
class Query:
    vector: np.ndarray  # unit, float32
    id: str | None  # the dataset image asked about (None for an outside file)
    described: str  # what was asked, in words


def _frame(params: Params, project: Path) -> Any:
    paths = params.paths.under(project)
    if not paths.manifest.exists():
        raise InputMissing(f"manifest not found: {paths.manifest} (run `pixelscope ingest` first)")
    return pq.read_table(paths.manifest, columns=["id", "path", "label", "status"]).to_pandas()


def embed_file(params: Params, path: Path) -> np.ndarray:
    """One image file through the project's preprocess transforms and model -> a unit vector."""
    from pixelscope.embed.infer import Embedder
    from pixelscope.embed.loader import Item, cpu_image
    from pixelscope.embed.transforms import build

    prep = build(params.preprocess)
    image_id = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        tensor = cpu_image(Item(image_id, str(path)), prep)
    except ImageError as e:
        raise BadInput(f"{path}: cannot be read as an image ({e.reason}: {e.detail})") from None
    vector = Embedder(params.embed, prep, "cpu")(tensor[None])[0].astype(np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def query(params: Params, project: Path, image: str, ids: list[str], vectors: np.ndarray, frame: Any) -> Query:
    """A dataset image (id, id prefix, manifest path) or an image file."""
    row = {i: k for k, i in enumerate(ids)}
    by_path = dict(zip(frame["path"], frame["id"]))
    key = image.strip().lower()
    hits = sorted({i for i in ids if i.startswith(key)}) if len(key) >= MIN_PREFIX and all(
        c in "0123456789abcdef" for c in key) else []
    if len(hits) > 1:
        raise ConfigError(f"{image!r} is the start of {len(hits)} image ids: give more characters")
    if hits:
        return Query(vectors[row[hits[0]]].astype(np.float32), hits[0], f"image {hits[0][:12]}")
    if image in by_path:
        if by_path[image] not in row:
            raise InputMissing(f"{image} has no embedding (unreadable, or run `pixelscope embed`)")
        return Query(vectors[row[by_path[image]]].astype(np.float32), by_path[image], image)
    path = Path(image)
    if path.is_file():
        return Query(embed_file(params, path), None, f"file {path}")
    raise InputMissing(f"{image!r} is not an image id, a path in the manifest, or an image file")


def similar(params: Params, project: str | Path, image: str, k: int = 10) -> dict[str, Any]:
    """{"query", "index", "results": [{rank, id, path, label, similarity, copies}]}, best first."""
    from pixelscope.issues.base import load_embeddings
    from pixelscope.neighbours import searcher

    project = Path(project)
    frame = _frame(params, project)
    emb, why = load_embeddings(params, project, frame)
    if emb is None:
        raise InputMissing(f"similar: {why}")
    q = query(params, project, image, emb.ids, emb.vectors, frame)
    search, used = searcher(emb.vectors, params.issues.exact_index_max, params.issues.reduce_dim)
    sims, rows = search(q.vector[None], k)
    first = frame[frame["status"] == "ok"].drop_duplicates("id").set_index("id")
    copies = frame[frame["status"] == "ok"].groupby("id").size()
    results: list[dict[str, Any]] = []
    for s, r in zip(sims[0], rows[0]):
        if r < 0:
            continue
        i = emb.ids[int(r)]
        results.append({"rank": len(results) + 1, "id": i, "path": first.at[i, "path"],
                        "label": first.at[i, "label"] if isinstance(first.at[i, "label"], str) else None,
                        "similarity": round(float(min(s, 1.0)), 4), "copies": int(copies.get(i, 1))})
    return {"query": q.described, "index": used, "results": results}


__all__ = ["embed_file", "similar"]
