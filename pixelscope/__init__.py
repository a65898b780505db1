"""pixelscope: an image-dataset pipeline (core library).

The core never imports Prefect or Streamlit; orchestration and UI layers wrap it.
"""

__version__ = "0.1.0"

_LAZY = {"ImageLogger": "pixelscope.image_logger", "profile_images": "pixelscope.image_logger",
         "compare": "pixelscope.image_logger"}


def __getattr__(name: str):
    """`from pixelscope import ImageLogger` without importing the pipeline on `import pixelscope`."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pixelscope' has no attribute {name!r}")
