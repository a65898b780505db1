"""Stable, group-aware splits.

- A raw folder's own splits (train/val/test path components) are kept when it has them
  (curate.splits.keep_folder_splits): a frozen test set is never reshuffled.
- Otherwise an image's split is a pure function of its duplicate group's representative id:
  u = sha256(seed + representative id) as a number in [0, 1), cut by the cumulative ratios.
  So a group never straddles splits, and adding images never moves an existing image (its
  u does not depend on what else is in the data). Per label the draws are independent and
  uniform, so every class is split in the ratios in expectation; the ledger and the card
  report the shares actually reached.
"""

from __future__ import annotations

import hashlib

import numpy as np


def unit_hash(key: str, seed: str) -> float:
    return int(hashlib.sha256(f"{seed}\0{key}".encode()).hexdigest()[:13], 16) / 16 ** 13


def assign(group_keys: list[str], folder_splits: list[str | None], ratios: dict[str, float], seed: str,
           keep_folder_splits: bool) -> tuple[list[str], list[str]]:
    """(split, how) per image: 'folder' when its raw folder said so, else 'hash'."""
    names = list(ratios)
    edges = np.cumsum([ratios[n] for n in names])
    edges[-1] = 1.0 + 1e-12
    out, how = [], []
    for key, folder in zip(group_keys, folder_splits):
        if keep_folder_splits and folder is not None:
            out.append(folder)
            how.append("folder")
        else:
            out.append(names[int(np.searchsorted(edges, unit_hash(key, seed), side="right"))])
            how.append("hash")
    return out, how
