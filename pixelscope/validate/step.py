"""Validate: expectation suites (Great Expectations 1.x) over the manifest and the drift table.

- The reference is a profile: a file (`validate.reference`), or the profile of a pinned
  dataset version (`validate.reference_rev`, a git rev), read through DVC even when that
  version is not checked out (`pixelscope reference set REV`).
- Suites are versioned JSON files in `expectations/`: `quality.json` runs over the
  manifest (plus the derived column `splits_of_id`), `drift.json` over the drift table
  (one row per feature x test, with its `verdict`: "ok" or the failing test's name).
- A GX Checkpoint runs each suite and builds Data Docs (`gx/uncommitted/data_docs/`,
  copied into `reports/validate/data_docs/`); `reports/validate/results.json` holds
  pass/fail and the observed values per expectation.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.config import Params
from pixelscope.errors import InputMissing, ValidationFailed
from pixelscope.io.atomic import Staged, atomic_path, write_bytes_atomic
from pixelscope.io.manifest import manifest_frame
from pixelscope.pipeline.steps import ProgressFn, StepResult
from pixelscope.profile import Profile
from pixelscope.profile.reference import load_reference
from pixelscope.validate.drift import compare
from pixelscope.validate.expectations import present_columns, run_suites
from pixelscope.validate.suites import load_suite

STAGE = "validate"


def drift_frame(rows: list) -> Any:
    import pandas as pd

    df = pd.DataFrame([r.to_dict() for r in rows], columns=["feature", "segment", "test", "family", "statistic",
                                                             "threshold", "resolution", "p_value", "p_adjusted",
                                                             "n_ref", "n_cur", "drift"])
    df["verdict"] = ["ok" if not d else f"{f}[{s}] {t}" for f, s, t, d in zip(df.feature, df.segment, df.test, df.drift)]
    return df


def validate_step(params: Params, project: str | Path = ".", *, progress: ProgressFn | None = None) -> StepResult:
    """Quality + drift suites (Great Expectations) -> reports/validate/ (results.json,
    drift.parquet, data_docs/). Raises ValidationFailed when they fail and
    validate.on_failure is `fail`."""
    t0 = time.perf_counter()
    project = Path(project)
    paths, v = params.paths.under(project), params.validate_
    for need in (paths.manifest, paths.profile):
        if not need.exists():
            raise InputMissing(f"{need} not found: run ingest and profile first")
    frames = {"quality": manifest_frame(paths.manifest, paths.issues)}
    suites = {"quality": load_suite(project / v.suites / "quality.json")}
    reference = load_reference(params, project)
    out = project / v.results
    out.mkdir(parents=True, exist_ok=True)
    drifted: list[str] = []
    if reference is not None:
        rows = compare(reference, Profile.load(paths.profile), params.drift)
        with atomic_path(out / "drift.parquet") as tmp:
            pq.write_table(pa.Table.from_pylist([r.to_dict() for r in rows]), tmp)
        frames["drift"] = drift_frame(rows)
        suites["drift"] = load_suite(project / v.suites / "drift.json")
        drifted = sorted({f"{r.feature}[{r.segment}] {r.test}" for r in rows if r.drift})
    suites, skipped = present_columns(frames, suites, paths.issues_summary)
    results = run_suites(frames, suites, project)
    for suite, missing in skipped.items():
        results[suite]["results"].extend(missing)
    docs = project / "gx" / "uncommitted" / "data_docs" / "local_site"
    if docs.exists():
        with Staged(out, "data_docs") as staged:  # a killed run leaves the previous docs whole
            shutil.copytree(docs, staged, dirs_exist_ok=True)
    failed = [_failure(suite, r) for suite, s in results.items() for r in s["results"] if not r["success"]]
    summary = {"success": not failed, "failed": failed, "drifted": drifted,
               "reference": str(v.reference or v.reference_rev or ""), "on_failure": v.on_failure, "suites": results}
    write_bytes_atomic(out / "results.json", json.dumps(summary, indent=1).encode())
    if failed and v.on_failure == "fail":
        raise ValidationFailed("validation failed (validate.on_failure: fail):\n  " + "\n  ".join(failed[:20])
                               + (f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else "")
                               + f"\ndetails: {out / 'results.json'}")
    ran = {suite: [x for x in r["results"] if not x.get("skipped")] for suite, r in results.items()}
    lines = [f"{suite}: {sum(x['success'] for x in rows)}/{len(rows)} expectations met" for suite, rows in ran.items()]
    lines += [f"skipped {suite}: {x['expectation']}({x['column']}): {x['skipped']}"
              for suite, r in results.items() for x in r["results"] if x.get("skipped")]
    verdict = "validation passed" if not failed else "validation failed (on_failure: warn)"
    return StepResult(stage=STAGE, summary=f"{verdict}; results: {out / 'results.json'}",
                      seconds=time.perf_counter() - t0,
                      counts={"expectations": sum(len(r["results"]) for r in results.values()), "failed": len(failed),
                              "drifted": len(drifted)},
                      outputs={"results": str(out / "results.json")}, details=summary,
                      notes=lines + [f"failed {f}" for f in failed])


def _failure(suite: str, r: dict[str, Any]) -> str:
    what = f"{suite}: {r['expectation']}({r['column'] or ''})"
    if r["observed"] is not None:
        return f"{what} observed {r['observed']}"
    if r["unexpected_percent"] is not None:
        examples = sorted(set(map(str, r["unexpected"] or [])))[:6]
        return f"{what} {r['unexpected_percent']:.1f}% unexpected" + (f", e.g. {', '.join(examples)}" if examples else "")
    return what
