"""Step functions: the one code path that the CLI, DVC stages and Prefect flows all call."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from pixelscope.atomic import write_bytes_atomic
from pixelscope.config import Params
from pixelscope.ingest import IngestSummary, ingest
from pixelscope.profile import Profile

ProgressFn = Callable[[int, int], None]


class StepError(RuntimeError):
    """A step cannot run on what it was given (message says what to fix)."""


def write_metrics(path: str | Path | None, metrics: dict[str, Any]) -> None:
    """Counts and timings of a step, as a DVC metrics file (`dvc metrics show`)."""
    if path is not None:
        write_bytes_atomic(path, json.dumps(metrics, indent=1, sort_keys=True).encode())


def ingest_metrics(s: IngestSummary) -> dict[str, Any]:
    return {"files_seen": s.seen, "ok": s.ok, "errors": s.errors, "excluded": s.excluded,
            "warnings": s.warnings, "seconds": round(s.seconds, 3), "images_per_s": round(s.images_per_s, 1),
            **{f"errors_{k}": v for k, v in s.errors_by_reason.items()}}


def ingest_step(params: Params, raw: str | Path | None = None, manifest: str | Path | None = None,
                progress: ProgressFn | None = None, metrics: str | Path | None = None) -> IngestSummary:
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
    write_metrics(metrics, ingest_metrics(summary))
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


def profile_step(params: Params, manifest: str | Path | None = None, out: str | Path | None = None,
                 metrics: str | Path | None = None, embeddings: str | Path | None = None) -> ProfileSummary:
    """Manifest (+ embeddings, when the embed step ran) -> profile file (mergeable sketches)."""
    manifest = Path(manifest or params.paths.manifest)
    out = Path(out or params.paths.profile)
    if not manifest.exists():
        raise StepError(f"manifest not found: {manifest} (run `pixelscope ingest` first)")
    t0 = time.perf_counter()
    try:
        profile = Profile.from_manifest(manifest, params.profile)
    except ValueError as e:
        raise StepError(f"{manifest}: {e}") from None
    return save_profile(profile, manifest, out, t0, metrics, Path(embeddings or params.paths.embeddings), params)


def save_profile(profile: Profile, manifest: str | Path, out: str | Path, t0: float,
                 metrics: str | Path | None = None, embeddings: Path | None = None,
                 params: Params | None = None) -> ProfileSummary:
    """Add the embedding statistics (if there is an embedding store), write the profile + metrics."""
    from pixelscope.embed.stats import stats_from_store
    from pixelscope.store import current_store

    store = current_store(embeddings) if embeddings is not None else None
    if store is not None:
        cfg = params or Params()
        profile.embedding = stats_from_store(store, manifest, cfg.profile.segment_kll_k, cfg.embed.sample_size,
                                             cfg.profile.max_segment_values)
    size = profile.save(out)
    s = ProfileSummary(str(manifest), str(out), profile.files_seen, profile.ok, profile.errors, size,
                       time.perf_counter() - t0)
    write_metrics(metrics, {"files_seen": s.files_seen, "ok": s.ok, "errors": s.errors, "bytes": s.bytes,
                            "seconds": round(s.seconds, 3)})
    return s


def embed_counts_metrics(c: Any) -> dict[str, Any]:
    d = c.to_dict()
    return {k: d[k] for k in ("images", "reused", "computed", "errors", "ingest_errors", "images_per_s")} | {
        "seconds": round(c.seconds, 3), **{f"errors_{k}": v for k, v in c.errors_by_reason.items()}}


def _manifest_for(params: Params, project: Path) -> Path:
    manifest = project / params.paths.manifest
    if not manifest.exists():
        raise StepError(f"manifest not found: {manifest} (run `pixelscope ingest` first)")
    return manifest


def preprocess_step(params: Params, project: str | Path = ".", progress: ProgressFn | None = None,
                    metrics: str | Path | None = None) -> Any:
    """Manifest images -> model-ready uint8 tensors (paths.tensors), new images only."""
    from pixelscope.embedding import preprocess_images

    project = Path(project)
    counts = preprocess_images(params, _manifest_for(params, project), project / params.paths.raw,
                               project / params.paths.tensors, progress)
    write_metrics(metrics, embed_counts_metrics(counts))
    return counts


def embed_step(params: Params, project: str | Path = ".", progress: ProgressFn | None = None,
               metrics: str | Path | None = None) -> Any:
    """Manifest images -> embedding store (paths.embeddings) + 2-D projection, new images only."""
    from pixelscope.embedding import embed_images

    project = Path(project)
    counts = embed_images(params, _manifest_for(params, project), project / params.paths.raw,
                          project / params.paths.tensors, project / params.paths.embeddings, progress)
    write_metrics(metrics, embed_counts_metrics(counts))
    return counts


def validate_step(params: Params, project: str | Path = ".") -> dict[str, Any]:
    """Quality + drift suites (Great Expectations) -> reports/validate/; raises ValidationFailed
    (a StepError) when they fail and validate.on_failure is `fail`."""
    from pixelscope.validate import validate

    return validate(params, Path(project))


def version_step(params: Params, project: str | Path = ".") -> dict[str, Any]:
    """dvc add + push the raw folder; returns the version."""
    from pixelscope.versioning import VersioningError, version_raw_data

    try:
        return version_raw_data(params, project).to_dict()
    except VersioningError as e:
        raise StepError(str(e)) from None


def publish_step(params: Params, project: str | Path = ".") -> dict[str, Any]:
    """Manifest + profile + versions + timings -> reports/publish/ (what the dashboard reads)."""
    from pixelscope.publish import publish

    for need in (params.paths.manifest, params.paths.profile):
        if not (Path(project) / need).exists():
            raise StepError(f"{need} not found: run ingest and profile first")
    return publish(params, project)
