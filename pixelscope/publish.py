"""Publish: the small results bundle the dashboard reads (and people diff between versions).

reports/publish/summary.json holds the manifest summary (counts by status, reason, label,
source, format), the profile summary, the versions (raw data, git, pixelscope, params) and
the step timings and the embedding summary; reports/publish/profile.json is a copy of the
profile and reports/publish/projection.parquet the 2-D embedding map (id, path, label, x, y).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pixelscope import __version__
from pixelscope.config import Params
from pixelscope.errors import InputMissing
from pixelscope.io.atomic import atomic_path, write_bytes_atomic
from pixelscope.io.store import current_store
from pixelscope.pipeline.steps import ProgressFn, StepResult
from pixelscope.profile import Profile
from pixelscope.versioning import raw_version

STAGE = "publish"


def manifest_summary(manifest: str | Path) -> dict[str, Any]:
    t = pq.read_table(manifest, columns=["status", "reason", "label", "source", "format", "bytes"])
    cols = {n: t.column(n).to_pylist() for n in t.column_names}

    def counts(name: str, status: str = "ok") -> dict[str, int]:
        c = Counter(v if v is not None else "(none)" for v, s in zip(cols[name], cols["status"]) if s == status)
        return dict(c.most_common())

    return {
        "files_seen": t.num_rows,
        "ok": sum(s == "ok" for s in cols["status"]),
        "errors": sum(s != "ok" for s in cols["status"]),
        "errors_by_reason": counts("reason", status="error"),
        "labels": counts("label"), "sources": counts("source"), "formats": counts("format"),
        "bytes": sum(b for b in cols["bytes"] if b is not None),
    }


def params_hash(params: Params) -> str:
    return hashlib.sha256(json.dumps(params.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:16]


def read_metrics(folder: Path) -> dict[str, Any]:
    out = {}
    for f in sorted(folder.glob("*.json")) if folder.exists() else []:
        out[f.stem] = json.loads(f.read_text())
    return out


def publish_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Manifest + profile + versions + timings -> reports/publish/ (what the dashboard reads)."""
    t0 = time.perf_counter()
    project = Path(project)
    paths = params.paths.under(project)
    for need in (paths.manifest, paths.profile):
        if not need.exists():
            raise InputMissing(f"{need} not found: run ingest and profile first")
    profile = Profile.load(paths.profile)
    bundle = {
        "versions": {"raw": raw_version(params, project).to_dict(), "pixelscope": __version__,
                     "params": params_hash(params)},
        "manifest": manifest_summary(paths.manifest),
        "profile": profile.summary(),
        "timings": {step: m.get("seconds") for step, m in read_metrics(paths.metrics).items()},
    }
    bundle["embedding"] = profile.embedding.summary() if profile.embedding is not None else None
    if paths.issues_summary.exists():  # counts per finder, thresholds, dataset-level findings
        bundle["issues"] = json.loads(paths.issues_summary.read_text())
    curated = paths.curated / "curate.json"
    if curated.exists():  # the curated set: counts that add up, per split and label, exports
        bundle["curated"] = json.loads(curated.read_text())
    results = project / params.validate_.results / "results.json"
    if results.exists():
        v = json.loads(results.read_text())
        bundle["validation"] = {k: v[k] for k in ("success", "failed", "drifted", "reference")}
    out = paths.publish
    out.mkdir(parents=True, exist_ok=True)
    outputs = {"summary": str(out / "summary.json"), "profile": str(out / "profile.json")}
    write_bytes_atomic(out / "summary.json", json.dumps(bundle, indent=1, default=str).encode())
    with atomic_path(out / "profile.json") as tmp:
        shutil.copyfile(paths.profile, tmp)
    store = current_store(paths.embeddings)
    if store is not None and (store.folder / "projection.parquet").exists():
        with atomic_path(out / "projection.parquet") as tmp:  # the embedding map: id, path, label, x, y
            shutil.copyfile(store.folder / "projection.parquet", tmp)
        outputs["projection"] = str(out / "projection.parquet")
    m = bundle["manifest"]
    summary = (f"published {params.paths.publish}: {m['files_seen']} files, {m['ok']} ok, {m['errors']} errors; "
               f"raw version {bundle['versions']['raw']['md5']}")
    counts = {k: m[k] for k in ("files_seen", "ok", "errors")}
    return StepResult(STAGE, summary, time.perf_counter() - t0, counts, outputs, {}, bundle)
