"""The reference profile: a file (`validate.reference`), or the profile of a pinned dataset
version (`validate.reference_rev`, a git rev) read through DVC without checking it out.

Drift (validate) and the issue finders' relative thresholds both compare against it.
"""

from __future__ import annotations

from pathlib import Path

from pixelscope.config import Params
from pixelscope.errors import InputMissing
from pixelscope.profile.profile import Profile


def load_reference(params: Params, project: Path) -> Profile | None:
    """The reference profile: a file, or params.paths.profile at a git rev (through DVC)."""
    v = params.validate_
    if v.reference is not None:
        path = project / v.reference
        if not path.exists():
            raise InputMissing(f"validate.reference: no profile at {path}")
        return Profile.load(path)
    if v.reference_rev is not None:
        import dvc.api

        try:
            with dvc.api.open(str(params.paths.profile), repo=str(project), rev=v.reference_rev, mode="rb") as fh:
                return Profile.deserialize(fh.read())
        except Exception as e:  # noqa: BLE001 - unknown rev, not in the cache or remote: say which
            raise InputMissing(f"validate.reference_rev {v.reference_rev!r}: cannot read {params.paths.profile} "
                                    f"at that revision through DVC ({type(e).__name__}: {e})") from None
    return None
