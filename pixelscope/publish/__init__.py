"""Publish: the results bundle the dashboard reads (reports/publish/).

bundle.py is the layout and its light reader (what the dashboard imports: no torch, no
OpenCV, no GX, no Prefect); step.py writes it; thumbnails.py makes the small WebP previews.
"""

from pixelscope.publish.step import publish_step

__all__ = ["publish_step"]
