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
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from pixelscope.atomic import atomic_path, write_bytes_atomic
from pixelscope.config import Params
from pixelscope.drift import compare
from pixelscope.profile import Profile
from pixelscope.steps import StepError

SUITES = ("quality", "drift")


class ValidationFailed(StepError):
    """The suites failed and validate.on_failure is `fail`: the message lists what failed."""


def load_reference(params: Params, project: Path) -> Profile | None:
    """The reference profile: a file, or params.paths.profile at a git rev (through DVC)."""
    v = params.validate_
    if v.reference is not None:
        path = project / v.reference
        if not path.exists():
            raise FileNotFoundError(f"validate.reference: no profile at {path}")
        return Profile.load(path)
    if v.reference_rev is not None:
        import dvc.api

        try:
            with dvc.api.open(str(params.paths.profile), repo=str(project), rev=v.reference_rev, mode="rb") as fh:
                return Profile.deserialize(fh.read())
        except Exception as e:  # noqa: BLE001 - unknown rev, not in the cache or remote: say which
            raise FileNotFoundError(f"validate.reference_rev {v.reference_rev!r}: cannot read {params.paths.profile} "
                                    f"at that revision through DVC ({type(e).__name__}: {e})") from None
    return None


def load_suite(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"expectation suite not found: {path} (see `pixelscope suite init`)") from None
    if not isinstance(spec, dict) or "expectations" not in spec:
        raise ValueError(f"{path}: not an expectation suite (needs 'name' and 'expectations')")
    return spec


def manifest_frame(manifest: Path):
    df = pq.read_table(manifest).to_pandas()
    # an image id in more than one split is leakage
    df["splits_of_id"] = df.groupby("id")["split"].transform(lambda s: s.fillna("(none)").nunique())
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


def validate(params: Params, project: Path) -> dict[str, Any]:
    """Run the suites, write reports/validate/ (results.json, drift.parquet, data_docs/)."""
    paths, v = params.paths, params.validate_
    manifest, profile_path = project / paths.manifest, project / paths.profile
    for need in (manifest, profile_path):
        if not need.exists():
            raise FileNotFoundError(f"{need} not found: run ingest and profile first")
    frames = {"quality": manifest_frame(manifest)}
    suites = {"quality": load_suite(project / v.suites / "quality.json")}
    reference = load_reference(params, project)
    out = project / v.results
    out.mkdir(parents=True, exist_ok=True)
    drifted: list[str] = []
    if reference is not None:
        rows = compare(reference, Profile.load(profile_path), params.drift)
        with atomic_path(out / "drift.parquet") as tmp:
            pq.write_table(pa.Table.from_pylist([r.to_dict() for r in rows]), tmp)
        frames["drift"] = drift_frame(rows)
        suites["drift"] = load_suite(project / v.suites / "drift.json")
        drifted = sorted({f"{r.feature}[{r.segment}] {r.test}" for r in rows if r.drift})
    results = run_suites(frames, suites, project)
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
    return summary


def _failure(suite: str, r: dict[str, Any]) -> str:
    what = f"{suite}: {r['expectation']}({r['column'] or ''})"
    if r["observed"] is not None:
        return f"{what} observed {r['observed']}"
    if r["unexpected_percent"] is not None:
        examples = sorted(set(map(str, r["unexpected"] or [])))[:6]
        return f"{what} {r['unexpected_percent']:.1f}% unexpected" + (f", e.g. {', '.join(examples)}" if examples else "")
    return what


def suite_from_reference(reference: Profile) -> dict[str, Any]:
    """A quality suite with bounds taken from a reference profile, to edit by hand."""
    def q(col: str, p: float) -> float | None:
        try:
            return reference.quantiles(col, [p])[0]
        except KeyError:
            return None

    def between(col: str, lo: float | None, hi: float | None, mostly: float, why: str) -> dict[str, Any]:
        kw: dict[str, Any] = {"column": col, "mostly": mostly}
        if lo is not None:
            kw["min_value"] = round(lo, 6)
        if hi is not None:
            kw["max_value"] = round(hi, 6)
        return {"type": "expect_column_values_to_be_between", "kwargs": kw, "meta": {"why": why}}

    readable = reference.ok / max(1, reference.files_seen)
    exps = [
        {"type": "expect_column_values_to_be_in_set",
         "kwargs": {"column": "status", "value_set": ["ok"], "mostly": round(max(0.0, readable - 0.02), 4)},
         "meta": {"why": f"share of readable files (reference {readable:.3f})"}},
        between("width", q("width", 0.0) and q("width", 0.0) / 2, q("width", 1.0) and q("width", 1.0) * 2, 0.99,
                "image width within half / twice the reference's range"),
        between("height", q("height", 0.0) and q("height", 0.0) / 2, q("height", 1.0) and q("height", 1.0) * 2, 0.99,
                "image height within half / twice the reference's range"),
        between("aspect_ratio", q("aspect_ratio", 0.01), q("aspect_ratio", 0.99), 0.95,
                "aspect ratio within the reference's 1-99 % range"),
        between("brightness_mean", q("brightness_mean", 0.01), q("brightness_mean", 0.99), 0.95,
                "few near-black / near-white images (reference 1-99 %)"),
        between("sharpness", q("sharpness", 0.02), None, 0.95, "few blurry images (reference 2 %)"),
        {"type": "expect_column_values_to_be_between", "kwargs": {"column": "splits_of_id", "max_value": 1},
         "meta": {"why": "no image id in two splits (leakage)"}},
    ]
    if "label" in reference.columns:
        labels = sorted(reference.columns["label"].frequencies())  # type: ignore[union-attr]
        if labels:
            exps.append({"type": "expect_column_values_to_be_in_set",
                         "kwargs": {"column": "label", "value_set": labels, "mostly": 1.0},
                         "meta": {"why": "only the reference's labels"}})
    return {"name": "quality", "expectations": [e for e in exps if len(e["kwargs"]) > 2 or "value_set" in e["kwargs"]
                                                or "max_value" in e["kwargs"]]}
