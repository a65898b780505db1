"""What is wrong with each image, and how sure we are: one small module per finder behind one
interface (base.py), run by the issues step (step.py) into issues.parquet, its pairs and issues.json.

Finders: unreadable, quality (dark, overexposed, blurry, ...), exact_duplicate, near_duplicate,
leakage, label_error, outlier, dataset (imbalance, spurious features). A plugin adds one with
`@finder("name")` in a module listed under issues.plugins.
"""

from pixelscope.issues.base import FINDERS, Dataset, Embeddings, Finding, finder

__all__ = ["FINDERS", "Dataset", "Embeddings", "Finding", "finder", "registered"]


def registered() -> list[str]:
    """The finders' names, built-ins included."""
    import pixelscope.issues.builtin  # noqa: F401  (registers the built-ins)

    return FINDERS.names()
