"""The raw data's version with DVC: track the raw folder, push it, and keep stages in sync.

A dataset version is the DVC hash of the raw folder (`md5` of its `.dir` listing, as in
`data/raw.dvc`), plus the git commit that records that file.

Raw data in a store (paths.raw = s3://bucket/prefix) is not copied: it is the ingest stage's DVC
*external dependency* (dvc.yaml deps may be URLs). DVC hashes it from the store's listing - the
objects' ETags, nothing downloaded - and records it in dvc.lock like any dep (the `.dir` listing
of relpath + ETag lands in the local cache), so `dvc status` / `dvc repro` see an object added,
removed or overwritten, and the version (md5, files, bytes) is read from dvc.lock at any commit. Remotes are DVC's own: the
default is a local folder from params (versioning.remote_url); a default remote already
configured in the repo (S3, GCS, Azure, SSH, ...) is used as it is.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from pixelscope.config import Params
from pixelscope.errors import VersioningError
from pixelscope.io.url import Url

os.environ.setdefault("DVC_NO_ANALYTICS", "1")


@dataclass
class RawVersion:
    path: str
    md5: str | None  # DVC hash of the folder (without the .dir suffix); None when not tracked
    files: int | None
    bytes: int | None
    git_commit: str | None
    git_dirty: bool | None
    remote: str | None = None
    pushed: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextlib.contextmanager
def _repo(project: Path) -> Iterator[Any]:
    """An open DVC repo; DVC's own errors become VersioningError with DVC's message."""
    from dvc.exceptions import DvcException, NotDvcRepoError
    from dvc.repo import Repo

    project = project.resolve()
    try:
        repo = Repo(str(project))
    except NotDvcRepoError:
        raise VersioningError(f"{project} is not a DVC repository: run `git init && dvc init` there first") from None
    repo.scm_context.quiet = True  # no "To track the changes with git, run: ..." hints
    try:
        with contextlib.chdir(project):  # DVC resolves paths and stage names from the cwd
            yield repo
    except DvcException as e:
        raise VersioningError(f"dvc: {e}") from None
    finally:
        repo.close()


def git(project: Path, *args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=project, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def record_file(params: Params) -> str:
    """The file (relative to the project) that records the raw version: <raw>.dvc, or dvc.lock for a store."""
    raw = params.paths.raw
    return "dvc.lock" if isinstance(raw, Url) else f"{raw.as_posix()}.dvc"


def raw_record(params: Params, text: str | None) -> dict[str, Any] | None:
    """The raw version's entry (md5, nfiles, size) in the text of record_file(params)."""
    if text is None:
        return None
    doc = yaml.safe_load(text) or {}
    if not isinstance(params.paths.raw, Url):
        return (doc.get("outs") or [{}])[0]
    deps = ((doc.get("stages") or {}).get("ingest") or {}).get("deps") or []
    return next((d for d in deps if str(d.get("path", "")).rstrip("/") == str(params.paths.raw)), None)


def read_dvc_file(dvc_file: Path) -> dict[str, Any] | None:
    if not dvc_file.exists():
        return None
    outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or [{}]
    return outs[0]


def raw_version(params: Params, project: str | Path = ".") -> RawVersion:
    """The current raw-data version as recorded in `<raw>.dvc` (dvc.lock for a store; no hashing, no DVC call)."""
    project = Path(project)
    raw = params.paths.raw
    record = project / record_file(params)
    out = raw_record(params, record.read_text() if record.exists() else None) or {}
    md5 = out.get("md5")
    commit = git(project, "rev-parse", "HEAD")
    dirty = None if commit is None else bool(git(project, "status", "--porcelain", "--", record_file(params)))
    return RawVersion(str(raw), md5.removesuffix(".dir") if md5 else None, out.get("nfiles"), out.get("size"),
                      commit, dirty)


def ensure_remote(repo, params: Params, project: Path) -> str:
    """Use the repo's default remote; if there is none, add the local one from params."""
    default = repo.config.get("core", {}).get("remote")
    if default:
        return default
    url = Path(params.versioning.remote_url)
    if not url.is_absolute() and "://" not in str(url):
        url = project.resolve() / url
        url.mkdir(parents=True, exist_ok=True)
        url_str = os.path.relpath(url, project.resolve() / ".dvc")  # DVC resolves it from .dvc/
    else:
        url_str = str(params.versioning.remote_url)
    with repo.config.edit() as conf:
        conf["remote"][params.versioning.remote_name] = {"url": url_str}
        conf["core"]["remote"] = params.versioning.remote_name
    return params.versioning.remote_name


def version_raw_data(params: Params, project: str | Path = ".") -> RawVersion:
    """`dvc add` the raw folder, push it to the default remote, optionally git-commit the .dvc file.
    A store prefix is not added (nothing is copied): its version is the ingest stage's dependency."""
    project = Path(project)
    raw = params.paths.raw
    if isinstance(raw, Url):
        return raw_version(params, project)
    if not (project / raw).is_dir():
        raise VersioningError(f"raw folder not found: {project / raw}")
    target = str((project / raw).resolve())  # DVC resolves relative targets from the cwd
    with _repo(project) as repo:
        repo.add([target])
        remote = pushed = None
        if params.versioning.push:
            remote = ensure_remote(repo, params, project)
            pushed = repo.push(targets=[target], remote=remote)
    if params.versioning.git_commit and git(project, "rev-parse", "--git-dir") is not None:
        ignore = (project / raw).parent / ".gitignore"
        git(project, "add", f"{raw}.dvc", *([str(ignore.relative_to(project))] if ignore.exists() else []))
        v = raw_version(params, project)
        git(project, "commit", "-m", f"data: raw version {v.md5}", "--", f"{raw}.dvc",
            *([str(ignore.relative_to(project))] if ignore.exists() else []))
    v = raw_version(params, project)
    v.remote, v.pushed = remote, pushed
    return v


def file_hashes(params: Params, project: str | Path = ".") -> dict[str, str] | None:
    """Per-file md5 of the tracked raw folder, from DVC's cache (no re-hashing); None if unknown."""
    project = Path(project)
    out = read_dvc_file(project / f"{params.paths.raw}.dvc")
    if not out or not str(out.get("md5", "")).endswith(".dir"):
        return None
    md5 = out["md5"]
    for cache in (project / ".dvc" / "cache" / "files" / "md5", project / ".dvc" / "cache"):
        listing = cache / md5[:2] / md5[2:]
        if listing.exists():
            return {e["relpath"]: e["md5"] for e in json.loads(listing.read_text())}
    return None


def stale_stages(stages: list[str], project: str | Path = ".") -> list[str]:
    """The stages of dvc.yaml whose deps, params or outs changed (what `dvc repro` would run)."""
    with _repo(Path(project)) as repo:
        return [s for s in stages if repo.status(targets=[_stage(project, s)])]


def commit_stages(stages: list[str], project: str | Path = ".") -> None:
    """Record the stages' current deps/params/outs in dvc.lock (after an orchestrator ran them)."""
    with _repo(Path(project)) as repo:
        for s in stages:
            repo.commit(_stage(project, s), force=True)


def _stage(project: str | Path, name: str) -> str:
    """An unambiguous stage address (DVC resolves bare names from the cwd)."""
    return f"{(Path(project) / 'dvc.yaml').resolve()}:{name}"
