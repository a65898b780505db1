"""Importing this module registers every built-in finder (in the order they usually run)."""

from pixelscope.issues import dataset, duplicates, labels, leakage, objects, outliers, quality  # noqa: F401
