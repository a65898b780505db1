"""A dataset version to compare: a git rev (read through DVC, no checkout), a publish bundle
folder, a manifest (.parquet) or a profile (.json).

    v = open_version("v1.0", params, project)      # manifest, profile, issues, ledger at that rev
    v = open_version("reports/publish", ...)       # a bundle folder
    v = open_version("old/manifest.parquet", ...)  # a manifest (its profile is computed)

At a git rev the paths are this project's params (paths.manifest, paths.profile, ...): the
files DVC recorded there. A rev without a recorded raw-data version (`<raw>.dvc`) or without
a profile is an error naming the rev and the file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pixelscope.config import Params
from pixelscope.errors import BadInput, InputMissing
from pixelscope.profile import Profile
from pixelscope.track.repo import git, raw_record, record_file

MANIFEST_COLUMNS = ["id", "path", "label", "split", "status", "reason"]


@dataclass
class Version:
    """What a version holds; parts that were never made are None."""

    name: str  # as the user gave it
    kind: str  # rev | bundle | manifest | profile
    profile: Profile
    manifest: pd.DataFrame | None = None  # one row per file (MANIFEST_COLUMNS that exist)
    issues: pd.DataFrame | None = None  # the issues table (id, path, <issue>, <issue>_score, ...)
    ledger: pd.DataFrame | None = None  # the curation ledger
    meta: dict[str, Any] = field(default_factory=dict)  # rev, commit, date, raw md5, files

    def describe(self) -> str:
        m = self.meta
        bits = [f"{self.kind} {self.name}"]
        if m.get("commit"):
            bits.append(f"commit {m['commit'][:10]}")
        if m.get("date"):
            bits.append(str(m["date"]))
        if m.get("md5"):
            bits.append(f"raw {m['md5']}")
        return ", ".join(bits)


def read_manifest(data: bytes | Path, name: str) -> pd.DataFrame:
    try:
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        schema = pq.read_schema(src)
        cols = [c for c in MANIFEST_COLUMNS if c in schema.names]
        if "id" not in cols or "path" not in cols:
            raise BadInput(f"{name}: not a pixelscope manifest (no id / path columns)")
        src = io.BytesIO(data) if isinstance(data, bytes) else data
        return pq.read_table(src, columns=cols).to_pandas()
    except (OSError, ValueError) as e:
        raise BadInput(f"{name}: not a Parquet manifest ({e})") from None


def _optional_table(data: bytes | Path | None) -> pd.DataFrame | None:
    if data is None:
        return None
    try:
        return pq.read_table(io.BytesIO(data) if isinstance(data, bytes) else data).to_pandas()
    except (OSError, ValueError):
        return None


def from_rev(rev: str, params: Params, project: Path) -> Version:
    """The version recorded at a git rev: <raw>.dvc from git, the outputs from DVC's cache/remote."""
    commit = git(project, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if commit is None:
        raise InputMissing(f"{rev!r} is neither a bundle folder, a manifest / profile file nor a git rev of {project}")
    raw_dvc = record_file(params)
    out = raw_record(params, git(project, "show", f"{commit}:{raw_dvc}"))
    if out is None:
        where = f"{raw_dvc} does not record {params.paths.raw} in" if raw_dvc == "dvc.lock" else f"{raw_dvc} is not in"
        raise InputMissing(f"{rev}: no recorded dataset version ({where} commit {commit[:10]}; "
                           "`pixelscope version-data` / the ingest stage records one)")
    meta = {"rev": rev, "commit": commit, "date": git(project, "show", "-s", "--format=%cI", commit),
            "md5": (out.get("md5") or "").removesuffix(".dir") or None, "files": out.get("nfiles")}
    from dvc.api import DVCFileSystem

    fs = DVCFileSystem(str(project), rev=commit)

    def read(path: Path) -> bytes:
        data = read_optional(path, True)
        assert data is not None  # a needed file that cannot be read raised InputMissing
        return data

    def read_optional(path: Path, needed: bool = False) -> bytes | None:
        try:
            with fs.open(path.as_posix(), mode="rb") as fh:
                return fh.read()
        except Exception as e:  # noqa: BLE001 - not recorded, or not in the cache / remote
            if needed:
                raise InputMissing(f"{rev}: cannot read {path} at commit {commit[:10]} through DVC "
                                   f"({type(e).__name__}: {e}); run the pipeline and commit dvc.lock there") from None
            return None

    p = params.paths
    profile = Profile.deserialize(read(p.profile))
    manifest = read_manifest(read(p.manifest), f"{p.manifest} at {rev}")
    return Version(rev, "rev", profile, manifest, _optional_table(read_optional(p.issues)),
                   _optional_table(read_optional(p.curated / "curation.parquet")), meta)


def from_bundle(folder: Path) -> Version:
    from pixelscope.publish.bundle import Bundle

    b = Bundle.open(folder)
    summary = b.summary()
    versions = summary["versions"]
    raw = versions.get("raw") or {}
    meta = {"commit": raw.get("git_commit"), "md5": raw.get("md5"), "files": raw.get("files"),
            "date": versions.get("published"), "validation": (summary.get("validation") or {}).get("success")}
    manifest = read_manifest(b.checked("manifest"), str(b.path("manifest"))) if b.has("manifest") else None
    return Version(str(folder), "bundle", b.profile(), manifest,
                   b.table("issues") if b.has("issues") else None,
                   b.table("ledger") if b.has("ledger") else None, meta)


def open_version(spec: str, params: Params, project: str | Path = ".") -> Version:
    """A bundle folder, a manifest or profile file, or else a git rev of the project."""
    path = Path(spec)
    if path.is_dir():
        return from_bundle(path)
    if path.is_file():
        if path.suffix == ".json":
            try:
                profile = Profile.load(path)
            except (json.JSONDecodeError, KeyError, ValueError) as e:
                raise BadInput(f"{path}: not a pixelscope profile ({e})") from None
            return Version(spec, "profile", profile)
        manifest = read_manifest(path, str(path))
        return Version(spec, "manifest", Profile.from_manifest(path), manifest)
    return from_rev(spec, params, Path(project))
