"""The history of a dataset: one row per recorded version (and per monitored drop).

    pixelscope history                      # every version in the git log of data/raw.dvc
    pixelscope history v1 v2 reports/old    # these revs / bundle folders, in this order

A version is a raw-data md5 (data/raw.dvc). Walking `git log -- data/raw.dvc dvc.lock`, each
run of commits with the same md5 is one version, read at its last commit (where the pipeline
outputs for it were committed); a version whose profile DVC cannot read is skipped, and
said so. Each row holds counts, errors by reason, label shares, p05 / p50 / p95 / mean of
every numeric feature, the validation outcome, and the drift of the version against the
previous one and against the reference (the existing drift tests over the profiles).

Incremental: a row whose version, commit and previous version are unchanged is kept as it
is; a rerun with nothing new does not rewrite the file. Rows of monitored drops (kind
"drop", written by `pixelscope monitor`) are kept as they are.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.config import DriftConfig, Params
from pixelscope.errors import PixelscopeError
from pixelscope.io.atomic import atomic_path, exclusive
from pixelscope.pipeline.steps import StepResult
from pixelscope.profile import Profile
from pixelscope.profile.sketches import CategoricalSketch, NumericSketch
from pixelscope.track.repo import git, raw_record, record_file
from pixelscope.versions.source import Version, open_version

QUANTILES = {"p05": 0.05, "p50": 0.5, "p95": 0.95}
# the row's bookkeeping columns, in order; feature columns (<feature>_p05 ... _mean) follow
COLUMNS = ["key", "kind", "rev", "commit", "date", "md5", "files", "ok", "errors", "errors_by_reason",
           "label_shares", "validation", "previous", "drift_prev", "drift_prev_features", "drift_ref",
           "drift_ref_features", "window", "examples", "recorded_at"]


def git_versions(project: Path, params: Params) -> list[tuple[str, str]]:
    """(md5, commit) per recorded version, oldest first: the last commit of each run of
    commits (touching raw.dvc or dvc.lock) that record the same raw md5."""
    raw_dvc = record_file(params)
    log = git(project, "log", "--reverse", "--format=%H", "--", raw_dvc, "dvc.lock") or ""
    runs: list[tuple[str, str]] = []
    for commit in log.split():
        out = raw_record(params, git(project, "show", f"{commit}:{raw_dvc}"))
        if out is None:
            continue
        md5 = (out.get("md5") or "").removesuffix(".dir")
        if runs and runs[-1][0] == md5:
            runs[-1] = (md5, commit)
        else:
            runs.append((md5, commit))
    return runs


def rev_name(project: Path, commit: str) -> str:
    """A tag at the commit, else its short hash: how the version is shown."""
    return git(project, "describe", "--tags", "--exact-match", commit) or commit[:10]


def _drift(reference: Profile | None, profile: Profile, cfg: DriftConfig) -> tuple[bool | None, str]:
    """(drifted?, the drifted features) of profile against reference; (None, "") without one."""
    if reference is None:
        return None, ""
    from pixelscope.validate.drift import compare
    from pixelscope.validate.step import drift_frame

    rows = drift_frame(compare(reference, profile, cfg))
    hit = rows[rows["drift"]] if len(rows) else rows
    return bool(len(hit)), ", ".join(sorted(set(hit["feature"]))) if len(hit) else ""


def label_shares(v: Version) -> dict[str, float]:
    """Share of each label among readable images: exact from the manifest, else the profile's counts."""
    m = v.manifest
    if m is not None and "label" in m.columns:
        ok = m[m["status"] == "ok"] if "status" in m.columns else m
        shares = ok["label"].astype(object).where(ok["label"].notna(), "(none)").value_counts(normalize=True)
        return {str(k): round(float(x), 6) for k, x in sorted(shares.items())}
    sk = v.profile.columns.get("label")
    if isinstance(sk, CategoricalSketch) and sk.count:
        return {str(k): round(c / sk.count, 6) for k, c in sorted(sk.frequencies().items())}
    return {}


def profile_columns(profile: Profile) -> dict[str, float | None]:
    """<feature>_p05 / _p50 / _p95 / _mean of every numeric column with values."""
    out: dict[str, float | None] = {}
    for name, sk in sorted(profile.columns.items()):
        if isinstance(sk, NumericSketch) and sk.count:
            for label, q in zip(QUANTILES, sk.quantiles(list(QUANTILES.values()))):
                out[f"{name}_{label}"] = q
            out[f"{name}_mean"] = sk.mean
    return out


def version_row(v: Version, key: str, kind: str, previous: tuple[str, Profile | None] | None, reference: Profile | None,
                cfg: DriftConfig, validation: bool | None = None) -> dict[str, Any]:
    """One history row: counts, label shares, feature quantiles, drift vs previous and reference."""
    p = v.profile
    prev_drift, prev_features = _drift(previous[1] if previous else None, p, cfg)
    ref_drift, ref_features = _drift(reference, p, cfg)
    return {"key": key, "kind": kind, "rev": v.meta.get("rev") or v.name, "commit": v.meta.get("commit"),
            "date": str(v.meta.get("date") or ""), "md5": v.meta.get("md5"), "files": p.files_seen, "ok": p.ok,
            "errors": p.errors, "errors_by_reason": json.dumps(dict(sorted(p.errors_by_reason.items()))),
            "label_shares": json.dumps(label_shares(v)), "validation": validation,
            "previous": previous[0] if previous else None, "drift_prev": prev_drift,
            "drift_prev_features": prev_features, "drift_ref": ref_drift, "drift_ref_features": ref_features,
            "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"), **profile_columns(p)}


