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
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from pixelscope import __version__
from pixelscope.atomic import atomic_path, write_bytes_atomic
from pixelscope.config import Params
from pixelscope.profile import Profile
from pixelscope.store import current_store
from pixelscope.versioning import raw_version


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


def publish(params: Params, project: str | Path = ".") -> dict[str, Any]:
    project = Path(project)
    paths = params.paths
    bundle = {
        "versions": {"raw": raw_version(params, project).to_dict(), "pixelscope": __version__,
                     "params": params_hash(params)},
        "manifest": manifest_summary(project / paths.manifest),
        "profile": Profile.load(project / paths.profile).summary(),
        "timings": {step: m.get("seconds") for step, m in read_metrics(project / paths.metrics).items()},
    }
    profile = Profile.load(project / paths.profile)
    bundle["embedding"] = profile.embedding.summary() if profile.embedding is not None else None
    results = project / params.validate_.results / "results.json"
    if results.exists():
        v = json.loads(results.read_text())
        bundle["validation"] = {k: v[k] for k in ("success", "failed", "drifted", "reference")}
    out = project / paths.publish
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(out / "summary.json", json.dumps(bundle, indent=1, default=str).encode())
    with atomic_path(out / "profile.json") as tmp:
        shutil.copyfile(project / paths.profile, tmp)
    store = current_store(project / paths.embeddings)
    if store is not None and (store.folder / "projection.parquet").exists():
        with atomic_path(out / "projection.parquet") as tmp:  # the embedding map: id, path, label, x, y
            shutil.copyfile(store.folder / "projection.parquet", tmp)
    return bundle
