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
from test_pipeline import dask_cluster  # noqa: E402,F401 - a fixture

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
        c.put_object(Bucket="pixelscope-gone", Key=f"p/cat/{k}.jpg", Body=_jpeg(k))
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


def test_an_empty_object_is_the_row_an_empty_file_is(aws, params, tmp_path):
    """S3 answers a ranged GET of an empty object with 416: a listed size is read with a plain GET."""
    from conftest import ingest_to

    aws.bucket("pixelscope-empty")
    aws.client().put_object(Bucket="pixelscope-empty", Key="p/a/empty.jpg", Body=b"")
    aws.client().put_object(Bucket="pixelscope-empty", Key="p/a/ok.jpg", Body=_jpeg(1))
    (tmp_path / "disk" / "a").mkdir(parents=True)
    (tmp_path / "disk" / "a" / "empty.jpg").write_bytes(b"")
    (tmp_path / "disk" / "a" / "ok.jpg").write_bytes(_jpeg(1))
    ingest(params, "s3://pixelscope-empty/p", tmp_path / "remote.parquet")
    ingest_to(params, tmp_path / "disk", tmp_path / "local.parquet")
    pd.testing.assert_frame_equal(table(tmp_path / "remote.parquet"), table(tmp_path / "local.parquet"))


def test_a_versioned_bucket_lists_version_ids_and_last_modified(aws):
    from pixelscope.io.location import list_objects

    aws.bucket("pixelscope-listed", versioned=True)
    for body in (b"one", b"two"):  # overwritten: the listing shows the current version
        aws.client().put_object(Bucket="pixelscope-listed", Key="p/x.jpg", Body=body)
    current = aws.client().head_object(Bucket="pixelscope-listed", Key="p/x.jpg")
    (obj,) = list_objects(Url("s3://pixelscope-listed/p"), StorageConfig(version_aware=True))
    assert (obj.rel, obj.size, obj.version_id) == ("x.jpg", 3, current["VersionId"])
    assert obj.etag == current["ETag"].strip('"') and obj.modified and obj.modified[:4].isdigit()


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


@pytest.fixture(scope="module")
def bucket_project(s3, tmp_path_factory, prefect_server):
    """A git + DVC project whose paths.raw is a versioned bucket prefix (the demo's 50 images, uploaded,
    no local copy): v1 run by the Prefect pipeline flow; then one object overwritten and two added,
    and v2 run by `dvc repro`."""
    from PIL import Image
    from test_pipeline import make_project, set_param, sh

    from flows.pipeline import pipeline

    project = make_project(tmp_path_factory.mktemp("bucket") / "project")
    raw = project / "data" / "raw"
    s3.bucket("pixelscope-versioned", versioned=True)
    s3.upload_folder(raw, "pixelscope-versioned", "raw")
    files = sorted(p.relative_to(raw).as_posix() for p in raw.rglob("*_0*.jpg"))
    staged = tmp_path_factory.mktemp("changes")
    Image.open(raw / files[0]).transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(staged / "overwrite.jpg", quality=90)
    for k in range(2):
        Image.open(raw / files[5 + k]).rotate(90).save(staged / f"added_{k}.jpg", quality=90)
    shutil.rmtree(raw)  # the bucket is the only copy
    set_param(project, "paths.raw", "s3://pixelscope-versioned/raw")
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "raw data in a bucket"], project)
    env = s3.env()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the flow runs here, as a user's Prefect worker with AWS variables would
    try:
        v1 = pipeline(str(project))
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "v1"], project)
    sh(["git", "tag", "v1"], project)
    c = s3.client()
    c.put_object(Bucket="pixelscope-versioned", Key=f"raw/{files[0]}", Body=(staged / "overwrite.jpg").read_bytes())
    added = [f"{files[5 + k].rsplit('/', 1)[0]}/added_{k}.jpg" for k in range(2)]
    for k, key in enumerate(added):
        c.put_object(Bucket="pixelscope-versioned", Key=f"raw/{key}", Body=(staged / f"added_{k}.jpg").read_bytes())
    status = sh([sys.executable, "-m", "dvc", "status"], project, env=env).stdout
    repro = sh([sys.executable, "-m", "dvc", "repro"], project, env=env).stdout
    sh(["git", "add", "-A"], project)
    sh(["git", "commit", "-qm", "v2"], project)
    sh(["git", "tag", "v2"], project)
    return project, v1, status, repro, {"modified": files[0], "added": sorted(added)}, env


