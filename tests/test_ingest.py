"""Ingest on real files: every file ends up ok or as an error with a specific reason."""

from __future__ import annotations

import csv

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import ingest_to, jpeg_bytes
from pixelscope.config import parse_params
from pixelscope.io.decode import (
    DECODE_ERROR,
    DECOMPRESSION_BOMB,
    EMPTY_FILE,
    EXIF_UNREADABLE,
    NOT_AN_IMAGE,
    TRUNCATED,
)
from pixelscope.io.manifest import column_kinds

REASONS = {DECODE_ERROR, DECOMPRESSION_BOMB, EMPTY_FILE, EXIF_UNREADABLE, NOT_AN_IMAGE, TRUNCATED,
           "unsupported_mode", "read_error", "feature_error"}


def run(root, out, **over):
    p = parse_params({"ingest": {"workers": 1, **over.pop("ingest", {})}, **over})
    summary = ingest_to(p, root, out)
    return summary, pq.read_table(out)


@pytest.fixture(scope="module")
def corpus_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus") / "manifest.parquet"
    return run(corpus, out, ingest={"workers": 2})


def test_every_corpus_file_is_ok_or_a_reasoned_error(corpus, corpus_run):
    summary, t = corpus_run
    listed = {r["path"] for r in csv.DictReader(open(corpus / "MANIFEST.csv"))}
    assert set(t.column("path").to_pylist()) == listed  # README/MANIFEST/SHA256SUMS excluded
    assert summary.counts["files_seen"] == len(listed) == t.num_rows
    assert summary.counts["ok"] + summary.counts["errors"] == summary.counts["files_seen"]
    on_disk = sum(1 for f in corpus.rglob("*") if f.is_file())
    assert summary.counts["excluded"] == on_disk - len(listed) > 0  # README, MANIFEST, SHA256SUMS, ...
    rows = t.to_pylist()
    for r in rows:
        assert r["status"] in ("ok", "error")
        if r["status"] == "error":
            assert r["reason"] in REASONS and r["detail"], r
        else:
            assert r["reason"] is None and r["width"] > 0 and r["height"] > 0 and r["brightness_mean"] is not None
    assert sum(r["status"] == "error" for r in rows) == summary.counts["errors"]
    assert summary.counts["ok"] >= 375  # everything outside odd/ decodes, most of odd/ too


def test_odd_files_get_specific_reasons(corpus_run):
    _, t = corpus_run
    by_path = {r["path"]: r for r in t.to_pylist()}
    expected = {
        "odd/zero_bytes.jpg": EMPTY_FILE,
        "odd/truncated_jpeg.jpg": TRUNCATED,
        "odd/truncated_end_chunk.png": TRUNCATED,
        "odd/decompression_bomb.gif": DECOMPRESSION_BOMB,
        "odd/text_file_named.jpg": NOT_AN_IMAGE,
        "odd/broken.png": NOT_AN_IMAGE,
        "odd/broken_data_stream.png": DECODE_ERROR,
        "odd/seek_too_large.tif": DECODE_ERROR,
        "odd/hopper_webp.tif": DECODE_ERROR,
    }
    for path, reason in expected.items():
        assert by_path[path]["status"] == "error" and by_path[path]["reason"] == reason, by_path[path]
    for ok in ["odd/png_data_with_jpg_extension.jpg", "odd/image00971.jpg", "odd/image01980.jpg",
               "odd/exif-dpi-zerodivision.jpg"]:
        assert by_path[ok]["status"] == "ok", by_path[ok]
    assert by_path["odd/png_data_with_jpg_extension.jpg"]["format"] == "PNG"
    heif = by_path["odd/samplefilehub.heif"]
    pytest.importorskip("pillow_heif")
    assert heif["status"] == "ok" and heif["format"] == "HEIF"


def test_modes_are_normalised(corpus_run):
    _, t = corpus_run
    rows = [r for r in t.to_pylist() if r["status"] == "ok"]
    modes = {r["mode"] for r in rows}
    assert {"CMYK", "I;16", "I;16B", "I", "F", "LAB", "1", "P", "PA", "LA", "RGBA", "L"} <= modes
    for r in rows:
        assert 0 <= r["brightness_mean"] <= 1


