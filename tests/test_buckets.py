"""Raw data in a bucket: a real S3 API on loopback (moto's server, authentication on), a
fault-injecting proxy in front of it, and the same corpus photos on disk to compare with."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from pixelscope.config import Params, StorageConfig
from pixelscope.errors import StorageError
from pixelscope.io.url import Url

pytest.importorskip("moto")
pytest.importorskip("s3fs")

from s3server import FaultProxy, S3Server  # noqa: E402

BUCKET = "pixelscope-raw"


@pytest.fixture(scope="module")
def photos(corpus, tmp_path_factory) -> Path:
    """200 corpus files (every folder but odd/: cameras, EXIF orientations, formats, labeled), on disk."""
    files = sorted(p for p in corpus.rglob("*") if p.is_file() and p.parent != corpus and "odd" not in p.parts)
    step = len(files) / 200
    chosen = [files[int(k * step)] for k in range(200)]
    root = tmp_path_factory.mktemp("disk") / "photos"
    for f in chosen:
        dst = root / f.relative_to(corpus)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dst)
    return root


@pytest.fixture(scope="module")
def s3(photos):
    with S3Server() as server:
        server.bucket(BUCKET)
        server.upload_folder(photos, BUCKET, "photos")
        yield server


@pytest.fixture
def aws(s3, monkeypatch):
    """This process reads the bucket with the standard AWS variables (as a user's shell would set them)."""
    for k, v in s3.env().items():
        monkeypatch.setenv(k, v)
    return s3


def ingest(params: Params, raw: Path | str, out: Path, **storage) -> dict:
    from conftest import ingest_to

    p = params.model_copy(deep=True)
    p.storage = StorageConfig(**storage)
    p.ingest.workers = 2
    result = ingest_to(p, raw, out)  # type: ignore[arg-type]
    return result.metrics


def table(path: Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas().sort_values("path").reset_index(drop=True)


@pytest.fixture(scope="module")
def disk_manifest(photos, tmp_path_factory) -> Path:
    from conftest import ingest_to
    from pixelscope.config import parse_params

    out = tmp_path_factory.mktemp("disk-manifest") / "manifest.parquet"
    p = parse_params({})
    p.ingest.workers = 2
    ingest_to(p, photos, out)
    return out


@pytest.fixture(scope="module")
def on_disk(disk_manifest) -> pd.DataFrame:
    return table(disk_manifest)


def test_a_bucket_and_the_same_files_on_disk_give_the_same_manifest(aws, on_disk, params, tmp_path):
    m = ingest(params, "s3://pixelscope-raw/photos", tmp_path / "m.parquet")
    remote = table(tmp_path / "m.parquet")
    assert m["files_seen"] == 200 and m["ok"] + m["errors"] == 200 and m["retried_reads"] == 0
    assert (remote["status"] == "ok").sum() >= 190  # a few corpus files are real decode errors, on both sides
    # ids are content hashes; features, EXIF, labels, sources, splits, error reasons: all identical
    pd.testing.assert_frame_equal(remote, on_disk)


def test_profiles_of_bucket_and_disk_agree(aws, disk_manifest, params, tmp_path):
    from conftest import profile_to
    from pixelscope.profile import Profile

    ingest(params, "s3://pixelscope-raw/photos", tmp_path / "m.parquet")
    local = disk_manifest
    profile_to(params, tmp_path / "m.parquet", tmp_path / "remote.json")
    profile_to(params, local, tmp_path / "local.json")
    a, b = Profile.load(tmp_path / "remote.json"), Profile.load(tmp_path / "local.json")
    assert a.files_seen == b.files_seen == 200 and a.ok == b.ok and a.errors_by_reason == b.errors_by_reason
    for feature in ("brightness_mean", "sharpness", "width", "height"):
        qs = [0.1, 0.5, 0.9]
        assert a.quantiles(feature, qs) == pytest.approx(b.quantiles(feature, qs), rel=0.05), feature


def test_throttled_gets_are_retried_and_nothing_is_lost(s3, on_disk, params, tmp_path, monkeypatch):
    with FaultProxy(s3.endpoint, fail_every=10) as proxy:
        for k, v in s3.env(proxy.endpoint).items():
            monkeypatch.setenv(k, v)
        m = ingest(params, "s3://pixelscope-raw/photos", tmp_path / "m.parquet")
    assert proxy.failed >= 20, "the proxy answered 503 to every 10th GET"
    assert m["files_seen"] == 200 and m["retried_reads"] == proxy.failed
    pd.testing.assert_frame_equal(table(tmp_path / "m.parquet"), on_disk)


def test_an_object_deleted_after_listing_is_a_gone_row(aws, params, tmp_path):
    from pixelscope.ingest.step import finish_ingest, ingest_part, plan_ingest

    aws.bucket("pixelscope-gone")
    c = aws.client()
    for k in range(4):
        c.put_object(Bucket="pixelscope-gone", Key=f"p/cat/{k}.jpg", Body=(params_jpeg := _jpeg(k)))
    p = params.model_copy(deep=True)
    p.paths.raw = Url("s3://pixelscope-gone/p")
    p.paths.manifest = tmp_path / "m.parquet"
    p.paths.metrics = tmp_path / "metrics"
    plan = plan_ingest(p, ".")
    c.delete_object(Bucket="pixelscope-gone", Key="p/cat/2.jpg")
    result = finish_ingest(p, ".", plan, [ingest_part(s, p, in_pool=False) for s in plan.shards], time.perf_counter(), 1)
    rows = table(tmp_path / "m.parquet").set_index("path")
    assert rows.at["cat/2.jpg", "reason"] == "gone" and "deleted or renamed after it was listed" in rows.at["cat/2.jpg", "detail"]
    assert result.counts["files_seen"] == 4 and result.counts["ok"] == 3 and result.counts["errors"] == 1
    assert len(params_jpeg) > 0


def _jpeg(seed: int) -> bytes:
    import numpy as np

    from conftest import jpeg_bytes

    return jpeg_bytes(np.random.default_rng(seed).integers(0, 255, (48, 64, 3), dtype=np.uint8))


def cli(args: list[str], env: dict[str, str], cwd: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pixelscope", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=300, **kw)


def test_a_wrong_secret_is_one_clear_error_naming_the_bucket(s3, tmp_path):
    r = cli(["ingest", "s3://pixelscope-raw/photos", "-o", str(tmp_path / "m.parquet")],
            s3.env(secret="not-the-secret"), tmp_path)
    assert r.returncode == 1, r.stderr
    assert "s3://pixelscope-raw" in r.stderr and "refused the credentials" in r.stderr
    assert "Traceback" not in r.stderr and "not-the-secret" not in r.stderr + r.stdout
    assert not (tmp_path / "m.parquet").exists()


def test_wrong_bucket_and_bad_listing_are_storage_errors(aws, params):
    from pixelscope.io.discover import discover

    with pytest.raises(StorageError, match="no such bucket or prefix"):
        discover(Url("s3://no-such-bucket-here/x"), params.ingest)


@pytest.mark.slow
def test_kill_9_mid_ingest_then_a_rerun_gives_the_same_manifest(s3, on_disk, tmp_path):
    """Each GET waits 30 ms at the proxy, so the run is still going when it is killed."""
    out = tmp_path / "m.parquet"
    with FaultProxy(s3.endpoint, latency_s=0.03) as proxy:
        env = {**s3.env(proxy.endpoint), "PYTHONUNBUFFERED": "1"}
        args = ["ingest", "s3://pixelscope-raw/photos", "-o", str(out), "--workers", "2", "--set",
                "storage.concurrency=2"]
        proc = subprocess.Popen([sys.executable, "-m", "pixelscope", *args], cwd=tmp_path, env={**os.environ, **env},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        while proxy.gets < 60 and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        assert not out.exists(), "a killed run leaves no manifest (it is written atomically)"
        r = cli(args, env, tmp_path)
    assert r.returncode == 0, r.stderr
    pd.testing.assert_frame_equal(table(out), on_disk)


def test_no_local_copy_and_no_credentials_in_any_output(s3, photos, tmp_path):
    """After an ingest from the bucket, nothing under the project or the temp dir holds the images'
    bytes, and the secret and key id appear in no file written."""
    project, tmp = tmp_path / "project", tmp_path / "tmp"
    project.mkdir()
    tmp.mkdir()
    env = {**s3.env(), "TMPDIR": str(tmp)}
    r = cli(["ingest", "s3://pixelscope-raw/photos", "-o", "data/manifest.parquet", "--workers", "2"], env, project)
    assert r.returncode == 0, r.stderr
    images = sum(f.stat().st_size for f in photos.rglob("*") if f.is_file())
    written = [f for root in (project, tmp) for f in root.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in written) < 0.1 * images, [(f, f.stat().st_size) for f in written]
    for f in written:
        data = f.read_bytes()
        assert s3.secret.encode() not in data and s3.key_id.encode() not in data, f
    assert s3.secret not in r.stdout + r.stderr and s3.key_id not in r.stdout + r.stderr
    metrics = json.loads((project / "data" / "metrics" / "ingest.json").read_text())
    assert metrics["files_seen"] == 200