@pytest.mark.slow
def test_the_pipeline_runs_on_a_bucket_through_prefect_and_dvc(bucket_project):
    import yaml

    project, v1, status, repro, made, env = bucket_project
    assert v1["ingest"]["counts"]["files_seen"] == 50 and v1["ingest"]["counts"]["ok"] == 48
    assert "in a store, not copied" in v1["version"]["summary"]
    assert not (project / "data" / "raw").exists(), "nothing of the bucket was copied into the project"
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    dep = next(d for d in lock["stages"]["ingest"]["deps"] if d["path"].startswith("s3://"))
    assert dep["path"] == "s3://pixelscope-versioned/raw" and dep["nfiles"] == 52 and dep["md5"].endswith(".dir")
    # v2: DVC saw the bucket change and reran what depends on it
    assert "modified:           s3://pixelscope-versioned/raw" in status, status
    assert "Running stage 'ingest'" in repro and "Running stage 'curate'" in repro, repro
    m = pq.read_table(project / "data/interim/manifest.parquet").to_pandas()
    assert len(m) == 52 and set(made["added"]) <= set(m["path"])
    # the curated exports and the dashboard's thumbnails were made from the bucket
    assert any((project / "data/curated/webdataset").glob("*.tar"))
    placed = json.loads((project / "data/curated/curate.json").read_text())
    assert placed["exports"]["torchvision"]["placed"] == {"copy": placed["exports"]["torchvision"]["files"]}
    assert any((project / "reports/publish").rglob("part-*.parquet"))
    # no credential in any file the pipeline, DVC, git or the bundle wrote
    secret, key_id = env["AWS_SECRET_ACCESS_KEY"].encode(), env["AWS_ACCESS_KEY_ID"].encode()
    leaked = [f for f in project.rglob("*") if f.is_file() and (secret in (b := f.read_bytes()) or key_id in b)]
    assert not leaked, leaked


@pytest.mark.slow
def test_diff_and_history_of_bucket_versions(bucket_project, tmp_path):
    from test_pipeline import sh

    project, _, _, _, made, env = bucket_project
    d = json.loads(sh([sys.executable, "-m", "pixelscope", "diff", "v1", "v2", "--json"], project, env=env).stdout)
    c = d["counts"]
    assert (c["added"], c["removed"], c["modified"], c["moved"]) == (2, 0, 1, 0), d["images"]
    assert d["images"]["added"] == made["added"] and d["images"]["modified"] == [made["modified"]]
    assert d["a"]["md5"] and d["a"]["md5"] != d["b"]["md5"]
    out = json.loads(sh([sys.executable, "-m", "pixelscope", "history", "--json"], project, env=env).stdout)
    assert out["counts"]["versions"] == 2, out
    h = pd.read_parquet(project / "reports" / "history" / "history.parquet")
    assert h["rev"].tolist() == ["v1", "v2"] and h["files"].tolist() == [50, 52]


@pytest.fixture
def bucket_env(bucket_project, monkeypatch):
    """The AWS variables in this process before the Dask workers start: each worker reads the bucket
    with its own environment, as a worker on another machine (no shared filesystem) would."""
    for k, v in bucket_project[-1].items():
        monkeypatch.setenv(k, v)


@pytest.mark.slow
def test_dask_workers_read_the_bucket_themselves(bucket_project, bucket_env, prefect_server, dask_cluster, tmp_path):  # noqa: F811
    """A scheduler and two worker processes (the `dask` command line): shards of object keys go to the
    workers, which read the objects straight from the bucket; the manifest equals the local runner's."""
    from test_pipeline import run_on_dask

    project = bucket_project[0]
    address, _ = dask_cluster
    assert run_on_dask(project, tmp_path, address)["counts"]["files_seen"] == 52
    pd.testing.assert_frame_equal(table(tmp_path / "dask.parquet"), table(project / "data/interim/manifest.parquet"))


