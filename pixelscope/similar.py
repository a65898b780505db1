"""More like this: the dataset images nearest to one image, by embedding cosine.

The query is a dataset image (its id, an id prefix of 6+ characters, or its manifest path) —
its stored vector — or any image file, embedded by the project's own preprocess transforms and
model (the same code path as the embed step, so a byte copy of a dataset file finds that file
at cosine 1). Two places to search:

- the project's embedding store (default): neighbours.searcher, exact up to
  `issues.exact_index_max` vectors, the re-ranked IVF above it;
- a bundle's compressed index (`bundle=`, pixelscope/compressed_index.py): 64 bytes per image,
  candidates re-ranked by the exact vectors when the project's store (the same model key) is at
  hand, else by their decoded vectors, said so. A query file is embedded with the settings the
  bundle recorded (they made its vectors), and only by a model that gives the same store key;
  settings that name plugins are taken from the project's params file only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from pixelscope.config import Params, parse_params
from pixelscope.curate.review import MIN_PREFIX  # one rule for id prefixes, as `pixelscope decide --id`
from pixelscope.errors import BadInput, ConfigError, InputMissing
from pixelscope.io.decode import ImageError


@dataclass
class Query:
    vector: np.ndarray  # unit, float32
    id: str | None  # the dataset image asked about (None for an outside file)
    described: str  # what was asked, in words


def _frame(manifest: Path, made_by: str) -> pd.DataFrame:
    if not manifest.exists():
        raise InputMissing(f"manifest not found: {manifest} ({made_by})")
    return pq.read_table(manifest, columns=["id", "path", "label", "status"]).to_pandas()


def embed_file(params: Params, path: Path, key: str | None = None) -> np.ndarray:
    """One image file through the project's preprocess transforms and model -> a unit vector; with
    key, the model and transforms must give that store key (the vectors searched were made so)."""
    from pixelscope.embed.infer import Embedder
    from pixelscope.embed.loader import Item, cpu_image
    from pixelscope.embed.transforms import build

    prep = build(params.preprocess)
    image_id = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        tensor = cpu_image(Item(image_id, str(path)), prep)
    except ImageError as e:
        raise BadInput(f"{path}: cannot be read as an image ({e.reason}: {e.detail})") from None
    embedder = Embedder(params.embed, prep, "cpu")
    if key is not None and embedder.key != key:
        raise BadInput(f"the index was made by store key {key}; {params.embed.model} with these transforms "
                       f"gives {embedder.key} (other weights or preprocessing): republish, or search the project")
    vector = embedder(tensor[None])[0].astype(np.float32)
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def query(image: str, ids: list[str], vector_of: Callable[[str], np.ndarray], frame: pd.DataFrame,
          embed: Callable[[Path], np.ndarray]) -> Query:
    """A dataset image (id, id prefix, manifest path) or an image file."""
    known = set(ids)
    by_path = dict(zip(frame["path"], frame["id"]))
    key = image.strip().lower()
    hits = sorted({i for i in ids if i.startswith(key)}) if len(key) >= MIN_PREFIX and all(
        c in "0123456789abcdef" for c in key) else []
    if len(hits) > 1:
        raise ConfigError(f"{image!r} is the start of {len(hits)} image ids: give more characters")
    if hits:
        return Query(vector_of(hits[0]), hits[0], f"image {hits[0][:12]}")
    if image in by_path:
        if by_path[image] not in known:
            raise InputMissing(f"{image} has no embedding (unreadable, or run `pixelscope embed`)")
        return Query(vector_of(by_path[image]), by_path[image], image)
    path = Path(image)
    if path.is_file():
        return Query(embed(path), None, f"file {path}")
    raise InputMissing(f"{image!r} is not an image id, a path in the manifest, or an image file")


def _results(frame: pd.DataFrame, found: list[tuple[str, float]]) -> list[dict[str, Any]]:
    ok = frame[frame["status"] == "ok"]
    first = ok.drop_duplicates("id").set_index("id")
    copies = ok.groupby("id").size()
    return [{"rank": rank, "id": i, "path": first.at[i, "path"],
             "label": first.at[i, "label"] if isinstance(first.at[i, "label"], str) else None,
             "similarity": round(float(min(s, 1.0)), 4), "copies": int(copies.get(i, 1))}
            for rank, (i, s) in enumerate(found, 1)]


def similar(params: Params | None, project: str | Path, image: str, k: int = 10,
            bundle: str | Path | None = None) -> dict[str, Any]:
    """{"query", "index", "results": [{rank, id, path, label, similarity, copies}]}, best first."""
    if bundle is not None:
        return similar_in_bundle(params, Path(project), image, k, Path(bundle))
    from pixelscope.issues.base import load_embeddings
    from pixelscope.neighbours import searcher

    if params is None:
        raise InputMissing("similar: no params.yaml (give --bundle to search a bundle without its project)")
    project = Path(project)
    frame = _frame(params.paths.under(project).manifest, "run `pixelscope ingest` first")
    emb, why = load_embeddings(params, project, frame)
    if emb is None:
        raise InputMissing(f"similar: {why}")
    row = {i: r for r, i in enumerate(emb.ids)}
    q = query(image, emb.ids, lambda i: emb.vectors[row[i]].astype(np.float32), frame,
              lambda path: embed_file(params, path))
    search, used = searcher(emb.vectors, params.issues.exact_index_max, params.issues.reduce_dim)
    sims, rows = search(q.vector[None], k)
    found = [(emb.ids[int(r)], float(s)) for s, r in zip(sims[0], rows[0]) if r >= 0]
    return {"query": q.described, "index": used, "results": _results(frame, found)}


def similar_in_bundle(params: Params | None, project: Path, image: str, k: int, bundle: Path) -> dict[str, Any]:
    """The search through a bundle's compressed index (refined by the project's store when it has the key)."""
    from pixelscope.compressed_index import CompressedIndex
    from pixelscope.io.store import current_store

    index = CompressedIndex(bundle)
    frame = _frame(bundle / "manifest.parquet", "republish the bundle")
    key = index.model.get("key")
    store = current_store((params or Params()).paths.under(project).embeddings)
    if store is not None and (store.meta.get("key") != key or not set(index.ids) <= store.ids()):
        store = None  # another model's vectors, or not all of them: the codes alone
    settings = bundle_settings(index.model, bundle, params)

    def vector_of(i: str) -> np.ndarray:
        if store is None:
            return index.vector(i)
        v = store.get([i])[0].astype(np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    q = query(image, index.ids, vector_of, frame, lambda path: embed_file(settings, path, key))
    found = index.search(q.vector, k, store)
    return {"query": q.described, "index": found.how, "results": _results(frame, list(zip(found.ids, found.similarities)))}


def bundle_settings(model: dict[str, Any], bundle: Path, params: Params | None) -> Params:
    """The embed and preprocess settings a bundle recorded, to embed a query file. Settings that name
    plugins are the project's own params or nothing: a bundle must not choose code to import."""
    settings = parse_params({"embed": model.get("embed") or {}, "preprocess": model.get("preprocess") or {}},
                            source=f"{bundle}/search/model.json")
    named = settings.embed.plugins + settings.preprocess.plugins
    if not named:
        return settings
    if params is None:
        raise ConfigError(f"{bundle}/search/model.json names plugins ({', '.join(named)}): embedding a query file "
                          "needs the project's params file (--params), not the bundle's word")
    return params


__all__ = ["embed_file", "similar"]