def read_history(path: Path) -> pd.DataFrame:
    if not path.exists():
        return pd.DataFrame(columns=COLUMNS)
    return pq.read_table(path).to_pandas()


def write_history(path: Path, rows: pd.DataFrame) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(rows.reset_index(drop=True), preserve_index=False), tmp)


def _validation_at(project: Path, commit: str, params: Params) -> bool | None:
    """The validation outcome committed with the version (results.json is kept in git, not DVC)."""
    text = git(project, "show", f"{commit}:{(params.validate_.results / 'results.json').as_posix()}")
    try:
        return bool(json.loads(text)["success"]) if text else None
    except (json.JSONDecodeError, KeyError, TypeError):
        return None


def _candidates(params: Params, project: Path, specs: list[str] | None) -> list[tuple[str, str, str | None]]:
    """(key, spec to open, commit) per version, oldest first."""
    if specs:
        out = []
        for spec in specs:
            commit = None if Path(spec).exists() else git(project, "rev-parse", "--verify", "--quiet",
                                                            f"{spec}^{{commit}}")
            out.append((commit or str(Path(spec).resolve()), spec, commit))
        return out
    return [(md5 or commit, commit, commit) for md5, commit in git_versions(project, params)]


def record_history(params: Params, project: str | Path = ".", specs: list[str] | None = None, *,
                   progress: Callable[[int, int], None] | None = None) -> StepResult:
    """Bring paths.history up to date with the versions (git log, or the given revs / bundles)."""
    from pixelscope.profile.reference import load_reference

    t0 = time.perf_counter()
    project = Path(project).resolve()
    path = params.paths.under(project).history
    old = read_history(path)
    kept_drops = old[old["kind"] != "version"] if len(old) else old  # monitored drops and service windows stay
    known = {r["key"]: r for r in old.to_dict("records") if r.get("kind") == "version"}
    reference = load_reference(params, project)
    candidates = _candidates(params, project, specs)
    rows, notes, computed = [], [], 0
    previous: tuple[str, Profile | None] | None = None  # (key, profile; None until a later row needs it)
    for k, (key, spec, commit) in enumerate(candidates):
        prev_key = previous[0] if previous else None
        row = known.get(key)
        stored_prev = None if row is None or pd.isna(row.get("previous")) else row["previous"]
        if row is not None and row.get("commit") == commit and stored_prev == prev_key:
            rows.append(row)
            previous = (key, None)
        else:
            try:
                v = open_version(spec, params, project)
            except PixelscopeError as e:
                notes.append(f"skipped {spec if commit is None else rev_name(project, commit)}: {e}")
                continue
            if commit:
                v.meta["rev"] = rev_name(project, commit)
            if previous is not None and previous[1] is None:  # a kept row: open it now for the drift
                previous = (previous[0], open_version(_spec_of(candidates, previous[0]), params, project).profile)
            validation = (_validation_at(project, commit, params) if commit else
                          (v.meta.get("validation") if isinstance(v.meta.get("validation"), bool) else None))
            rows.append(version_row(v, key, "version", previous, reference, params.drift, validation))
            computed += 1
            previous = (key, v.profile)
        if progress:
            progress(k + 1, len(candidates))
    new = pd.DataFrame(rows)
    table = pd.concat([new, kept_drops], ignore_index=True) if len(kept_drops) else new
    changed = computed > 0 or len(table) != len(old) or (len(old) and list(old["key"]) != list(table["key"]))
    if changed and len(table):
        with exclusive(path):  # drops and service windows recorded while the versions were computed stay
            now = read_history(path)
            kept_drops = now[now["kind"] != "version"] if len(now) else now
            table = pd.concat([new, kept_drops], ignore_index=True) if len(kept_drops) else new
            write_history(path, table.reindex(columns=_ordered(table.columns)))
    summary = (f"history: {len(rows)} versions ({computed} computed, {len(rows) - computed} unchanged)"
               + (f", {len(kept_drops)} monitored drops / service windows" if len(kept_drops) else "")
               + (f", {len(notes)} skipped" if notes else "") + ("" if changed else "; nothing new, not rewritten"))
    return StepResult(stage="history", summary=summary, seconds=time.perf_counter() - t0,
                      counts={"versions": len(rows), "computed": computed, "unchanged": len(rows) - computed,
                              "skipped": len(notes), "drops": len(kept_drops)},
                      outputs={"history": str(path)}, notes=notes)


def _spec_of(candidates: list[tuple[str, str, str | None]], key: str) -> str:
    return next(spec for k, spec, _ in candidates if k == key)


def _ordered(columns: Any) -> list[str]:
    return [c for c in COLUMNS if c in columns] + sorted(c for c in columns if c not in COLUMNS)


def add_row(params: Params, project: str | Path, row: dict[str, Any]) -> Path:
    """Add (or replace, by key) one row, e.g. a monitored drop."""
    path = params.paths.under(project).history
    with exclusive(path):  # service workers closing windows at once each add theirs
        old = read_history(path)
        old = old[old["key"] != row["key"]] if len(old) else old
        table = pd.concat([old, pd.DataFrame([row])], ignore_index=True) if len(old) else pd.DataFrame([row])
        write_history(path, table.reindex(columns=_ordered(table.columns)))
    return path
