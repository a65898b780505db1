"""`pixelscope similar`: more like this, over the embedding store, for a dataset image or any file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from conftest import REPO
from pixelscope.config import parse_params
from pixelscope.pipeline.stages import STAGES


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
    for s in STAGES[1:4]:  # ingest, preprocess, embed
        s.run(p, root)
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
