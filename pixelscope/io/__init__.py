"""Files in and out: discovery, decoding, EXIF, the manifest, array stores, atomic writes, worker pools.

Nothing here knows about features, models or profiles; it imports no torch.
"""
