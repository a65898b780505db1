"""Validate: GX suites over the manifest and the drift table, on_failure, suite generation,
the reference read through DVC at a git rev."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, ingest_to, profile_to
from pixelscope.config import parse_params
from pixelscope.errors import StepError, ValidationFailed
from pixelscope.profile import Profile
from pixelscope.validate.step import validate_step
from pixelscope.validate.suites import suite_from_reference


@pytest.fixture(scope="module")
def profiles(demo_raw, tmp_path_factory) -> Path:
    """A project with the demo raw data's manifest + profile, and the shifted new batch's."""
    root = tmp_path_factory.mktemp("validate")
    shutil.copytree(REPO / "expectations", root / "expectations")
    p = parse_params({"ingest": {"workers": 1}})
    for name, src in (("raw", demo_raw / "raw"), ("new", demo_raw / "new")):
        ingest_to(p, src, root / f"{name}.parquet")
        profile_to(p, root / f"{name}.parquet", root / f"{name}.json")
    return root


def params_for(root: Path, current: str, **validate) -> object:
    return parse_params({"paths": {"manifest": f"{current}.parquet", "profile": f"{current}.json"},
                         "validate": {"results": f"results-{current}", **validate}})


@pytest.mark.slow
def test_quality_suite_runs_through_gx_with_observed_values(profiles):
    r = validate_step(params_for(profiles, "raw"), profiles)
    assert r.details["success"] and set(r.details["suites"]) == {"quality"}  # no reference: no drift suite
    results = r.details["suites"]["quality"]["results"]
    ran = [x for x in results if not x.get("skipped")]
    assert len(ran) == 7 and all(x["success"] for x in ran)
    # the issue-column expectations are optional: no issues table here, so they are skipped and say why
    assert sorted((x["column"], x["skipped"]) for x in results if x.get("skipped")) == [
        ("exact_duplicate", "exact_duplicate absent: the issues step did not run"),
        ("leakage", "leakage absent: the issues step did not run")]
    assert "quality: 7/7 expectations met" in r.notes
    status = next(x for x in results if x["column"] == "status")
    assert 0 < status["unexpected_percent"] < 5  # the demo's truncated + empty files
    saved = json.loads((profiles / "results-raw" / "results.json").read_text())
    assert saved["success"] and (profiles / "results-raw" / "data_docs" / "index.html").exists()
    # a suite that the data breaks fails, with what was observed
    strict = profiles / "strict"
    strict.mkdir(exist_ok=True)
    (strict / "quality.json").write_text(json.dumps({"name": "quality", "expectations": [
        {"type": "expect_column_values_to_be_between",
         "kwargs": {"column": "brightness_mean", "min_value": 0.6, "mostly": 0.9}}]}))
    with pytest.raises(ValidationFailed, match=r"quality: expect_column_values_to_be_between\(brightness_mean\)"):
        validate_step(params_for(profiles, "raw", suites="strict"), profiles)
    warned = validate_step(params_for(profiles, "raw", suites="strict", on_failure="warn"), profiles)
    assert not warned.details["success"] and warned.details["suites"]["quality"]["results"][0]["unexpected_percent"] > 10


@pytest.mark.slow
def test_drift_suite_fails_on_the_shifted_batch_and_passes_on_itself(profiles):
    with pytest.raises(ValidationFailed) as e:
        validate_step(params_for(profiles, "new", reference="raw.json"), profiles)
    assert "drift: expect_column_values_to_be_in_set(verdict)" in str(e.value)
    saved = json.loads((profiles / "results-new" / "results.json").read_text())
    assert not saved["success"] and any(d.startswith("brightness_mean[all]") for d in saved["drifted"])
    assert (profiles / "results-new" / "drift.parquet").exists()
    same = validate_step(params_for(profiles, "raw", reference="raw.json"), profiles)
    assert same.details["success"] and same.details["suites"]["drift"]["success"] and same.details["drifted"] == []
    assert issubclass(ValidationFailed, StepError)  # the CLI turns it into exit code 1


def test_suite_from_reference_round_trips(profiles, tmp_path):
    suite = suite_from_reference(Profile.load(profiles / "raw.json"))
    assert json.loads(json.dumps(suite)) == suite
    kinds = {(e["type"], e["kwargs"]["column"]) for e in suite["expectations"]}
    assert ("expect_column_values_to_be_in_set", "label") in kinds
    assert ("expect_column_values_to_be_between", "sharpness") in kinds
    labels = next(e for e in suite["expectations"] if e["kwargs"]["column"] == "label")["kwargs"]["value_set"]
    assert labels == ["astronaut", "cat", "coffee", "galaxy", "motorcycle", "rocket"]
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "quality.json").write_text(json.dumps(suite))
    shutil.copy(profiles / "raw.parquet", tmp_path / "raw.parquet")
    shutil.copy(profiles / "raw.json", tmp_path / "raw.json")
    r = validate_step(params_for(tmp_path, "raw", suites="suites"), tmp_path)
    assert r.details["success"], r.details["failed"]  # the reference passes the suite made from it


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelscope", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.mark.slow
def test_cli_validate_suite_init_and_reference_set(profiles, tmp_path):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    for f in ("raw.parquet", "raw.json", "new.parquet", "new.json"):
        shutil.copy(profiles / f, tmp_path / f)
    r = cli("suite", "init", "--from-reference", "raw.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(json.loads((tmp_path / "expectations" / "quality.json").read_text())["expectations"]) >= 7
    assert cli("suite", "init", "--from-reference", "raw.json", cwd=tmp_path).returncode == 1  # no silent overwrite
    shutil.copy(REPO / "expectations" / "drift.json", tmp_path / "expectations" / "drift.json")
    r = cli("reference", "set", "--profile", "raw.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "params.yaml").read_text()
    assert "reference: raw.json" in text and "# Every knob of every step" in text  # comments kept
    r = cli("validate", "--set", "paths.manifest=new.parquet", "--set", "paths.profile=new.json", cwd=tmp_path)
    assert r.returncode == 1 and "validation failed" in r.stderr and "Traceback" not in r.stderr
    r = cli("validate", "--set", "paths.manifest=raw.parquet", "--set", "paths.profile=raw.json", cwd=tmp_path)
    assert r.returncode == 0 and "validation passed" in r.stdout, r.stdout + r.stderr


@pytest.mark.slow
def test_quality_suites_can_bound_the_issue_columns(profiles, demo_raw, tmp_path):
    """With the issues stage's table beside the manifest, a quality suite sees its columns."""
    from pixelscope.errors import BadInput
    from pixelscope.issues.step import issues_step

    for f in ("raw.parquet", "raw.json"):
        shutil.copy(profiles / f, tmp_path / f)
    p = parse_params({"paths": {"manifest": "raw.parquet", "profile": "raw.json", "raw": str(demo_raw / "raw"),
                                "embeddings": "none", "issues": "issues.parquet", "issue_pairs": "pairs.parquet",
                                "issues_summary": "issues.json", "metrics": "metrics"},
                      "validate": {"results": "results", "suites": "suites"}})
    issues_step(p, tmp_path)
    (tmp_path / "suites").mkdir()

    def suite(mostly: float) -> None:
        (tmp_path / "suites" / "quality.json").write_text(json.dumps({"name": "quality", "expectations": [
            {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "unreadable", "value_set": [False],
                                                                     "mostly": mostly}}]}))

    suite(0.9)
    r = validate_step(p, tmp_path)
    assert r.details["success"] and r.details["suites"]["quality"]["results"][0]["unexpected_percent"] == 4.0
    suite(0.99)  # the demo's 2 broken files of 50 are 4 %
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_be_in_set\(unreadable\)"):
        validate_step(p, tmp_path)
    shutil.copy(profiles / "new.parquet", tmp_path / "raw.parquet")  # the issues table now describes another manifest
    with pytest.raises(BadInput, match="does not describe"):
        validate_step(p, tmp_path)