@pytest.mark.slow
def test_the_dashboard_streams_an_opened_image_from_the_bucket(bucket_project, bucket_env, monkeypatch):
    """Thumbnails come from the bundle; `full size` reads the original from the bucket (nothing saved)."""
    from test_dashboard import app, shown

    project = bucket_project[0]
    monkeypatch.setenv("PIXELSCOPE_PROJECT", str(project))
    m = table(project / "data/interim/manifest.parquet")
    one = m[m["status"] == "ok"].iloc[0]
    at = app(project / "reports" / "publish", "images", monkeypatch, image=one["id"][:16])
    at.toggle(key="full_size").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [shown(c) for img in at.get("image") for c in img.captions]
    expected = f"s3://pixelscope-versioned/raw/{one['path']} · {int(one['width'])}×{int(one['height'])}"
    assert any(c.startswith(expected) for c in captions), captions
    assert not (project / "data" / "raw").exists()


@pytest.mark.slow
def test_monitor_a_drop_in_a_bucket(s3, bucket_project, tmp_path):
    """`pixelscope monitor s3://.../drops/<day>`: the drop is listed, ingested, embedded and profiled
    from the bucket and recorded, as a folder drop is."""
    from test_pipeline import sh

    project = tmp_path / "project"
    shutil.copytree(bucket_project[0], project, symlinks=True)  # the other tests read the original's history
    env = bucket_project[-1]
    c = s3.client()
    keys = [o["Key"] for o in c.list_objects_v2(Bucket="pixelscope-versioned", Prefix="raw/field/cat/")["Contents"]][:6]
    for k, key in enumerate(keys):
        body = c.get_object(Bucket="pixelscope-versioned", Key=key)["Body"].read()
        c.put_object(Bucket="pixelscope-versioned", Key=f"drops/2026-12-06/cat/{k}.jpg", Body=body)
    r = sh([sys.executable, "-m", "pixelscope", "monitor", "s3://pixelscope-versioned/drops/2026-12-06",
            "--set", "validate.reference_rev=v1", "--on-drift", "warn", "--json"], project, env=env)
    out = json.loads(r.stdout)
    drop = project / "reports" / "monitor" / "drops" / "2026-12-06"
    m = table(drop / "manifest.parquet")
    assert m["path"].tolist() == [f"cat/{k}.jpg" for k in range(6)] and (m["status"] == "ok").all()
    assert (drop / "profile.json").exists() and out["stage"] == "monitor"
    h = pd.read_parquet(project / "reports" / "history" / "history.parquet")
    assert "drop:2026-12-06" in set(h["key"])


@pytest.mark.slow
def test_curate_streams_the_exports_into_a_bucket(s3, bucket_project, tmp_path, monkeypatch):
    """curate.output = s3://...: the exports are written into the store (the tree by server-side copies
    from the raw objects, the shards streamed), each file matching its SHA256SUMS; the real readers
    load them from the store; the project keeps the ledger and card, and no image."""
    import hashlib

    import webdataset as wds
    from test_pipeline import sh

    from pixelscope.io.location import filesystem

    project = tmp_path / "project"
    shutil.copytree(bucket_project[0], project, symlinks=True)
    env = bucket_project[-1]
    r = sh([sys.executable, "-m", "pixelscope", "curate", "--json", "--set", "curate.output=s3://pixelscope-versioned/curated"],
           project, env=env)
    out = json.loads(r.stdout)
    ledger = pd.read_parquet(project / "data/curated/curation.parquet")
    kept = ledger[ledger["included"]]
    assert out["counts"]["included"] == len(kept) > 15
    for name in ("webdataset", "parquet", "torchvision", "imagefolder"):
        assert not (project / "data/curated" / name).exists(), f"{name}: written locally"
    c = s3.client()

    def get(key: str) -> bytes:
        return c.get_object(Bucket="pixelscope-versioned", Key=f"curated/{key}")["Body"].read()

    for fmt in ("webdataset", "parquet", "torchvision", "imagefolder"):
        sums = dict(reversed(line.split("  ", 1)) for line in get(f"{fmt}/SHA256SUMS").decode().splitlines())
        assert sums and all(hashlib.sha256(get(f"{fmt}/{p}")).hexdigest() == h for p, h in sums.items()), fmt
    # the readers: webdataset over the tar bytes, pyarrow over s3fs, the tree's files are the raw objects
    shards = out["details"]["exports"]["webdataset"]["shards"]
    for t in shards:  # the test's own copy, for the reader (the pipeline wrote none)
        (tmp_path / t).write_bytes(get(f"webdataset/{t}"))
    n = sum(1 for _ in wds.WebDataset([str(tmp_path / t) for t in shards], shardshuffle=False))
    assert n == len(kept)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fs = filesystem("s3")
    rows = sum(pq.read_table(fh).num_rows for f in fs.glob("pixelscope-versioned/curated/parquet/data/*.parquet")
               for fh in [fs.open(f, "rb")])
    assert rows == len(kept)
    tree = [k["Key"] for k in c.list_objects_v2(Bucket="pixelscope-versioned", Prefix="curated/torchvision/")["Contents"]]
    assert len([k for k in tree if not k.endswith("SHA256SUMS")]) == len(kept)
    assert out["details"]["exports"]["torchvision"]["placed"] == {"copy": len(kept)}
    assert json.loads(get("curate.json"))["included"] == len(kept) and get("README.md").startswith(b"---")


