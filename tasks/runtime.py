"""What a cache key needs to know about the code and the machine."""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import pixelscope


@lru_cache(maxsize=1)
def code_version() -> str:
    """Hash of pixelscope's source: a code change invalidates cached task results."""
    root = Path(pixelscope.__file__).parent
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