def test_frames_and_alpha(corpus_run):
    _, t = corpus_run
    by_path = {r["path"]: r for r in t.to_pylist()}
    assert by_path["pillow/webp/iss634.webp"]["frames"] == 42
    assert by_path["pillow/tiff/multipage.tiff"]["frames"] == 3
    assert any(r["has_alpha"] for r in by_path.values() if r["mode"] == "RGBA")


def test_sizes_match_the_corpus_manifest(corpus, corpus_run):
    """Stored sizes from MANIFEST.csv, swapped where EXIF orientation rotates the image."""
    _, t = corpus_run
    by_path = {r["path"]: r for r in t.to_pylist()}
    checked = 0
    for m in csv.DictReader(open(corpus / "MANIFEST.csv")):
        r = by_path[m["path"]]
        if r["status"] != "ok" or not m["width"]:
            continue
        w, h = int(m["width"]), int(m["height"])
        if r["exif_orientation"] in (5, 6, 7, 8):
            w, h = h, w
        assert (r["width"], r["height"]) == (w, h), m["path"]
        checked += 1
    assert checked >= 370


def test_exif_fields_from_camera_photos(corpus_run):
    _, t = corpus_run
    cams = [r for r in t.to_pylist() if r["path"].startswith("exif-samples/cameras/") and r["status"] == "ok"]
    assert sum(r["exif_make"] is not None for r in cams) >= 10
    canon = next(r for r in cams if r["path"].endswith("Canon_40D.jpg"))
    assert canon["exif_make"] == "Canon" and canon["exif_model"] == "Canon EOS 40D"
    assert canon["exif_f_number"] > 0 and canon["exif_exposure_time"] > 0 and canon["exif_iso"] > 0
    assert canon["exif_datetime_original"].startswith("2008")
    gps = [r for r in t.to_pylist() if r["path"].startswith("exif-samples/gps/") and r["status"] == "ok"]
    assert gps and all(r["exif_gps"] for r in gps)


def test_parallel_equals_serial(demo_raw, tmp_path):
    _, serial = run(demo_raw / "raw", tmp_path / "a.parquet", ingest={"workers": 1})
    _, parallel = run(demo_raw / "raw", tmp_path / "b.parquet", ingest={"workers": 2})
    assert serial.equals(parallel)


def test_labels_source_split_from_folders(tmp_path):
    img = jpeg_bytes(np.full((20, 20, 3), 100, np.uint8))
    for rel in ["train/cat/a.jpg", "train/cat/b.jpg", "val/dog/c.jpg", "loose.jpg", "cams/x/dog/d.jpg"]:
        (tmp_path / "raw" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "raw" / rel).write_bytes(img)
    _, t = run(tmp_path / "raw", tmp_path / "m.parquet")
    got = {r["path"]: (r["label"], r["source"], r["split"]) for r in t.to_pylist()}
    assert got["train/cat/a.jpg"] == ("cat", "train", "train")
    assert got["val/dog/c.jpg"] == ("dog", "val", "val")
    assert got["loose.jpg"] == (None, None, None)
    assert got["cams/x/dog/d.jpg"] == ("dog", "cams", None)
    _, t = run(tmp_path / "raw", tmp_path / "n.parquet", ingest={"labels": "none"})
    assert t.column("label").null_count == t.num_rows


def test_labels_from_csv(tmp_path):
    img = jpeg_bytes(np.full((20, 20, 3), 100, np.uint8))
    (tmp_path / "raw").mkdir()
    for n in ["a.jpg", "b.jpg", "c.jpg"]:
        (tmp_path / "raw" / n).write_bytes(img)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\na.jpg,cat\nb.jpg,dog\n")
    _, t = run(tmp_path / "raw", tmp_path / "m.parquet", ingest={"labels": "csv", "labels_csv": str(labels)})
    labels = dict(zip(t.column("path").to_pylist(), t.column("label").to_pylist()))
    assert labels == {"a.jpg": "cat", "b.jpg": "dog", "c.jpg": None}
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\na.jpg,cat\n")
    from pixelscope.config import ConfigError

    with pytest.raises(ConfigError, match="ingest.labels_csv"):
        run(tmp_path / "raw", tmp_path / "m2.parquet", ingest={"labels": "csv", "labels_csv": str(bad)})


