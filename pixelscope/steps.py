"""Step functions: the one code path that the CLI, DVC stages and Prefect flows all call."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pixelscope.config import Params
from pixelscope.ingest import IngestSummary, ingest
from pixelscope.profile import Profile

ProgressFn = Callable[[int, int], None]


class StepError(RuntimeError):
    """A step cannot run on what it was given (message says what to fix)."""


def ingest_step(params: Params, raw: str | Path | None = None, manifest: str | Path | None = None,
                progress: ProgressFn | None = None) -> IngestSummary:
    """Raw folder -> manifest Parquet (metadata + features, or an error row per bad file)."""
    raw = Path(raw or params.paths.raw)
    manifest = Path(manifest or params.paths.manifest)
    if not raw.exists():
        raise StepError(f"raw folder not found: {raw}")
    if not raw.is_dir():
        raise StepError(f"not a folder: {raw}")
    summary = ingest(raw, manifest, params.ingest, params.features, progress=progress)
    if summary.seen == 0:
        manifest.unlink(missing_ok=True)
        raise StepError(f"no files to ingest in {raw} ({summary.excluded} excluded by ingest.exclude)")
    return summary


@dataclass
class ProfileSummary:
    manifest: str
    profile: str
    files_seen: int
    ok: int
    errors: int
    bytes: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def profile_step(params: Params, manifest: str | Path | None = None, out: str | Path | None = None) -> ProfileSummary:
    """Manifest -> profile file (mergeable sketches, overall and per segment)."""
    manifest = Path(manifest or params.paths.manifest)
    out = Path(out or params.paths.profile)
    if not manifest.exists():
        raise StepError(f"manifest not found: {manifest} (run `pixelscope ingest` first)")
    t0 = time.perf_counter()
    try:
        profile = Profile.from_manifest(manifest, params.profile)
    except ValueError as e:
        raise StepError(f"{manifest}: {e}") from None
    size = profile.save(out)
    return ProfileSummary(str(manifest), str(out), profile.files_seen, profile.ok, profile.errors, size,
                          time.perf_counter() - t0)
