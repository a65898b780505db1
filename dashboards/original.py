"""The opened image at full size: its original, read from paths.raw (a folder, or a store such as
s3://bucket/prefix, streamed into memory, never saved), decoded and oriented as ingest does. The
grid shows the bundle's thumbnails; only this reads the raw data, and only when asked. Anything
that stops it (credentials, a deleted object, a path that leaves the raw folder) is said, not raised.
"""

from __future__ import annotations

from typing import Any

from dashboards.actions import params, params_file, project
from pixelscope.errors import PixelscopeError

FULL_SIDE = 2048  # longer side shown at most (a 50-megapixel original is not sent to the browser whole)


def full_size(rel: str) -> tuple[Any, str]:
    """An image of the raw data at full size (an RGB array, oriented; at most FULL_SIDE on its longer
    side) and a caption, read from paths.raw - a folder or a store, streamed, never saved - or
    (None, why it cannot be read)."""
    from pixelscope.io.decode import ImageError, decode
    from pixelscope.io.location import configure, read_bytes
    from pixelscope.io.url import Url, inside

    try:
        p = params()
    except PixelscopeError as e:
        return None, f"cannot read {params_file()}: {e}"
    raw = p.paths.raw if isinstance(p.paths.raw, Url) else project() / p.paths.raw
    if not inside(raw, rel):
        return None, f"{rel} is not inside the raw data ({raw})"
    configure(p.storage)
    try:
        data = read_bytes(raw / rel, p.ingest.max_file_bytes)
        d = decode(data, FULL_SIDE, p.ingest.max_image_pixels)
    except ImageError as e:
        return None, f"cannot read {raw / rel}: {e.reason} ({e.detail})"
    except PixelscopeError as e:
        return None, f"cannot read {raw / rel}: {e}"
    shown = "" if max(d.width, d.height) <= FULL_SIDE else f", shown at {FULL_SIDE} px"
    return d.rgb, f"{raw / rel} · {d.width}×{d.height} · {len(data):,} bytes{shown}"
