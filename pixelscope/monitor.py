"""Monitoring new data drops: is what arrives still like the reference?

    pixelscope monitor data/drops/2026-12-02      # CLI (exit 1 when it drifts and monitor.on_drift: fail)
    flows/monitor.py                              # the same, as a Prefect flow (scheduled by `make serve`)

A drop (a folder of new images) goes through the pipeline's own ingest, preprocess, embed and
profile steps, with its outputs under paths.monitor/drops/<drop>/ (the project's data is not
touched). Its profile is then
- merged into the rolling profile of its window (paths.monitor/rolling/<day or week>.json):
  constant memory, the profile's own merge; a drop monitored again replaces its part (the
  window is re-merged from the stored drop profiles) instead of counting twice;
- drift-tested against the reference (validate.reference / reference_rev), the same tests
  as `pixelscope validate`, written to the drop's drift.parquet;
- recorded as a row of the history (kind "drop").
A drop that drifts raises DropDrifted (monitor.on_drift: fail) after it is recorded, or is
a warning in the result (warn).
"""

from __future__ import annotations

import hashlib
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.config import Params
from pixelscope.errors import ConfigError, InputMissing, StepError
from pixelscope.io.atomic import atomic_path, exclusive, write_bytes_atomic
from pixelscope.io.url import Url, as_location
from pixelscope.pipeline.steps import ProgressFn, StepResult
from pixelscope.profile import Profile
from pixelscope.profile.profile import merge_all

STEPS = ("ingest", "preprocess", "embed", "profile")  # the pipeline's own steps, run on the drop


class DropDrifted(StepError):
    """The drop drifted from the reference and monitor.on_drift is `fail` (it is recorded first)."""


def parse_when(text: str | None) -> datetime | None:
    """A drop's date from the CLI or a flow parameter (ISO 8601): without an offset it is UTC; with one
    it is converted to UTC, not relabelled (23:30 at UTC-5 is 04:30 UTC the next day)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--date {text!r}: not a date (YYYY-MM-DD, or an ISO 8601 time)") from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def window_of(when: datetime, window: str) -> str:
    """The rolling window a drop falls in: 2026-12-02 (day) or 2026-W49 (ISO week), in UTC."""
    when = when.astimezone(UTC)
    return when.strftime("%Y-%m-%d") if window == "day" else f"{when.isocalendar().year}-W{when.isocalendar().week:02d}"


def drop_params(params: Params, drop: Path | Url, out: Path) -> Params:
    """The project's params with the drop as raw data and every output under `out`."""
    p = params.model_copy(deep=True)
    p.paths = p.paths.model_copy(update={
        "raw": drop, "manifest": out / "manifest.parquet", "profile": out / "profile.json",
        "tensors": out / "tensors", "embeddings": out / "embeddings", "metrics": out / "metrics"})
    return p


def update_rolling(folder: Path, window: str, drop: str, profile_file: Path) -> tuple[Path, list[str]]:
    """Merge a drop's profile into its window's rolling profile; (the file, the drops in it).

    The window's ledger (<window>.drops.json) maps each merged drop to its profile's hash: a new
    drop is merged in place; a drop seen before with the same profile changes nothing; one
    whose profile changed is re-merged with the others from their stored profiles."""
    folder.mkdir(parents=True, exist_ok=True)
    with exclusive(folder / f"{window}.json"):  # a service's forked workers roll their windows into one file
        return _update_rolling(folder, window, drop, profile_file)


def _update_rolling(folder: Path, window: str, drop: str, profile_file: Path) -> tuple[Path, list[str]]:
    rolling, ledger_file = folder / f"{window}.json", folder / f"{window}.drops.json"
    ledger: dict[str, dict[str, str]] = json.loads(ledger_file.read_text()) if ledger_file.exists() else {}
    digest = hashlib.sha256(profile_file.read_bytes()).hexdigest()
    seen = ledger.get(drop)
    if seen and seen["sha256"] == digest and rolling.exists():
        return rolling, sorted(ledger)
    ledger[drop] = {"sha256": digest, "profile": str(profile_file)}
    if seen or not rolling.exists():  # changed (or the rolling file was lost): merge the window again
        merged = merge_all(Profile.load(e["profile"]) for e in ledger.values())
    else:
        merged = Profile.load(rolling).merge(Profile.load(profile_file))
    merged.save(rolling)
    write_bytes_atomic(ledger_file, json.dumps(ledger, indent=1, sort_keys=True).encode())
    return rolling, sorted(ledger)


