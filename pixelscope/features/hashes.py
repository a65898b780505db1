"""Perceptual hashes (64-bit), as in the imagehash package, on a luma array."""

from __future__ import annotations

import cv2
import numpy as np

_BITS = (1 << np.arange(63, -1, -1, dtype=np.uint64)).astype(np.uint64)


def _pack(bits: np.ndarray) -> int:
    return int((bits.ravel().astype(np.uint64) * _BITS).sum())


_MIRROR = np.where(np.arange(8) % 2, -1.0, 1.0).astype(np.float32)  # DCT-II of x[N-1-n] = (-1)^k X[k]


def phash(thumb32: np.ndarray, mirrored: bool = False) -> int:
    """DCT hash: 2-D DCT of the 32x32 thumbnail, low 8x8 frequencies vs their median. mirrored: the hash
    of the left-right mirrored thumbnail, from the same DCT (odd horizontal frequencies change sign)."""
    low = cv2.dct(thumb32.astype(np.float32))[:8, :8]
    low = (low * _MIRROR[None, :] if mirrored else low).ravel()
    ordered = np.sort(low)
    return _pack(low > (ordered[31] + ordered[32]) / 2)


def dhash(thumb32: np.ndarray) -> int:
    """Gradient hash: 9x8 downscale, is each pixel brighter than its right neighbour."""
    small = cv2.resize(thumb32, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    return _pack(small[:, 1:] > small[:, :-1])


def hamming(a: int | str, b: int | str) -> int:
    a = int(a, 16) if isinstance(a, str) else a
    b = int(b, 16) if isinstance(b, str) else b
    return (a ^ b).bit_count()