@pytest.mark.slow
def test_the_default_suite_checks_leakage_and_copies_when_the_issues_step_ran(corpus, tmp_path):
    """The shipped quality suite bounds the issue columns: a photo copied into train and val fails
    it (leakage); without splits the leakage check is skipped with the finder's reason; a
    non-optional expectation on a missing column still fails."""
    from pixelscope.issues.step import issues_step

    shutil.copytree(REPO / "expectations", tmp_path / "expectations")
    src = sorted((corpus / "labeled" / "hymenoptera").rglob("*.jpg"))[:12]

    def project(name: str, layout) -> tuple[object, Path]:
        root = tmp_path / name
        p = parse_params({"ingest": {"workers": 1}, "paths": {"embeddings": "none"}})
        raw = root / p.paths.raw
        for k, f in enumerate(src):
            for folder in layout(k):
                (raw / folder).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, raw / folder / f.name)
        shutil.copytree(tmp_path / "expectations", root / "expectations")
        ingest_to(p, raw, root / p.paths.manifest)
        profile_to(p, root / p.paths.manifest, root / p.paths.profile)
        issues_step(p, root)
        return p, root

    p, root = project("leaky", lambda k: ["train/ant"] + (["val/ant"] if k == 0 else []))
    with pytest.raises(ValidationFailed, match=r"expect_column_values_to_be_in_set\(leakage\)"):
        validate_step(p, root)
    p, root = project("flat", lambda k: ["ant"])
    r = validate_step(p, root)
    results = r.details["suites"]["quality"]["results"]
    assert [x["skipped"] for x in results if x.get("skipped")] == [
        "leakage absent: no splits (no train/val/test folders in the paths)"]
    assert next(x for x in results if x["column"] == "exact_duplicate")["success"]
    (root / "expectations" / "quality.json").write_text(json.dumps({"name": "quality", "expectations": [
        {"type": "expect_column_values_to_be_in_set", "kwargs": {"column": "leakage", "value_set": [False]}}]}))
    with pytest.raises(ValidationFailed, match=r"leakage"):
        validate_step(p, root)
