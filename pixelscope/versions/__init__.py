"""Dataset versions side by side: open a version (git rev, bundle, manifest, profile) and diff two."""

from pixelscope.versions.diff import VersionDiff, diff_images, diff_versions
from pixelscope.versions.source import Version, open_version

__all__ = ["Version", "VersionDiff", "diff_images", "diff_versions", "open_version"]
