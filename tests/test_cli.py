"""The CLI as a user runs it: a real subprocess, exit codes, messages, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

REPO = Path(__file__).resolve().parents[1]


def cli(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelscope", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or REPO, timeout=300)


def assert_clean_error(r: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    for n in needles:
        assert n in r.stderr, r.stderr


@pytest.mark.slow
def test_ingest_profile_show_json(demo_raw, tmp_path):
    m, p = tmp_path / "m.parquet", tmp_path / "p.json"
    r = cli("ingest", demo_raw / "raw", "--out", m, "--workers", 2, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    c = s["counts"]
    assert c["files_seen"] == 50 and c["ok"] == 48 and c["errors"] == 2 and s["details"]["workers"] == 2
    assert c["ok"] + c["errors"] == c["files_seen"] and s["outputs"]["manifest"] == str(m)
    # --out moved the output, so the stage's metrics go beside it, not over the project's
    assert json.loads((tmp_path / "metrics" / "ingest.json").read_text())["files_seen"] == 50
    r = cli("ingest", demo_raw / "raw", "--out", m, "-q", "--set", f"paths.metrics={tmp_path / 'mine'}")
    assert r.returncode == 0 and (tmp_path / "mine" / "ingest.json").exists()  # an explicit --set wins
    r = cli("profile", m, "--out", p, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["counts"]["files_seen"] == 50
    r = cli("show", p, "--json")
    shown = json.loads(r.stdout)
    assert shown["errors_by_reason"] == {"empty_file": 1, "truncated": 1}
    assert {c["column"] for c in shown["columns"]} >= {"sharpness", "brightness_mean", "label"}
    r = cli("show", p, "--column", "sharpness", "--segment", "label=cat", "--json")
    detail = json.loads(r.stdout)
    assert detail["count"] == 8 and len(detail["histogram"]["counts"]) == 20
    r = cli("show", p)
    assert r.returncode == 0 and "brightness_mean" in r.stdout and "empty_file: 1" in r.stdout


@pytest.mark.slow
def test_merge_command(demo_raw, tmp_path):
    for name in ("raw", "new"):  # in tmp_path: no project embedding store next to it
        assert cli("ingest", demo_raw / name, "-o", tmp_path / f"{name}.parquet", "-q", cwd=tmp_path).returncode == 0
        assert cli("profile", tmp_path / f"{name}.parquet", "-o", tmp_path / f"{name}.json", cwd=tmp_path).returncode == 0
    r = cli("merge", tmp_path / "raw.json", tmp_path / "new.json", "-o", tmp_path / "all.json")
    assert r.returncode == 0, r.stderr
    shown = json.loads(cli("show", tmp_path / "all.json", "--json").stdout)
    assert shown["files_seen"] == 50 + (5 * 8 + 8)  # new batch: 5 classes x 8, plus 8 extra cats
    # drift: the new batch (darker, blurrier, lower JPEG quality) against the reference
    r = cli("drift", tmp_path / "raw.json", tmp_path / "new.json", "--json", "-o", tmp_path / "drift.parquet")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    drifted = {row["feature"] for row in d["table"] if row["drift"]}
    assert {"brightness_mean", "bytes_per_pixel"} <= drifted, drifted
    assert pq.read_table(tmp_path / "drift.parquet").num_rows == d["rows"]
    same = json.loads(cli("drift", tmp_path / "raw.json", tmp_path / "raw.json", "--json").stdout)
    assert same["drifted"] == 0 and same["rows"] > 50


def test_missing_path(tmp_path):
    assert_clean_error(cli("ingest", tmp_path / "nope", "-o", tmp_path / "m.parquet"), 1, "raw folder not found")
    assert_clean_error(cli("profile", tmp_path / "nope.parquet", "-o", tmp_path / "p.json"), 1, "manifest not found")
    assert_clean_error(cli("show", tmp_path / "nope.json"), 1, "file not found")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    r = cli("ingest", tmp_path / "empty", "-o", tmp_path / "m.parquet")
    assert_clean_error(r, 1, "no files to ingest")
    assert not (tmp_path / "m.parquet").exists()


def test_bad_params_name_the_key(tmp_path, demo_raw):
    bad = tmp_path / "params.yaml"
    bad.write_text("ingest:\n  workerz: 2\n")
    assert_clean_error(cli("ingest", demo_raw / "raw", "-o", tmp_path / "m.parquet", "--params", bad), 2, "ingest.workerz")
    assert_clean_error(cli("ingest", demo_raw / "raw", "--set", "profile.kll_k=tiny"), 2, "profile.kll_k")
    assert_clean_error(cli("ingest", demo_raw / "raw", "--params", tmp_path / "missing.yaml"), 2, "not found")


def test_not_a_profile_or_manifest(tmp_path):
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    assert_clean_error(cli("show", junk), 1, "not a pixelscope profile")
    junk_parquet = tmp_path / "junk.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), junk_parquet)
    assert_clean_error(cli("profile", junk_parquet, "-o", tmp_path / "p.json"), 1, "not a pixelscope manifest")
    # with models' columns to join (predictions here; the embed store's semantic columns alike), the
    # junk was read for the join first: an Arrow traceback instead of the message
    (tmp_path / "preds.csv").write_text("path,prediction\na.jpg,cat\n")
    assert_clean_error(cli("profile", junk_parquet, "-o", tmp_path / "p.json", "--set", "profile.predictions=preds.csv",
                           cwd=tmp_path), 1, "not a pixelscope manifest")


@pytest.mark.slow
def test_show_unknown_column_and_segment(demo_raw, tmp_path):
    cli("ingest", demo_raw / "raw", "-o", tmp_path / "m.parquet", "-q")
    cli("profile", tmp_path / "m.parquet", "-o", tmp_path / "p.json")
    assert_clean_error(cli("show", tmp_path / "p.json", "--column", "nope"), 1, "no profiled column")
    assert_clean_error(cli("show", tmp_path / "p.json", "--segment", "label=unicorn"), 1, "no label='unicorn'")


@pytest.mark.slow
def test_versioning_and_publish_errors_are_clear(tmp_path):
    (tmp_path / "data" / "raw").mkdir(parents=True)
    assert_clean_error(cli("version-data", cwd=tmp_path), 1, "not a DVC repository", "dvc init")
    assert_clean_error(cli("publish", cwd=tmp_path), 1, "not found: run ingest and profile first")
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    assert_clean_error(cli("version-data", cwd=empty), 1, "raw folder not found")
