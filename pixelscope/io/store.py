"""Arrays keyed by image id, in append-only shards of .npy files that memory-map.

One store = one folder per key (a model id for embeddings, a preprocessing id for
tensors): `meta.json` plus shards `shard-00000.npy` (N x ...) and `shard-00000.ids.npy`
(N sha256 ids). Adding writes a new shard atomically, so a killed run loses at most the
shard it was writing and the next run adds only the ids still missing. Read API:

    store = ShardStore.open(root, key)
    store.ids()                 # set of ids present
    store.get(["ab12...", ...]) # (n, ...) array, rows in the order asked
    for ids, rows in store.shards(): ...   # memory-mapped, no copy
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from pixelscope.errors import StoreError
from pixelscope.io.atomic import atomic_path

__all__ = ["CURRENT", "SEMANTIC", "ShardStore", "StoreError", "current_store"]

CURRENT = "current.json"  # beside the stores: which one the last embed step wrote
SEMANTIC = "semantic.parquet"  # in an embedding store: id, semantic_class, semantic_confidence (pixelscope.embed.semantic)


def current_store(root: str | Path) -> ShardStore | None:
    """The store named by root/current.json (None if there is none)."""
    try:
        key = json.loads((Path(root) / CURRENT).read_text())["key"]
        return ShardStore.open(root, key)
    except (FileNotFoundError, StoreError):
        return None


class ShardStore:
    def __init__(self, folder: Path, meta: dict[str, Any]):
        self.folder = folder
        self.meta = meta
        self._index: dict[str, tuple[int, int]] | None = None

    @classmethod
    def create(cls, root: str | Path, key: str, dtype: str, row_shape: tuple[int, ...], **info: Any) -> ShardStore:
        """Open the store for key, creating it; an existing one must have the same layout."""
        folder = Path(root) / key
        meta = {"key": key, "dtype": dtype, "row_shape": list(row_shape), "format": 1, **info}
        if (folder / "meta.json").exists():
            store = cls.open(root, key)
            if store.meta["dtype"] != dtype or store.meta["row_shape"] != list(row_shape):
                raise StoreError(f"{folder}: holds {store.meta['dtype']} {store.meta['row_shape']}, "
                                 f"not {dtype} {list(row_shape)}")
            return store
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "meta.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=1))
        return cls(folder, meta)

    @classmethod
    def open(cls, root: str | Path, key: str) -> ShardStore:
        folder = Path(root) / key
        try:
            meta = json.loads((folder / "meta.json").read_text())
        except FileNotFoundError:
            raise StoreError(f"no store {key!r} in {root}") from None
        for stale in folder.glob(".shard-*.tmp"):  # left by a killed run
            stale.unlink(missing_ok=True)
        return cls(folder, meta)

    def _shard_names(self) -> list[str]:
        # a shard counts once its ids file exists: that file is renamed into place last
        return sorted(p.name[: -len(".ids.npy")] for p in self.folder.glob("shard-*.ids.npy"))

    def shards(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, rows) per shard; rows are memory-mapped read-only."""
        for name in self._shard_names():
            ids = np.load(self.folder / f"{name}.ids.npy")
            rows = np.load(self.folder / f"{name}.npy", mmap_mode="r")
            yield ids.astype(str), rows

    def _build_index(self) -> dict[str, tuple[int, int]]:
        if self._index is None:
            self._index = {}
            for s, name in enumerate(self._shard_names()):
                for r, i in enumerate(np.load(self.folder / f"{name}.ids.npy").astype(str)):
                    self._index.setdefault(i, (s, r))
        return self._index

    def ids(self) -> set[str]:
        return set(self._build_index())

    def __len__(self) -> int:
        return len(self._build_index())

    def get(self, ids: list[str]) -> np.ndarray:
        index = self._build_index()
        missing = [i for i in ids if i not in index]
        if missing:
            raise KeyError(f"{len(missing)} ids not in the store, e.g. {missing[0]}")
        names = self._shard_names()
        maps = {}
        out = np.empty((len(ids), *self.meta["row_shape"]), dtype=self.meta["dtype"])
        for k, i in enumerate(ids):
            s, r = index[i]
            if s not in maps:
                maps[s] = np.load(self.folder / f"{names[s]}.npy", mmap_mode="r")
            out[k] = maps[s][r]
        return out

    def add(self, ids: list[str], rows: np.ndarray) -> None:
        """Append one shard (atomically). Rows must match the store's dtype and row shape."""
        if len(ids) != len(rows):
            raise StoreError(f"{len(ids)} ids for {len(rows)} rows")
        if not ids:
            return
        rows = np.asarray(rows, dtype=self.meta["dtype"])
        if list(rows.shape[1:]) != self.meta["row_shape"]:
            raise StoreError(f"rows of shape {list(rows.shape[1:])}, store holds {self.meta['row_shape']}")
        names = self._shard_names()
        name = f"shard-{int(names[-1][6:]) + 1 if names else 0:05d}"
        with atomic_path(self.folder / f"{name}.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, rows)
        with atomic_path(self.folder / f"{name}.ids.npy") as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, np.asarray(ids, dtype="S64"))
        self._index = None
