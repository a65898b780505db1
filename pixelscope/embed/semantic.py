"""Semantic columns: what the embedding model thinks each image shows.

The default model is an ImageNet classifier whose pooled features are the embeddings; its
own classifier head turns a stored vector into 1,000 class scores. Each image's top-1 class
and its softmax confidence are written beside the vectors (`semantic.parquet` in the store
folder, read by pixelscope.profile.outputs), so a change of *content* ("more dogs, fewer
cars") shows up in the profile and in drift even when the images carry no labels. The columns
come from the stored float16 vectors, in float32 chunks, on the CPU whatever device embedded:
run to run, the same columns.
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from torch import nn

from pixelscope.io.atomic import atomic_path
from pixelscope.io.store import SEMANTIC, ShardStore

CHUNK = 4096


def cpu_head(head: nn.Module) -> nn.Module:
    """A float32 copy of the classifier on the CPU, whatever device embedded."""
    return copy.deepcopy(head).to("cpu", torch.float32).eval()


def top1(head: nn.Module, vectors: np.ndarray, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Top-1 class name and softmax probability of each row of vectors (N x dim); head from cpu_head."""
    names: list[str] = []
    confidence = np.empty(len(vectors), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(vectors), CHUNK):
            x = torch.from_numpy(np.asarray(vectors[start:start + CHUNK], dtype=np.float32))
            p = torch.softmax(head(x).float(), dim=1)
            conf, idx = p.max(dim=1)
            confidence[start:start + len(x)] = conf.numpy()
            names += [classes[i] for i in idx.tolist()]
    return names, confidence


def write_semantic(store: ShardStore, ids: list[str], head: nn.Module, classes: list[str]) -> Path:
    """semantic.parquet in the store folder: id, semantic_class, semantic_confidence for ids.

    Incremental, like the store: rows already in the file are kept, only new ids are
    classified, CHUNK vectors at a time (memory stays bounded at any dataset size)."""
    have = store.ids()
    ids = [i for i in dict.fromkeys(ids) if i in have]
    path = store.folder / SEMANTIC
    old = pq.read_table(path) if path.exists() else None
    known = set(old.column("id").to_pylist()) if old is not None else set()
    todo = [i for i in ids if i not in known]
    if old is not None and not todo and old.num_rows == len(ids):
        return path  # nothing new, nothing gone
    head = cpu_head(head)
    names: list[str] = []
    confidence: list[np.ndarray] = [np.empty(0, np.float32)]
    for start in range(0, len(todo), CHUNK):
        n, c = top1(head, store.get(todo[start:start + CHUNK]), classes)
        names += n
        confidence.append(c)
    table = pa.table({"id": pa.array(todo, pa.string()), "semantic_class": pa.array(names, pa.string()),
                      "semantic_confidence": pa.array(np.concatenate(confidence), pa.float32())})
    if old is not None:
        table = pa.concat_tables([old.cast(table.schema), table])
        table = table.filter(pc.is_in(table.column("id"), value_set=pa.array(ids, pa.string())))
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)
    return path
