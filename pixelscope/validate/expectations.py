"""Running expectation suites with Great Expectations over dataframes (the manifest frame of
io/manifest.py), optional expectations, one checkpoint per suite. Used by the validate
step and by curate (the curated set's own check); no drift code here."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from pixelscope.io.values import plain


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
                assert cfg is not None  # every result of a suite run names its expectation
                observed = r.result.get("observed_value")
                results.append({
                    "expectation": cfg.type, "column": cfg.kwargs.get("column"), "success": bool(r.success),
                    "why": (cfg.meta or {}).get("why"), "observed": plain(observed),
                    "unexpected_percent": plain(r.result.get("unexpected_percent")),
                    "unexpected": plain(r.result.get("partial_unexpected_list")),
                    "kwargs": plain({k: v for k, v in cfg.kwargs.items() if k not in ("batch_id",)}),
                })
        out[name] = {"success": bool(res.success), "results": results}
    return out


def present_columns(frames: dict[str, Any], suites: dict[str, dict[str, Any]], issues_summary: Path | None = None
                    ) -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """Drop expectations marked `"meta": {"optional": true}` whose column the data lacks (a finder
    that was skipped writes no column: no labels, no splits, no embeddings); they are reported
    as skipped, with the finder's reason when issues.json has one. Others still fail loudly."""
    why = {}
    if issues_summary is not None and issues_summary.exists():
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

