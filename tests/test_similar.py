"""`pixelscope similar`: more like this, over the embedding store or a bundle's compressed index,
for a dataset image or any file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import REPO
from pixelscope import compressed_index
from pixelscope.config import parse_params
from pixelscope.errors import BadInput
from pixelscope.pipeline.stages import stage


def similar(root, *args):
    return subprocess.run([sys.executable, "-m", "pixelscope", "similar", *map(str, args)], cwd=root,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def embedded(demo_raw, tmp_path_factory):
    """The demo set with a byte copy and a half-size re-encoded copy of one cat planted, embedded."""
    root = tmp_path_factory.mktemp("similar")
    shutil.copytree(demo_raw / "raw", root / "data" / "raw")
    shutil.copytree(REPO / "expectations", root / "expectations")
    cat = root / "data" / "raw" / "studio" / "cat" / "cat_00002.jpg"
    shutil.copy(cat, cat.with_name("cat_byte_copy.jpg"))
    im = Image.open(cat)
    im.resize((im.width // 2, im.height // 2)).save(cat.with_name("cat_half.jpg"), quality=80)
    im.resize((im.width * 2 // 3, im.height * 2 // 3)).save(root / "outside.jpg", quality=75)  # not in the dataset
    p = parse_params({"ingest": {"workers": 1}})
    for name in ("ingest", "preprocess", "embed"):
        stage(name).run(p, root)
    return root


@pytest.mark.slow
def test_a_dataset_image_finds_itself_then_its_planted_copy(embedded):
    r = similar(embedded, "studio/cat/cat_00002.jpg", "--k", "5", "--json")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    first, second = got["results"][:2]
    assert first["path"] == "studio/cat/cat_00002.jpg" and first["similarity"] == pytest.approx(1.0, abs=1e-3)
    assert first["copies"] == 2  # the byte copy shares its id (and its vector)
    assert second["path"] == "studio/cat/cat_half.jpg" and second["similarity"] > 0.9
    assert [x["rank"] for x in got["results"]] == [1, 2, 3, 4, 5] and "IndexFlatIP" in got["index"]
    by_prefix = json.loads(similar(embedded, first["id"][:10], "--json").stdout)
    assert by_prefix["results"][0]["id"] == first["id"]


@pytest.mark.slow
def test_a_resized_copy_given_as_a_file_finds_the_original_first(embedded):
    r = similar(embedded, embedded / "outside.jpg", "--k", "3")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2].split()[2] == "studio/cat/cat_00002.jpg"  # rank 1 row after the header lines


@pytest.mark.slow
def test_what_cannot_be_searched_is_a_one_line_error(embedded, tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    for image in (tmp_path / "notes.txt", "no-such-image", "abc"):
        r = similar(embedded, image)
        assert r.returncode == 1 and r.stderr.startswith("error:") and "Traceback" not in r.stderr, r.stderr
    r = similar(tmp_path, "x.jpg")  # no project here
    assert r.returncode == 1 and "pixelscope ingest" in r.stderr


@pytest.fixture(scope="module")
def published(embedded):
    """The same project profiled and published: its bundle carries search/."""
    p = parse_params({"ingest": {"workers": 1}})
    for name in ("profile", "publish"):
        stage(name).run(p, embedded)
    return embedded / "reports" / "publish"


@pytest.mark.slow
def test_a_bundle_alone_finds_the_original_of_a_resized_file(published, tmp_path):
    """No project, no store: the bundle's codes, the query embedded with the settings it recorded."""
    bundle = tmp_path / "bundle"
    shutil.copytree(published, bundle)
    r = similar(tmp_path, published.parent.parent / "outside.jpg", "--k", "3", "--json", "--bundle", bundle)
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    assert got["results"][0]["path"] == "studio/cat/cat_00002.jpg", got
    assert "IndexPQ (64 sub-quantizers" in got["index"] and "decoded vectors (approximate)" in got["index"]
    first = similar(tmp_path, got["results"][0]["id"][:12], "--json", "--bundle", bundle)  # a dataset image, decoded
    assert json.loads(first.stdout)["results"][0]["id"] == got["results"][0]["id"], first.stderr


