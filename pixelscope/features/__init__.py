"""Per-image features: one registry, built-ins and plugins registered the same way."""

from pixelscope.features.registry import (
    Feature,
    ImageView,
    compute_features,
    feature,
    feature_columns,
    load_plugins,
    registered,
)

__all__ = [
    "Feature", "ImageView", "compute_features", "feature", "feature_columns",
    "load_plugins", "registered",
]
