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

import io
import json
import shutil
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.config import Params
from pixelscope.errors import BadInput, InputMissing, ValidationFailed
from pixelscope.io.atomic import atomic_path, write_bytes_atomic
from pixelscope.pipeline.steps import ProgressFn, StepResult
from pixelscope.profile import Profile
from pixelscope.profile.reference import load_reference
from pixelscope.quality.drift import compare
from pixelscope.quality.suites import load_suite

STAGE = "validate"


ISSUE_KEYS = ("id", "path", "label", "split", "status")


def manifest_frame(manifest: Path, issues: Path | None = None):
    """The manifest, with the issue step's columns (near_duplicate, leakage, blurry, ...) when it ran,
    so quality suites can bound them (e.g. no leakage, few near-duplicates)."""
    df = pq.read_table(manifest).to_pandas()
    # an image id in more than one split is leakage
    df["splits_of_id"] = df.groupby("id")["split"].transform(lambda s: s.fillna("(none)").nunique())
    if issues is not None and issues.exists():
        found = pq.read_table(issues).to_pandas()
        if len(found) != len(df) or not (found["path"].to_numpy() == df["path"].to_numpy()).all():
            raise BadInput(f"{issues} does not describe {manifest} (rerun `pixelscope issues`)")
        df = df.join(found.drop(columns=[c for c in ISSUE_KEYS if c in found]))
    return df


def drift_frame(rows: list) -> Any:
    import pandas as pd

    df = pd.DataFrame([r.to_dict() for r in rows], columns=["feature", "segment", "test", "statistic", "threshold",
                                                             "resolution", "p_value", "p_adjusted", "n_ref", "n_cur",
                                                             "drift"])
    df["verdict"] = ["ok" if not d else f"{f}[{s}] {t}" for f, s, t, d in zip(df.feature, df.segment, df.test, df.drift)]
    return df


def run_suites(frames: dict[str, Any], suites: dict[str, dict[str, Any]], gx_root: Path) -> dict[str, Any]:
    """One GX Checkpoint per suite over its dataframe (file context: Data Docs are built)."""
    import logging

    import great_expectations as gx
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.core.expectation_suite import ExpectationSuite
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    source = context.data_sources.add_or_update_pandas("pixelscope")
    out: dict[str, Any] = {}
    for name, spec in suites.items():
        try:
            asset = source.get_asset(name)
        except LookupError:
            asset = source.add_dataframe_asset(name=name)
        try:
            batch = asset.get_batch_definition("all")
        except KeyError:
            batch = asset.add_batch_definition_whole_dataframe("all")
        suite = ExpectationSuite(name=spec.get("name", name),
                                 expectations=[ExpectationConfiguration(**e).to_domain_obj() for e in spec["expectations"]])
        suite = context.suites.add_or_update(suite)
        vd = context.validation_definitions.add_or_update(gx.ValidationDefinition(data=batch, suite=suite, name=name))
        cp = context.checkpoints.add_or_update(gx.Checkpoint(
            name=f"pixelscope-{name}", validation_definitions=[vd], actions=[UpdateDataDocsAction(name="docs")],
            result_format={"result_format": "SUMMARY"}))
        with _quiet():
            res = cp.run(batch_parameters={"dataframe": frames[name]})
        results = []
        for vr in res.run_results.values():
            for r in vr.results:
                cfg = r.expectation_config
                observed = r.result.get("observed_value")
                results.append({
                    "expectation": cfg.type, "column": cfg.kwargs.get("column"), "success": bool(r.success),
                    "why": (cfg.meta or {}).get("why"), "observed": _plain(observed),
                    "unexpected_percent": _plain(r.result.get("unexpected_percent")),
                    "unexpected": _plain(r.result.get("partial_unexpected_list")),
                    "kwargs": _plain({k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}),
                })
        out[name] = {"success": bool(res.success), "results": results}
    return out


def present_columns(frames: dict[str, Any], suites: dict[str, dict[str, Any]], issues_summary: Path
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Drop expectations marked `"meta": {"optional": true}` whose column the data lacks (a finder
    that was skipped writes no column: no labels, no splits, no embeddings); they are reported
    as skipped, with the finder's reason when issues.json has one. Others still fail loudly."""
    why = {}
    if issues_summary.exists():
        why = {name: f.get("skipped") for name, f in json.loads(issues_summary.read_text())["finders"].items()}
    kept: dict[str, dict[str, Any]] = {}
    skipped: dict[str, list[dict[str, Any]]] = {}
    for name, spec in suites.items():
        columns = set(frames[name].columns)
        keep = []
        for e in spec["expectations"]:
            col = e.get("kwargs", {}).get("column")
            if (e.get("meta") or {}).get("optional") and col is not None and col not in columns:
                reason = why.get(col) or ("the issues step did not run" if not why else "no such column")
                skipped.setdefault(name, []).append({
                    "expectation": e["type"], "column": col, "success": True, "skipped": f"{col} absent: {reason}",
                    "why": (e.get("meta") or {}).get("why"), "observed": None, "unexpected_percent": None,
                    "unexpected": None, "kwargs": e.get("kwargs", {})})
            else:
                keep.append(e)
        kept[name] = {**spec, "expectations": keep}
    return kept, skipped


class _quiet:
    """GX prints metric progress bars on stderr; a pipeline log does not need them."""

    def __enter__(self):
        import contextlib

        self._cm = contextlib.redirect_stderr(io.StringIO())
        self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str)) if x is not None else None


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
    for suite, rows in skipped.items():
        results[suite]["results"].extend(rows)
    docs = project / "gx" / "uncommitted" / "data_docs" / "local_site"
    if docs.exists():
        shutil.rmtree(out / "data_docs", ignore_errors=True)
        shutil.copytree(docs, out / "data_docs")
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
    return StepResult(STAGE, f"{verdict}; results: {out / 'results.json'}", time.perf_counter() - t0,
                      {"expectations": sum(len(r["results"]) for r in results.values()), "failed": len(failed),
                       "drifted": len(drifted)},
                      {"results": str(out / "results.json")}, {}, summary,
                      lines + [f"failed {f}" for f in failed])


def _failure(suite: str, r: dict[str, Any]) -> str:
    what = f"{suite}: {r['expectation']}({r['column'] or ''})"
    if r["observed"] is not None:
        return f"{what} observed {r['observed']}"
    if r["unexpected_percent"] is not None:
        examples = sorted(set(map(str, r["unexpected"] or [])))[:6]
        return f"{what} {r['unexpected_percent']:.1f}% unexpected" + (f", e.g. {', '.join(examples)}" if examples else "")
    return what
