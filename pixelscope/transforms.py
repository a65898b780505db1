"""Deprecated alias of pixelscope.embed.transforms (kept for one release; see the README).

Plugins should import `from pixelscope.embed.transforms import transform`.
"""

import warnings

from pixelscope.embed.transforms import TRANSFORMS, Preprocess, build, transform

warnings.warn("pixelscope.transforms moved to pixelscope.embed.transforms; the old name goes in the next release",
              DeprecationWarning, stacklevel=2)

__all__ = ["TRANSFORMS", "Preprocess", "build", "transform"]