def _corrupt_exif_jpeg() -> bytes:
    # An IFD that claims a tag whose data runs past the end of the block
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + b"\x00" * 10
    return jpeg_bytes(np.full((16, 16, 3), 120, np.uint8), exif=exif)


def test_unreadable_exif_warns_or_errors_by_policy(tmp_path):
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "bad_exif.jpg").write_bytes(_corrupt_exif_jpeg())
    _, t = run(tmp_path / "raw", tmp_path / "w.parquet")
    r = t.to_pylist()[0]
    assert r["status"] == "ok" and r["warning"].startswith(EXIF_UNREADABLE)
    _, t = run(tmp_path / "raw", tmp_path / "e.parquet", ingest={"exif_errors": "error"})
    r = t.to_pylist()[0]
    assert r["status"] == "error" and r["reason"] == EXIF_UNREADABLE


def test_pixel_limit_is_a_param(tmp_path):
    (tmp_path / "raw").mkdir()
    Image.new("RGB", (300, 200)).save(tmp_path / "raw" / "big.png")
    _, t = run(tmp_path / "raw", tmp_path / "m.parquet", ingest={"max_image_pixels": 50_000})
    r = t.to_pylist()[0]
    assert r["reason"] == DECOMPRESSION_BOMB and "ingest.max_image_pixels" in r["detail"]


def test_unreadable_file_is_an_error_row(tmp_path):
    """A file listed but unreadable (here a dangling symlink: works even as root)."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    (tmp_path / "raw" / "fine.jpg").write_bytes(jpeg_bytes(np.zeros((8, 8, 3), np.uint8)))
    summary, t = run(tmp_path / "raw", tmp_path / "m.parquet")
    rows = {r["path"]: r for r in t.to_pylist()}
    assert rows["gone.jpg"]["reason"] == "read_error" and "No such file" in rows["gone.jpg"]["detail"]
    assert rows["fine.jpg"]["status"] == "ok"
    assert (summary.counts["ok"], summary.counts["errors"]) == (1, 1)


def test_manifest_records_column_kinds(demo_raw, tmp_path):
    _, _ = run(demo_raw / "raw", tmp_path / "m.parquet")
    kinds = column_kinds(tmp_path / "m.parquet")
    assert kinds["sharpness"] == "numeric" and kinds["label"] == "categorical" and kinds["phash"] == "distinct"


def test_killed_run_leaves_no_partial_manifest(demo_raw, tmp_path):
    """An interrupted ingest leaves neither a manifest nor a temp file; an old manifest survives."""
    p = parse_params({"ingest": {"workers": 1}})
    out = tmp_path / "m.parquet"
    out.write_bytes(b"previous good manifest")

    def stop(done, total):
        if done == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ingest_to(p, demo_raw / "raw", out, progress=stop)
    assert out.read_bytes() == b"previous good manifest"
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.parquet"]


def test_demo_counts_add_up(demo_raw, tmp_path):
    summary, t = run(demo_raw / "raw", tmp_path / "m.parquet")
    assert summary.counts["files_seen"] == 6 * 8 + 2
    assert summary.details["errors_by_reason"] == {EMPTY_FILE: 1, TRUNCATED: 1}
    assert int(pc.sum(pc.equal(t.column("status"), "ok")).as_py()) == summary.counts["ok"] == 48


def test_next_write_sweeps_temps_of_a_killed_writer(tmp_path):
    from pixelscope.io.atomic import write_bytes_atomic

    target = tmp_path / "manifest.parquet"
    (tmp_path / ".manifest.parquet.abc123.tmp").write_bytes(b"half")  # as SIGKILL leaves it
    (tmp_path / ".other.json.x.tmp").write_bytes(b"not ours")
    write_bytes_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.x.tmp", "manifest.parquet"]