def test_store_params_are_checked_and_hold_no_secret():
    from pixelscope.config import parse_params
    from pixelscope.errors import ConfigError

    with pytest.raises(ConfigError, match="curate.output"):
        parse_params({"curate": {"output": "data/elsewhere"}})
    with pytest.raises(ConfigError, match="storage.secret"):  # there is no place for a credential
        parse_params({"storage": {"secret": "x"}})
    p = parse_params({"paths": {"raw": "s3://bucket/photos/"}, "monitor": {"drop": "s3://bucket/drops/d1"}})
    assert isinstance(p.paths.raw, Url) and p.paths.raw == "s3://bucket/photos" and p.paths.raw.bucket == "bucket"
    assert p.paths.under("/project").raw == "s3://bucket/photos" and isinstance(p.monitor.drop, Url)
    assert p.model_dump(mode="json")["paths"]["raw"] == "s3://bucket/photos"


def test_an_http_folder_listing_is_read_through_the_same_fsspec_code(photos, on_disk, params, tmp_path):
    """https:// / http:// (and gs://, az:// with their fsspec packages) go through fsspec's listing and
    reads: an HTTP server's folder listing on loopback gives the manifest the disk gives."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(photos.parent)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        m = ingest(params, f"http://127.0.0.1:{server.server_address[1]}/{photos.name}", tmp_path / "m.parquet")
    finally:
        server.shutdown()
        server.server_close()
    assert m["files_seen"] == 200
    pd.testing.assert_frame_equal(table(tmp_path / "m.parquet"), on_disk)


def test_a_failed_export_leaves_no_half_written_object_and_errors_echo_no_key(aws):
    """A shard whose writing fails is discarded, not committed; a store's error body (which can echo
    the request, access key id included) is cut to its code and message."""
    from pixelscope.curate.export import _writer
    from pixelscope.io.location import HTTPStatusError

    aws.bucket("pixelscope-exports")
    with pytest.raises(RuntimeError, match="disk full"), _writer("s3://pixelscope-exports/x/shard.tar") as fh:
        fh.write(b"half a shard")
        raise RuntimeError("disk full")
    with _writer("s3://pixelscope-exports/x/whole.tar") as fh:
        fh.write(b"a whole shard")
    keys = [o["Key"] for o in aws.client().list_objects_v2(Bucket="pixelscope-exports").get("Contents", [])]
    assert keys == ["x/whole.tar"]
    body = (b"<Error><Code>SignatureDoesNotMatch</Code><Message>The signature does not match</Message>"
            b"<AWSAccessKeyId>AKIAEXAMPLEKEY</AWSAccessKeyId><StringToSign>AWS4...</StringToSign></Error>")
    e = HTTPStatusError(403, body)
    assert str(e) == "HTTP 403: SignatureDoesNotMatch - The signature does not match" and "AKIA" not in str(e)