def monitor_drop(params: Params, project: str | Path = ".", drop: str | Path | None = None, *,
                 when: datetime | None = None, progress: ProgressFn | None = None) -> StepResult:
    """Ingest, embed and profile a drop; roll it into its window; test it against the reference;
    record it in the history. Raises DropDrifted when it drifts and monitor.on_drift is fail."""
    from pixelscope.pipeline.stages import stage
    from pixelscope.profile.reference import load_reference
    from pixelscope.validate.drift import compare
    from pixelscope.validate.step import drift_frame
    from pixelscope.versions.history import add_row, version_row
    from pixelscope.versions.source import Version, read_manifest

    t0 = time.perf_counter()
    project = Path(project).resolve()
    drop = drop if drop is not None else params.monitor.drop
    if drop is None:
        raise ConfigError("monitor: no drop folder given (pixelscope monitor DROP, or set monitor.drop)")
    drop = as_location(drop) if isinstance(drop, str) else drop
    if not isinstance(drop, Url):  # a store prefix is listed by ingest (which names it when it is empty)
        drop = (project / drop).resolve()
        if not drop.is_dir():
            raise InputMissing(f"monitor: no drop folder at {drop}")
    reference = load_reference(params, project)
    if reference is None:
        raise ConfigError("monitor: no reference to compare the drop with: set validate.reference (a profile file) "
                          "or validate.reference_rev (`pixelscope reference set REV`)")
    when = when or datetime.now(UTC)
    root = params.paths.under(project).monitor
    out = root / "drops" / drop.name
    dp = drop_params(params, drop, out)
    notes = []
    for k, name in enumerate(STEPS):
        result = stage(name).run(dp, project)
        notes.append(result.summary)
        if progress:
            progress(k + 1, len(STEPS) + 1)
    profile = Profile.load(out / "profile.json")
    window = window_of(when, params.monitor.window)
    rolling, drops = update_rolling(root / "rolling", window, drop.name, out / "profile.json")
    drift = drift_frame(compare(reference, profile, params.drift))
    with atomic_path(out / "drift.parquet") as tmp:
        pq.write_table(pa.Table.from_pandas(drift, preserve_index=False), tmp)
    drifted = sorted(set(drift.loc[drift["drift"], "feature"])) if len(drift) else []
    version = Version(drop.name, "drop", profile, read_manifest(out / "manifest.parquet", str(out)),
                      meta={"rev": drop.name, "date": when.isoformat(timespec="seconds")})
    # the verdict from the drift table above: version_row would run every test a second time
    row = version_row(version, f"drop:{drop.name}", "drop", None, None, params.drift)
    row.update(window=window, drift_ref=bool(drifted), drift_ref_features=", ".join(drifted))
    history = add_row(params, project, row)
    if progress:
        progress(len(STEPS) + 1, len(STEPS) + 1)
    verdict = (f"DRIFT in {len(drifted)} features ({', '.join(drifted[:8])}{' ...' if len(drifted) > 8 else ''})"
               if drifted else "no drift")
    summary = (f"monitored {drop.name}: {profile.files_seen} files ({profile.ok} ok, {profile.errors} errors), "
               f"{verdict} against the reference; rolling {window}: {len(drops)} drops")
    details: dict[str, Any] = {"drop": str(drop), "window": window, "drifted": drifted, "drops_in_window": drops,
                               "drift_rows": len(drift)}
    if drifted and params.monitor.on_drift == "fail":
        raise DropDrifted(f"{summary}\n(monitor.on_drift: fail; drift table: {out / 'drift.parquet'}, "
                          f"recorded in {history})")
    if drifted:
        notes.append(f"failed drift check (monitor.on_drift: warn): {', '.join(drifted)}")
    return StepResult(stage="monitor", summary=summary, seconds=time.perf_counter() - t0,
                      counts={"files": profile.files_seen, "ok": profile.ok, "errors": profile.errors,
                              "drifted_features": len(drifted), "drops_in_window": len(drops)},
                      outputs={"drop": str(out), "drift": str(out / "drift.parquet"), "rolling": str(rolling),
                               "history": str(history)}, details=details, notes=notes)