@pytest.mark.slow
def test_the_bundle_index_refined_by_the_store_gives_the_exact_answer(published):
    """In the project, the codes' candidates re-ranked by the store's vectors: the same ranking and
    similarities as the exact search over the store."""
    outside = published.parent.parent / "outside.jpg"
    exact = json.loads(similar(published.parent.parent, outside, "--k", "10", "--json").stdout)
    r = similar(published.parent.parent, outside, "--k", "10", "--json", "--bundle", published)
    assert r.returncode == 0, r.stderr
    refined = json.loads(r.stdout)
    assert "re-ranked by the exact vectors of the store" in refined["index"]
    assert [x["id"] for x in refined["results"]] == [x["id"] for x in exact["results"]]
    assert [x["similarity"] for x in refined["results"]] == pytest.approx([x["similarity"] for x in exact["results"]],
                                                                          abs=1e-3)


@pytest.mark.slow
def test_the_search_index_is_its_codes_plus_one_codebook_and_kept_when_unchanged(published, embedded):
    """64 sub-quantizers of nbits each per image (8 bits: 64 bytes; this 49-image set: 5 bits, 40 bytes)."""
    meta = json.loads((published / "search" / "model.json").read_text())
    n = len(compressed_index.row_ids(published / "manifest.parquet"))
    bits = compressed_index.nbits_for(n)
    assert meta["images"] == n and meta["dim"] == 1280 and f"x {bits} bits" in meta["index"]
    codes, codebook = 64 * bits // 8 * n, meta["dim"] * 2 ** bits * 4  # float32 centroids
    assert codes + codebook <= meta["index_bytes"] <= codes + codebook + 4096, meta
    before = os.stat(published / "search" / "index.faiss").st_ino
    stage("publish").run(parse_params({"ingest": {"workers": 1}}), embedded)  # nothing changed: kept, not rebuilt
    assert os.stat(published / "search" / "index.faiss").st_ino == before


@pytest.mark.slow
def test_a_bundle_index_that_does_not_fit_is_a_clear_error(published, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(published, bundle)
    outside = published.parent.parent / "outside.jpg"
    meta = json.loads((bundle / "search" / "model.json").read_text())
    (bundle / "search" / "model.json").write_text(json.dumps({**meta, "key": "0" * 16}))
    r = similar(tmp_path, outside, "--bundle", bundle)
    assert r.returncode == 1 and "store key 0000000000000000" in r.stderr and "Traceback" not in r.stderr, r.stderr
    (bundle / "search" / "model.json").write_text(json.dumps({**meta, "embed": {**meta["embed"], "plugins": ["evil"]}}))
    r = similar(tmp_path, outside, "--bundle", bundle)
    assert r.returncode == 2 and "names plugins (evil)" in r.stderr, r.stderr  # a configuration error
    (bundle / "search" / "model.json").write_text(json.dumps(meta))
    manifest = pq.read_table(bundle / "manifest.parquet")
    pq.write_table(manifest.slice(1), bundle / "manifest.parquet")  # one image fewer than the index holds
    r = similar(tmp_path, outside, "--bundle", bundle)
    assert r.returncode == 1 and "republish" in r.stderr, r.stderr
    shutil.rmtree(bundle / "search")
    r = similar(tmp_path, outside, "--bundle", bundle)
    assert r.returncode == 1 and "no search index" in r.stderr, r.stderr


def test_the_compressed_index_handles_few_images_and_any_dimension(tmp_path):
    """Fewer images than 256 centroids: fewer bits; a dimension 64 does not divide: zero-padded."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(10, 1000)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ids = [f"{i:064x}" for i in range(10)]
    meta = compressed_index.write(tmp_path / "search", ids, x, {"key": "k"})
    assert "3 bits" in meta["index"] and meta["dim"] == 1000
    pq.write_table(pa.table({"id": ids[::-1], "status": ["ok"] * 10}), tmp_path / "manifest.parquet")
    index = compressed_index.CompressedIndex(tmp_path)  # the rows are the manifest's readable ids, sorted
    for i in range(10):
        assert index.search(x[i], 1).ids == [ids[i]]
    pq.write_table(pa.table({"id": ids, "status": ["ok"] * 9 + ["error"]}), tmp_path / "manifest.parquet")
    with pytest.raises(BadInput, match="republish"):
        compressed_index.CompressedIndex(tmp_path)
