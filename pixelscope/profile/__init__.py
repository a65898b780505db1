"""The dataset profile: mergeable sketches per column and segment, and embedding summaries.

Light on purpose (numpy, pyarrow, datasketches; no torch, no OpenCV), so a dashboard or a
notebook can read and compare profiles cheaply.
"""

from pixelscope.profile.profile import OTHER_SEGMENT, Profile, merge_all

__all__ = ["OTHER_SEGMENT", "Profile", "merge_all"]
