"""The dashboard on a real bundle: every page runs (AppTest) and shows the bundle's numbers;
partial and corrupt bundles give messages, not tracebacks; the selection logic alone; the
pages import only light readers."""

from __future__ import annotations

import ast
import base64
import hashlib
import io
import json
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import REPO, free_port, ingest_to, wait_healthy
from dashboards import selection as sel
from pixelscope.config import parse_params
from pixelscope.pipeline.stages import STAGES
from pixelscope.profile import Profile
from pixelscope.profile.sketches import NumericSketch

APP = str(REPO / "dashboards" / "app.py")
PAGES = ["overview", "features", "compare", "drift", "embedding_map", "clusters", "images", "patches", "issues", "curated",
         "versions", "decisions", "evaluation"]


def bundle_params():
    return parse_params({"ingest": {"workers": 1}, "validate": {"reference": "ref/profile.json", "on_failure": "warn"},
                         "curate": {"formats": ["parquet"]}, "profile": {"predictions": "predictions.csv"}})


def write_predictions(root: Path) -> None:
    """A model's predictions for the demo images, by path: the folder's label, except every
    third image, predicted `cat`."""
    raw = root / "data" / "raw"
    files = sorted(f for f in raw.rglob("*.jpg") if f.stat().st_size)
    lines = ["path,prediction,confidence"] + [
        f"{f.relative_to(raw).as_posix()},{'cat' if k % 3 == 0 else f.parent.name},0.8" for k, f in enumerate(files)]
    (root / "predictions.csv").write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def bundle(demo_raw, tmp_path_factory) -> Path:
    """The whole pipeline on the demo set, with the demo's shifted new batch as the drift reference."""
    root = tmp_path_factory.mktemp("dash")
    shutil.copytree(demo_raw / "raw", root / "data" / "raw")
    shutil.copytree(REPO / "expectations", root / "expectations")
    write_predictions(root)
    p = bundle_params()
    ingest_to(p, demo_raw / "new", root / "ref" / "manifest.parquet")
    Profile.from_manifest(root / "ref" / "manifest.parquet").save(root / "ref" / "profile.json")
    for stage in STAGES[1:]:
        stage.run(p, root)
    return root / "reports" / "publish"


def app(bundle: Path, page: str, monkeypatch, **query):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PIXELSCOPE_BUNDLE", str(bundle))
    at = AppTest.from_file(APP, default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    at.run()
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(markdown: str) -> str:
    """What the browser shows of Markdown whose untrusted parts the pages escaped (AppTest hands over
    the source): the backslash escapes removed."""
    return re.sub(r"\\(.)", r"\1", markdown)


def texts(at) -> str:
    return "\n".join(shown(str(e.value)) for kind in ("markdown", "caption", "subheader", "info", "error", "warning")
                     for e in getattr(at, kind))


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


@pytest.mark.slow
def test_every_page_runs_and_shows_the_bundles_numbers(bundle, monkeypatch):
    summary = json.loads((bundle / "summary.json").read_text())
    m = summary["manifest"]

    at = app(bundle, "overview", monkeypatch)
    assert metric(at, "files seen") == f"{m['files_seen']:,}" and metric(at, "ok") == f"{m['ok']:,}"
    assert metric(at, "errors") == f"{m['errors']:,}" and m["files_seen"] == m["ok"] + m["errors"]
    assert metric(at, "excluded by curation") == f"{summary['curated']['excluded']:,}"
    agree = next(d.value for d in at.dataframe if "agreement" in d.value.columns).set_index("label")
    assert agree.loc["(all)", "agreement"] == pytest.approx(summary["agreement"]["(all)"]["agreement"])
    assert 0.5 < agree.loc["(all)", "agreement"] < 0.8
    assert agree.loc["cat", "agreement"] == 1.0 and agree.loc["coffee", "agreement"] < 1  # every 3rd predicted cat

    at = app(bundle, "features", monkeypatch)
    profile = Profile.load(bundle / "profile.json")
    shown = next(d.value for d in at.dataframe if "p50" in d.value.columns)
    assert shown.iloc[0]["p50"] == pytest.approx(profile.quantiles("brightness_mean", [0.5])[0])

    drift = pq.read_table(bundle / "drift.parquet").to_pandas()
    at = app(bundle, "drift", monkeypatch)
    n = int(drift["drift"].sum())
    assert n > 0, "the shifted new batch should drift against the demo set"
    assert f"**{n} drifted** of {len(drift)} rows" in texts(at)
    first = drift[drift["drift"]].sort_values("p_adjusted", kind="stable").iloc[0]
    assert f"**{first['feature']}** in **{first['segment']}**" in texts(at) and "→ **drift**" in texts(at)

    issues = pq.read_table(bundle / "issues.parquet").to_pandas()
    at = app(bundle, "issues", monkeypatch)
    sizes = issues.groupby("duplicate_group").size().sort_values(ascending=False)
    assert at.selectbox[0].value == f"group {int(sizes.index[0])} ({sizes.iloc[0]} images)"
    finders = next(d.value for d in at.dataframe if "finder" in d.value.columns)
    assert dict(zip(finders["finder"], finders["flagged"]))["near_duplicate"] == int(issues["near_duplicate"].sum())

    at = app(bundle, "curated", monkeypatch)
    assert metric(at, "included") == f"{summary['curated']['included']:,}"

    for page in ("compare", "embedding_map", "versions"):
        app(bundle, page, monkeypatch)


def test_the_clusters_page_lists_the_bundles_clusters_and_opens_one_in_images(bundle, monkeypatch):
    clusters = pq.read_table(bundle / "clusters.parquet").to_pandas()
    issues = pq.read_table(bundle / "issues.parquet").to_pandas()
    real = clusters[clusters["cluster"] >= 0]
    assert len(real) >= 1 and int(clusters["size"].sum()) == int(issues["cluster"].notna().sum())
    at = app(bundle, "clusters", monkeypatch)
    assert metric(at, "clusters") == f"{len(real):,}"
    assert metric(at, "images in a cluster") == f"{int(real['size'].sum()):,}"
    first = clusters.iloc[0]
    assert at.subheader[0].value.startswith(f"Cluster {int(first['cluster'])}:" if first["cluster"] >= 0 else "Noise")
    c = int(real.iloc[-1]["cluster"])
    at.selectbox[0].set_value(c).run()
    assert at.subheader[0].value == f"Cluster {c}: {int(real.iloc[-1]['size']):,} images"
    next(b for b in at.button if b.label.startswith("Open all")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.query_params["where"] in (f"cluster = {c}", [f"cluster = {c}"])
    assert f"**{int(real.iloc[-1]['size']):,} images** match" in texts(at)


def test_a_big_map_draws_a_sample_and_a_box_still_selects_every_point_inside(bundle, monkeypatch):
    """Above MAP_POINTS the map draws a uniform sample (said under it) over the axes of every
    point; the box in the URL selects from all points, drawn or not."""
    import dashboards.selection as selection

    proj = pq.read_table(bundle / "projection.parquet").to_pandas()
    monkeypatch.setattr(selection, "MAP_POINTS", 10)
    box = selection.box_param((proj.x.min(), proj.x.max(), proj.y.min(), proj.y.max()))
    at = app(bundle, "embedding_map", monkeypatch, box=box)
    fig = json.loads(at.get("plotly_chart")[0].proto.spec)
    def n(values) -> int:  # plotly sends numeric arrays as {"dtype", "bdata"} (base64)
        if isinstance(values, dict):
            return len(np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"]))
        return len(values)

    drawn = sum(n(t["x"]) for t in fig["data"])
    assert drawn == 10 and f"10 of {len(proj):,} points drawn" in texts(at)
    x_range = fig["layout"]["xaxis"]["range"]
    assert x_range[0] < proj.x.min() and x_range[1] > proj.x.max()
    assert f"{len(proj):,} selected" in texts(at)


@pytest.mark.slow
def test_images_filter_changes_the_count_and_a_bad_filter_names_the_expression(bundle, monkeypatch):
    manifest = pq.read_table(bundle / "manifest.parquet").to_pandas()
    at = app(bundle, "images", monkeypatch)
    assert f"**{len(manifest):,} images** match" in texts(at)
    at = app(bundle, "images", monkeypatch, where="label = 'cat' AND width > 100")
    want = int(((manifest["label"] == "cat") & (manifest["width"] > 100)).sum())
    assert 0 < want < len(manifest) and f"**{want:,} images** match" in texts(at)
    # the models' columns are in the bundle's manifest: images whose prediction is not their label
    disagree = int((manifest["pred_label"].notna() & manifest["label"].notna()
                    & (manifest["pred_label"] != manifest["label"])).sum())
    assert disagree == int((manifest["pred_agrees"] == 0).sum()) > 0 and manifest["semantic_class"].notna().any()
    at = app(bundle, "images", monkeypatch, where="pred_label <> label")
    assert f"**{disagree:,} images** match" in texts(at)
    at = app(bundle, "images", monkeypatch, where="no_such_column > 1")
    assert "no_such_column > 1" in texts(at) and "is not a valid filter" in texts(at)
    one = manifest[manifest["status"] == "ok"].iloc[0]
    at = app(bundle, "images", monkeypatch, image=one["id"][:16])
    assert one["path"] in texts(at) and "More like this (nearest by embedding cosine)" in texts(at)


def test_an_opened_image_shows_its_original_at_full_size_or_why_not(bundle, tmp_path, monkeypatch):
    import yaml
    from PIL import Image

    root = bundle.parents[1]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"paths": {"raw": str(root / "data" / "raw")}}))
    monkeypatch.setenv("PIXELSCOPE_PROJECT", str(tmp_path))
    manifest = pq.read_table(root / "data" / "interim" / "manifest.parquet").to_pandas()
    big = manifest[manifest["status"] == "ok"].sort_values("width").iloc[-1]
    at = app(bundle, "images", monkeypatch, image=big["id"][:16])
    at.toggle(key="full_size").set_value(True).run()
    assert not at.exception, [e.value for e in at.exception]
    captions = [c for img in at.get("image") for c in img.captions]
    expected = f"{big['path']} · {int(big['width'])}×{int(big['height'])} · {int(big['bytes']):,} bytes"
    assert any(expected in shown(c) for c in captions), captions
    # a file gone since it was ingested: said, not raised
    with Image.open(root / "data" / "raw" / big["path"]) as im:
        im.load()
    moved = tmp_path / "moved"
    shutil.move(root / "data" / "raw" / big["path"], moved)
    try:
        at.run()
        assert not at.exception and "cannot read" in texts(at) and big["path"] in texts(at)
    finally:
        shutil.move(moved, root / "data" / "raw" / big["path"])


@pytest.mark.slow
def test_the_versions_page_shows_the_history_that_publish_carries(bundle, tmp_path, monkeypatch):
    """Two versions (the shifted reference batch, then the demo set) recorded by `history`,
    carried by publish into the bundle, shown with their counts and drift verdicts."""
    from pixelscope.pipeline.stages import stage
    from pixelscope.versions.history import record_history

    root = tmp_path / "project"
    shutil.copytree(bundle.parents[1], root, symlinks=True)
    p = bundle_params()
    from pixelscope import ImageLogger  # a service's window lands in the same history, and history keeps it

    images = sorted(f for f in (root / "data" / "raw").rglob("*.jpg"))[:6]
    with ImageLogger(p, window="1d", out=root / "reports" / "monitor" / "service", project=root,
                     keep_examples=4) as log:
        for f in images:
            log.log(f.read_bytes())
    result = record_history(p, root, [str(root / "ref" / "profile.json"), str(root / "reports" / "publish")])
    assert result.counts["versions"] == 2 and result.counts["drops"] == 1
    stage("publish").run(p, root)
    published = root / "reports" / "publish"
    hist = pq.read_table(published / "history.parquet").to_pandas()
    assert hist["drift_prev"].tolist()[1] is True and hist["files"].iloc[1] == json.loads(
        (published / "summary.json").read_text())["manifest"]["files_seen"]
    at = app(published, "versions", monkeypatch)
    assert metric(at, "versions") == "2" and metric(at, "drifted from the previous") == "1"
    assert metric(at, "monitored drops and service windows") == "1"
    shown = next(d.value for d in at.dataframe if "vs previous" in d.value.columns)
    assert shown["kind"].tolist() == ["version", "version", "service"] and shown["files"].tolist()[2] == len(images)
    shown, hist = shown[shown["kind"] == "version"], hist[hist["kind"] == "version"]
    assert shown["vs previous"].tolist() == ["-", "DRIFT"] and shown["files"].tolist() == hist["files"].tolist()
    # the model's accuracy per version: the reference batch has no predictions, the demo set's is the exact mean
    agrees = pq.read_table(published / "manifest.parquet").to_pandas()
    agrees = agrees[(agrees["status"] == "ok") & agrees["pred_label"].notna() & agrees["label"].notna()]
    assert shown["accuracy"].tolist() == ["-", f"{(agrees['pred_label'] == agrees['label']).mean():.3f}"]
    assert len(at.get("plotly_chart")) >= 1 and not at.info  # the quantile bands, no "no history" note
    # the service window's examples (keep_examples=4) travel in the bundle and show under the table
    examples = pq.read_table(published / "examples.parquet").to_pandas()
    service_key = pq.read_table(published / "history.parquet").to_pandas().query("kind == 'service'")["key"].item()
    assert len(examples) == 4 and set(examples["key"]) == {service_key}
    assert all(Image.open(io.BytesIO(j)).format == "JPEG" for j in examples["jpeg"])
    assert at.selectbox(key="examples_window").value == service_key and len(at.get("image")) == 4


def test_curated_examples_follow_the_ledgers_first_reason_when_a_row_has_two(bundle, tmp_path, monkeypatch):
    """Every exclusion tab shows as many examples as the ledger counts for its first reason (up to 6),
    also when a row carries two reasons (the page used to split them its own way)."""
    two = tmp_path / "two"
    shutil.copytree(bundle, two)
    ledger = pq.read_table(two / "curation.parquet").to_pandas()
    out = ~ledger["included"] & ledger["reasons"].notna() & ~ledger["reasons"].str.startswith("unreadable")
    assert out.sum() >= 2, "the demo recipe should exclude a few images"
    ledger.loc[out, "reasons"] = ledger.loc[out, "reasons"] + "; filter: width < 64"
    pq.write_table(pa.Table.from_pandas(ledger, preserve_index=False), two / "curation.parquet")
    at = app(two, "curated", monkeypatch)
    counts = json.loads((two / "summary.json").read_text())["curated"]["excluded_by_first_reason"]
    assert counts and sum(counts.values()) == out.sum()
    for reason, n in counts.items():
        shown = [b for b in at.button if str(b.key).startswith(f"ex-{reason}-")]
        assert len(shown) == min(6, n), (reason, n, len(shown))


def test_a_partial_bundle_says_what_is_missing_and_a_corrupt_part_is_named(bundle, tmp_path, monkeypatch):
    part = tmp_path / "partial"
    part.mkdir()
    for f in ("summary.json", "profile.json"):
        shutil.copy(bundle / f, part / f)
    messages = {}
    for page in PAGES:
        messages[page] = texts(app(part, page, monkeypatch))
    assert "Not in this bundle: the drift table (drift.parquet)" in messages["drift"]
    assert "pixelscope embed && pixelscope publish" in messages["embedding_map"]
    assert "pixelscope curate" in messages["curated"]
    assert "Not in this bundle: the annotated objects (objects.parquet)" in messages["patches"]
    broken = tmp_path / "broken"
    shutil.copytree(bundle, broken)
    (broken / "issues.parquet").write_bytes(b"not parquet at all")
    msg = texts(app(broken, "issues", monkeypatch))
    assert "issues.parquet: not a Parquet file" in msg
    (broken / "summary.json").write_text("{oops")
    assert "summary.json: not valid JSON" in texts(app(broken, "overview", monkeypatch))


@pytest.mark.slow
def test_publish_makes_thumbnails_once_per_id_and_relative_paths(bundle):
    from PIL import Image

    from pixelscope.publish.bundle import Bundle

    b = Bundle.open(bundle)
    manifest = b.table("manifest")
    ok = manifest[manifest["status"] == "ok"]
    index = b.thumbnail_index()
    assert set(index) == set(ok["id"])
    got = b.thumbnails(ok["id"].tolist()[:5])
    for raw in got.values():
        im = Image.open(__import__("io").BytesIO(raw))
        assert im.format == "WEBP" and max(im.size) <= 160
    proj = b.table("projection")
    assert not proj["path"].str.startswith("/").any() and set(proj["path"]) <= set(ok["path"])
    from pixelscope.publish.thumbnails import update_thumbnails

    raw = bundle.parents[1] / "data" / "raw"
    again = update_thumbnails(bundle / "thumbnails", [(i, str(raw / p)) for i, p in zip(ok["id"], ok["path"])], 10**8, 1)
    assert again["made"] == 0 and again["thumbnails"] == len(ok)


def frame(n: int = 10) -> pd.DataFrame:
    return pd.DataFrame({"id": [hashlib.sha256(str(i).encode()).hexdigest() for i in range(n)],
                         "path": [f"p{i}.jpg" for i in range(n)],
                         "x": np.arange(n, dtype=float), "y": np.arange(n, dtype=float) * 2})


def test_selection_points_boxes_and_query_state_are_pure_functions():
    f = frame()
    event = {"selection": {"points": [{"customdata": [3]}, {"customdata": [1]}, {"customdata": [3]}], "box": []}}
    assert sel.ids_from_selection(event, f) == [f.id[1], f.id[3]]
    as_streamlit_sends = {"selection": {"points": [{"customdata": {"0": 4}}, {"customdata": {"0": 0}}]}}
    assert sel.ids_from_selection(as_streamlit_sends, f) == [f.id[0], f.id[4]]
    box = {"selection": {"points": [], "box": [{"x": [4.5, 2], "y": [0, 100]}]}}
    assert sel.ids_from_selection(box, f) == f.id[2:5].tolist()  # x in [2, 4.5]
    assert sel.ids_from_selection(None, f) == [] and sel.ids_from_selection({"selection": {}}, f) == []
    # a shape selects every row inside it, drawn or not: points handed back are ignored then
    drawn_only = {"selection": {"points": [{"customdata": [2]}], "box": [{"x": [1.5, 4.5], "y": [0, 100]}]}}
    assert sel.ids_from_selection(drawn_only, f) == f.id[2:5].tolist()
    triangle = {"selection": {"points": [], "lasso": [{"x": [0.5, 6.5, 6.5], "y": [0.0, 0.0, 14.0]}]}}
    assert sel.ids_from_selection(triangle, f) == f.id[4:7].tolist()  # (i, 2i) under y = (14/6)(x - 0.5): i > 3.5
    assert sel.ids_from_selection({"selection": {"lasso": [{"x": [0, 9, 9], "y": [100, 100, 50]}]}}, f) == []
    b = sel.parse_box(sel.box_param((1.0, 3.0, 0.0, 6.0)))
    assert sel.ids_in_boxes(f, [b]) == f.id[1:4].tolist()
    assert sel.parse_box("1,2,x") is None and sel.parse_box(None) is None
    x0, x1, y0, y1 = sel.parse_box(sel.box_param((0.12345678, 0.98765432, -0.12345678, 1.23456789)))
    assert x0 <= 0.12345678 and x1 >= 0.98765432 and y0 <= -0.12345678 and y1 >= 1.23456789  # never rounded inwards
    big = frame(1000)
    sample = sel.drawn_sample(big, 100)
    assert len(sample) == 100 and sample.index.is_monotonic_increasing  # in frame order
    assert set(sample.id) == set(sorted(big.id)[:100]) and sel.drawn_sample(big, 100).equals(sample)
    assert 20 < (sample.x < 500).sum() < 80  # spread over the frame, not its head
    assert sel.drawn_sample(f, 100) is f
    assert sel.rows_of(f, [f.id[5][:12], f.id[2], "nope", ""])["path"].tolist() == ["p5.jpg", "p2.jpg"]
    assert sel.page_of(50, 3, 24) == (48, 50, 3) and sel.page_of(0, 5) == (0, 0, 1) and sel.page_of(50, 0, 24)[0] == 0
    g = f.assign(v=[3, None, 1, 2, None, 0, 5, 4, 9, 8])
    assert sel.sort_rows(g, "v")["path"].tolist()[:3] == ["p5.jpg", "p2.jpg", "p3.jpg"]
    down = sel.sort_rows(g, "v", descending=True)
    assert down["path"].tolist()[:2] == ["p8.jpg", "p9.jpg"] and down["v"].isna().tolist()[-2:] == [True, True]


def test_moved_band_is_where_the_cdfs_differ():
    rng = np.random.default_rng(0)
    ref, cur = NumericSketch(200), NumericSketch(200)
    ref.update(rng.normal(0, 1, 5000))
    cur.update(np.concatenate([rng.normal(0, 1, 4000), rng.normal(3, 0.2, 1000)]))  # 20 % moved to ~3
    lo, hi, d = sel.moved_band(ref, cur)
    assert 0.15 < d < 0.25 and lo < 2.7 and hi >= 1.0


def test_pages_import_only_light_readers():
    allowed = {"__future__", "streamlit", "plotly", "pandas", "numpy", "pathlib", "re", "os", "sys", "threading", "json",
               "typing", "collections", "dashboards", "pixelscope", "starlette",  # starlette: the server Streamlit runs on
               "subprocess",  # Apply starts the steps in a process of their own; so does a search by a dropped file
               "hashlib", "tempfile",  # ... which is written to a temporary file, cached by its sha256
               "io", "PIL"}  # boxes drawn on an image and object crops (dashboards/boxes.py): Pillow
    light = {"pixelscope.publish.bundle", "pixelscope.profile", "pixelscope.profile.sketches", "pixelscope.errors",
             "pixelscope.validate.drift", "pixelscope.curate.select", "pixelscope.io.values",
             # review actions: the decisions file and its API, the apply launcher, saved slices
             "pixelscope.config", "pixelscope.curate.review", "pixelscope.curate.decisions", "pixelscope.curate.apply",
             "pixelscope.curate.slices", "pixelscope.curate", "pixelscope.evaluate",
             # an opened image at full size (dashboards/original.py, imported only when asked): the raw readers
             "pixelscope.io.location", "pixelscope.io.decode", "pixelscope.io.url",
             # mask outlines on an image (dashboards/boxes.py): pycocotools decodes the objects table's masks
             "pixelscope.annotations.masks"}
    for path in (REPO / "dashboards").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                assert name.split(".")[0] in allowed, (path, name)
                if name.startswith("pixelscope"):
                    assert name in light, (path, name)
    import subprocess
    import sys

    code = ("import sys, dashboards.common, dashboards.selection, pixelscope.curate.select, dashboards.actions, "
            "pixelscope.curate.review, pixelscope.curate.apply, pixelscope.curate.slices, dashboards.search; "
            "print(sorted({m.split('.')[0] for m in sys.modules}))")
    loaded = set(json.loads(re.sub("'", '"', subprocess.run([sys.executable, "-c", code], capture_output=True,
                                                            text=True, cwd=REPO, check=True).stdout)))
    assert not loaded & {"torch", "cv2", "prefect", "great_expectations", "faiss", "onnxruntime", "umap", "numba",
                         "sklearn"}


CHROMIUM = Path("/usr/bin/chromium")


@pytest.mark.slow
def test_the_dashboard_starts_from_an_installed_wheel(bundle, tmp_path):
    """`pixelscope dashboard` from a wheel in a fresh venv (the dependencies come from the project's venv
    through a .pth): the app is found inside the installed packages. It used to point at
    dashboards/app.py beside the source tree, which only the source checkout has."""
    import os
    import signal
    import subprocess
    import sys
    import sysconfig
    import time
    import urllib.request

    import psutil

    src, dist, env_dir, elsewhere = (tmp_path / d for d in ("src", "dist", "venv", "elsewhere"))
    files = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split()
    for f in files:
        if (REPO / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / f, src / f)
    run = dict(capture_output=True, text=True, timeout=600)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                        str(dist), str(src)], **run)
    assert r.returncode == 0, r.stderr[-3000:]
    wheel = next(dist.glob("pixelscope-*.whl"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, **run)
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          check=True, **run).stdout.strip()
    (Path(site) / "project_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")  # streamlit & co.
    r = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], **run)
    assert r.returncode == 0, r.stderr[-3000:]
    elsewhere.mkdir()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PIXELSCOPE_BUNDLE")}
    proc = subprocess.Popen([str(env_dir / "bin" / "pixelscope"), "dashboard", str(bundle), "--port", str(port)],
                            cwd=elsewhere, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        assert wait_healthy(f"http://127.0.0.1:{port}"), proc.stdout.read() if proc.poll() is not None else "no answer"
        apps = [a for c in psutil.Process(proc.pid).children(recursive=True) for a in c.cmdline()
                if a.endswith("dashboards/server.py")]
        assert apps and all(a.startswith(site) for a in apps), (apps, site)  # the wheel's copy of the app
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as page:
            assert page.status == 200 and "default-src 'self'" in page.headers["content-security-policy"]
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        time.sleep(0.5)


@pytest.fixture(scope="module")
def served(bundle):
    """`streamlit run` over the bundle, as `pixelscope dashboard` starts it (127.0.0.1, headless)."""
    import os
    import subprocess

    from pixelscope.cli.dashboard import streamlit_command

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    port = free_port()
    proc = subprocess.Popen(streamlit_command(port), env={**os.environ, "PIXELSCOPE_BUNDLE": str(bundle)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    if not wait_healthy(url):
        proc.kill()
        pytest.fail("streamlit did not start")
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def finished(page) -> None:
    page.wait_for_selector("[data-testid='stApp']")
    page.wait_for_function("() => document.querySelector('[data-testid=\"stMain\"] h1')", timeout=60_000)
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=60_000)
    page.wait_for_timeout(800)


@pytest.mark.slow
def test_a_real_browser_opens_every_page_selects_on_the_map_and_stays_on_loopback(served, bundle, tmp_path):
    from playwright.sync_api import sync_playwright

    summary = json.loads((bundle / "summary.json").read_text())
    manifest = pq.read_table(bundle / "manifest.parquet").to_pandas()
    hosts: set[str] = set()
    with sync_playwright() as p:
        browser, page = chromium_page(p, hosts, height=1000)
        for name in PAGES:
            page.goto(f"{served}/{'' if name == 'overview' else name}")
            finished(page)
            assert page.locator("[data-testid='stException']").count() == 0, name
            page.screenshot(path=str(tmp_path / f"{name}.png"))
        page.goto(served)
        finished(page)
        assert f"{summary['manifest']['files_seen']:,}" in page.locator("[data-testid='stMetric']").first.inner_text()

        page.goto(f"{served}/images?where=label%20%3D%20'cat'")
        finished(page)
        cats = int((manifest["label"] == "cat").sum())
        assert f"{cats:,} images match" in page.inner_text("body")

        page.goto(f"{served}/embedding_map")
        finished(page)
        plot = page.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(plot["x"] + 2, plot["y"] + 2)
        page.mouse.down()
        page.mouse.move(plot["x"] + plot["width"] - 2, plot["y"] + plot["height"] - 2, steps=12)
        page.mouse.up()
        page.wait_for_function("() => document.body.innerText.includes('selected')", timeout=60_000)
        finished(page)
        text = page.inner_text("body")
        projection = pq.read_table(bundle / "projection.parquet")
        assert f"{projection.num_rows:,} selected" in text
        assert page.locator("[data-testid='stImage']").count() > 0 and "box=" in page.url

        # a cluster opens its images; a confusion cell shows its images
        clusters = pq.read_table(bundle / "clusters.parquet").to_pandas()
        c = int(clusters.iloc[0]["cluster"])
        page.goto(f"{served}/clusters?cluster={c}")
        finished(page)
        page.get_by_role("button", name=re.compile(r"^Open all")).click()
        page.wait_for_function("() => location.search.includes('where=')", timeout=60_000)
        finished(page)
        assert f"{int(clusters.iloc[0]['size']):,} images match" in page.inner_text("body")
        page.goto(f"{served}/evaluation?true=coffee&pred=cat")
        finished(page)
        cell = int(((manifest["status"] == "ok") & (manifest["label"] == "coffee") & (manifest["pred_label"] == "cat")).sum())
        assert cell > 0 and f"{cell:,} images labelled coffee, predicted cat" in page.inner_text("body")
        page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stImage\"]').length > 0",
                               timeout=60_000)  # the cell's thumbnails arrive as the page runs

        # in click mode, a click on one point (the most isolated, so no neighbour is hit instead) opens it
        page.goto(f"{served}/embedding_map?color=cluster&click=1")
        finished(page)
        proj = projection.to_pandas()
        xy = proj[["x", "y"]].to_numpy()
        span = xy.max(axis=0) - xy.min(axis=0)
        lo, hi = xy.min(axis=0) - 0.04 * span, xy.max(axis=0) + 0.04 * span  # the axes the page sets
        rel = (xy - lo) / (hi - lo)
        d = ((rel[:, None, :] - rel[None, :, :]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        target = int(d.min(axis=1).argmax())
        plot = page.locator(".nsewdrag").first.bounding_box()
        page.mouse.click(plot["x"] + float(rel[target, 0]) * plot["width"],
                         plot["y"] + (1 - float(rel[target, 1])) * plot["height"])
        page.wait_for_url(re.compile(r"/images\?.*image="), timeout=60_000)
        finished(page)
        assert f"image={proj.iloc[target]['id'][:16]}" in page.url
        page.get_by_text("← back to the map").click()
        finished(page)
        assert "embedding_map" in page.url and "color=cluster" in page.url and "click=1" in page.url
        browser.close()
    assert hosts == {served.split("/")[2]}, hosts


def test_the_map_has_one_point_per_projection_row_when_byte_copies_share_an_id():
    f = frame(4)
    images = pd.DataFrame({"id": [f.id[0], f.id[1], f.id[1], f.id[2], f.id[3]],
                           "path": ["p0.jpg", "p1.jpg", "copy-of-p1.jpg", "p2.jpg", "moved/p3.jpg"],
                           "label": ["a", "b", "b", "c", "d"], "exact_duplicate": [False, False, True, False, False]})
    m = sel.map_frame(f, images)
    assert len(m) == 4 and m["row"].tolist() == [0, 1, 2, 3] and m["id"].tolist() == f.id.tolist()
    assert m["exact_duplicate"].tolist() == [False, False, False, False]  # p1's own row, not its copy's
    assert m.loc[3, "label"] == "d"  # a path the manifest no longer has still gets its id's columns
    assert sel.ids_in_boxes(m, [(0, 10, 0, 100)]) == f.id.tolist()


@pytest.mark.slow
def test_the_grid_shows_byte_copies_that_share_an_id(bundle, monkeypatch):
    """A duplicate group holds byte copies (one id, several paths): each gets its own tile and button
    (found at 100k images, where the Issues page raised StreamlitDuplicateElementKey)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("PIXELSCOPE_BUNDLE", str(bundle))
    script = (f"import sys; sys.path.insert(0, {str(REPO)!r})\n"
              "import pandas as pd\nfrom dashboards.common import grid\n"
              "grid(pd.DataFrame({'id': ['ab' * 32] * 3, 'path': ['a.jpg', 'copy/a.jpg', 'b/a.jpg']}), key='g')\n")
    at = AppTest.from_string(script, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.button) == 3 and [shown(c.value) for c in at.caption][:3] == [
        "(no thumbnail) a.jpg", "(no thumbnail) copy/a.jpg", "(no thumbnail) b/a.jpg"]


HOSTILE = "![t](https:198.51.100.7)"  # a documentation address: nothing real is ever asked


def hostile_copy(bundle: Path, dest: Path) -> dict[str, str]:
    """The bundle with names an attacker chose: folders, files, labels, reasons, drift segments and
    the dataset card carry Markdown images and links to 198.51.100.x. Returns ids to open."""
    shutil.copytree(bundle, dest)
    manifest = pq.read_table(dest / "manifest.parquet").to_pandas()
    issues = pq.read_table(dest / "issues.parquet").to_pandas()
    ledger = pq.read_table(dest / "curation.parquet").to_pandas()
    evil = {p: f"{HOSTILE}/{i}-[l](https:198.51.100.8).jpg" for i, p in enumerate(manifest["path"][:20])}
    label = "![c](https:198.51.100.9)"
    for frame in (manifest, issues, ledger):
        hit = frame["path"].isin(list(evil))
        frame.loc[hit, "label"] = label
        frame["path"] = frame["path"].map(lambda p: evil.get(p, p))
    out = ~ledger["included"]
    ledger.loc[out, "reasons"] = "filter: ![r](https:198.51.100.10)"
    ledger.loc[out, "first_reason"] = "![f](https:198.51.100.11)"
    for frame, name in ((manifest, "manifest"), (issues, "issues"), (ledger, "curation")):
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), dest / f"{name}.parquet")
    summary = json.loads((dest / "summary.json").read_text())
    summary["curated"]["excluded_by_first_reason"] = {"![f](https:198.51.100.11)": int(out.sum())}
    (dest / "summary.json").write_text(json.dumps(summary))
    drift = pq.read_table(dest / "drift.parquet").to_pandas()
    drift["segment"] = f"label={label}"
    pq.write_table(pa.Table.from_pandas(drift, preserve_index=False), dest / "drift.parquet")
    card = dest / "card.md"
    card.write_text(card.read_text() + "\n![card](http://198.51.100.12/c.png) [more](http://198.51.100.13/)\n")
    return {"image": manifest["id"][0][:16]}


@pytest.mark.slow
def test_hostile_names_a_hostile_filter_and_a_hostile_card_fetch_nothing_off_loopback(bundle, tmp_path):
    """Text from the data or the URL was rendered as Markdown: a folder named ![t](https:HOST) on the
    Compare, Images, Issues and Curated pages, or a filter whose DuckDB error() message carries the
    labels, made the browser fetch from HOST. Every off-loopback request is aborted and counted; an
    image planted in the page after load is blocked by the Content-Security-Policy before any request."""
    import os
    import subprocess
    from urllib.parse import quote, urlparse

    from playwright.sync_api import sync_playwright

    from pixelscope.cli.dashboard import streamlit_command

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    evil = tmp_path / "hostile"
    ids = hostile_copy(bundle, evil)
    port = free_port()
    proc = subprocess.Popen(streamlit_command(port), env={**os.environ, "PIXELSCOPE_BUNDLE": str(evil)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    served = f"http://127.0.0.1:{port}"
    offsite: list[str] = []

    def guard(route):
        host = urlparse(route.request.url).hostname
        if host in ("127.0.0.1", "localhost"):
            route.continue_()
        else:
            offsite.append(route.request.url)
            route.abort()

    leak = quote("error('![x](http://198.51.100.14/' || (SELECT string_agg(DISTINCT label, '-') FROM images) || '.png)')")
    try:
        assert wait_healthy(served), "streamlit did not start"
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.route("**/*", guard)
            visits = [f"{name}" if name != "overview" else "" for name in PAGES]
            visits += [f"images?where={leak}", f"images?image={ids['image']}",
                       f"compare?a={quote('another bundle or profile file…')}&a_path={quote(HOSTILE)}"]
            for path in visits:
                page.goto(f"{served}/{path}")
                finished(page)
                assert page.locator("[data-testid='stException']").count() == 0, path
            body = page.inner_text("body")
            page.goto(f"{served}/images?where={leak}")
            finished(page)
            assert "may not use" in page.inner_text("body") or "198.51.100.14" in page.inner_text("body")
            # a second line of defence: the page's Content-Security-Policy blocks what escaping might miss
            response = page.goto(f"{served}/")
            assert response is not None and "img-src 'self'" in response.headers.get("content-security-policy", "")
            finished(page)
            blocked = page.evaluate("""() => new Promise(done => {
                const seen = [];
                document.addEventListener('securitypolicyviolation', e => seen.push(e.blockedURI));
                const img = document.createElement('img');
                img.src = 'http://198.51.100.9/csp.png';
                document.body.appendChild(img);
                setTimeout(() => done(seen), 1500);
            })""")
            assert any("198.51.100.9" in u for u in blocked), blocked
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert offsite == [], offsite
    assert "198.51.100.7" in body or "not a bundle folder" in body  # the hostile text is shown, as text


@pytest.mark.slow
def test_publish_is_one_set_and_leaves_out_parts_of_another_run_or_manifest(bundle, tmp_path, monkeypatch):
    """A kill between the files of publish (summary first, then parts) or of issues (four files)
    left a mixed set that looked complete. Publish now renames the whole bundle in, and leaves out
    issues written by two runs or describing another manifest, and a ledger of another manifest."""
    import os

    import pixelscope.publish.step as publish
    from pixelscope.io.atomic import SET_KEY, set_id_of
    from pixelscope.publish.bundle import Bundle

    root = tmp_path / "project"
    shutil.copytree(bundle.parents[1], root, symlinks=True)
    p = bundle_params()
    paths = p.paths.under(root)
    ids = {set_id_of(f) for f in (paths.issues, paths.issue_pairs, paths.neighbours, paths.issues_summary)}
    assert len(ids) == 1 and None not in ids  # the issues step stamps its four files with one id
    before = {f.name: f.read_bytes() for f in (root / "reports" / "publish").iterdir() if f.is_file()}

    def killed(*a, **k):  # publish dies after the summary and the parts are written, before the thumbnails
        raise KeyboardInterrupt

    monkeypatch.setattr(publish, "update_thumbnails", killed)
    with pytest.raises(KeyboardInterrupt):
        publish.publish_step(p, root)
    monkeypatch.undo()
    after = {f.name: f.read_bytes() for f in (root / "reports" / "publish").iterdir() if f.is_file()}
    assert after == before  # the previous bundle, whole
    assert not [f for f in (root / "reports").iterdir() if f.name.startswith((".tmp-", ".old-"))]

    # an interrupted issues run: one file of the set from another run
    pairs = pq.read_table(paths.issue_pairs)
    pq.write_table(pairs.replace_schema_metadata({**(pairs.schema.metadata or {}), SET_KEY.encode(): b"another-run"}),
                   paths.issue_pairs)
    ledger = pq.read_table(paths.curated / "curation.parquet")  # and a ledger of another manifest
    pq.write_table(ledger.slice(0, ledger.num_rows - 1), paths.curated / "curation.parquet")
    r = publish.publish_step(p, root)
    assert any("not published: issues (its files come from different runs" in n for n in r.notes), r.notes
    assert any("not published: ledger (it describes another manifest" in n for n in r.notes)
    b = Bundle.open(root / "reports" / "publish")
    assert not b.has("issues") and not b.has("pairs") and not b.has("ledger")
    assert "issues" not in b.summary() and "curated" not in b.summary()
    assert b.has("thumbnails") and os.listdir(root / "reports" / "publish" / "thumbnails")  # kept, not remade


@pytest.fixture
def own_project(bundle, tmp_path, monkeypatch):
    """A copy of the bundle's project for tests that write decisions (the module's bundle stays as it
    is), served as a loopback dashboard would be."""
    from streamlit import config

    root = tmp_path / "project"
    shutil.copytree(bundle.parents[1], root, symlinks=True)
    (root / "params.yaml").write_text("ingest:\n  workers: 1\nvalidate:\n  reference: ref/profile.json\n"
                                      "  on_failure: warn\ncurate:\n  formats: [parquet]\nprofile:\n"
                                      "  predictions: predictions.csv\n")
    monkeypatch.setenv("PIXELSCOPE_PROJECT", str(root))
    monkeypatch.delenv("PIXELSCOPE_READ_ONLY", raising=False)
    before = config.get_option("server.address")
    config.set_option("server.address", "127.0.0.1")
    yield root
    config.set_option("server.address", before)


def decisions_in(root: Path) -> list[dict]:
    path = root / "curation" / "decisions.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.slow
def test_acting_on_the_images_page_records_one_entry_per_image_and_apply_replays_them(own_project, monkeypatch):
    import time

    root = own_project
    bundle_dir = root / "reports" / "publish"
    manifest = pq.read_table(bundle_dir / "manifest.parquet").to_pandas()
    cats = manifest[manifest["label"] == "cat"]
    at = app(bundle_dir, "images", monkeypatch, where="label = 'cat'")
    at.toggle(key="all-matching").set_value(True).run()
    at.selectbox(key="act-grid-action").set_value("exclude")
    at.text_input(key="act-grid-reason").input("no cats'); DROP TABLE images; --")
    next(b for b in at.button if b.label.startswith("Record for")).click().run()
    assert not at.exception, [e.value for e in at.exception]
    got = decisions_in(root)
    assert sorted(d["path"] for d in got) == sorted(cats["path"]) and len(got) == len(cats) > 0
    assert {d["action"] for d in got} == {"exclude"} and {d["where"] for d in got} == {"dashboard:images"}
    assert {d["reason"] for d in got} == {"no cats'); DROP TABLE images; --"}
    at.run()
    assert any(f"{len(cats)} decisions not applied yet" in str(w.value) for w in at.sidebar.warning)

    next(b for b in at.sidebar.button if b.label == "Apply decisions").click().run()
    status = root / ".pixelscope" / "apply" / "status.json"
    deadline = time.time() + 300
    while time.time() < deadline and json.loads(status.read_text() if status.exists() else "{}").get("state") \
            not in ("done", "failed"):
        time.sleep(1)
    s = json.loads(status.read_text())
    assert s["state"] == "done", s
    readable_cats = cats[cats["status"] == "ok"]
    ledger = pq.read_table(root / "data" / "curated" / "curation.parquet").to_pandas().set_index("path")
    assert not ledger.loc[readable_cats["path"], "included"].any()
    assert ledger.loc[readable_cats["path"], "first_reason"].eq("excluded in review").all()
    assert set(s["diff"]["dropped"]) <= set(readable_cats["path"]) and s["diff"]["added"] == []
    at = app(bundle_dir, "decisions", monkeypatch)
    assert "Last apply" in texts(at) and "dropped" in texts(at)
    v = s["validation"]  # the quality suite over the new set, in words (a failure as an error)
    assert (f"the new set passes the quality suite ({v['expectations']} expectations)" if v["success"]
            else "the new set fails the quality suite: " + ", ".join(v["failed"])[:40]) in texts(at)
    assert not any("not applied yet" in str(w.value) for w in at.sidebar.warning)  # the bundle says they are applied


def test_read_only_and_an_address_off_loopback_hide_every_action(bundle, tmp_path, monkeypatch):
    from streamlit import config

    root = tmp_path / "project"
    shutil.copytree(bundle.parents[1], root, symlinks=True)
    monkeypatch.setenv("PIXELSCOPE_PROJECT", str(root))
    before = config.get_option("server.address")
    try:
        for address, read_only in (("127.0.0.1", "1"), ("0.0.0.0", ""), ("", "")):
            config.set_option("server.address", address)
            monkeypatch.setenv("PIXELSCOPE_READ_ONLY", read_only)
            for page, query in (("images", {"where": "label = 'cat'"}), ("issues", {}), ("decisions", {})):
                at = app(root / "reports" / "publish", page, monkeypatch, **query)
                labels = [b.label for b in at.button] + [b.label for b in at.sidebar.button]
                assert not [x for x in labels if x.startswith(("Record for", "Apply", "keep", "accept", "Undo"))], \
                    (address, read_only, page, labels)
                assert not [e for e in at.expander if str(e.label).startswith("Act on")]
                assert any("read-only" in str(c.value) for c in at.sidebar.caption)
        config.set_option("server.address", "127.0.0.1")
        monkeypatch.setenv("PIXELSCOPE_READ_ONLY", "")
        at = app(root / "reports" / "publish", "images", monkeypatch, where="label = 'cat'")
        assert any(b.label == "Apply decisions" for b in at.sidebar.button)  # the check above can fail
    finally:
        config.set_option("server.address", before)
    assert not (root / "curation" / "decisions.jsonl").exists() or not (root / "curation" / "decisions.jsonl").read_text()


def apply_status(root: Path) -> dict:
    status = root / ".pixelscope" / "apply" / "status.json"
    return json.loads(status.read_text()) if status.exists() else {}


def wait_applied(root: Path, timeout: float = 300, after: dict | None = None) -> dict:
    """The apply run's status once it is done or failed; with `after` (the status read before the
    click), only a run started since counts — the previous run's "done" is not this one's."""
    import time

    deadline = time.time() + timeout
    while time.time() < deadline:
        s = apply_status(root)
        if s.get("state") in ("done", "failed") and s.get("started") != (after or {}).get("started"):
            return s
        time.sleep(0.5)
    raise AssertionError("apply did not finish")


@contextmanager
def served_project(root: Path, **env: str):
    """Streamlit over a project's bundle, as `pixelscope dashboard --project ROOT` starts it (127.0.0.1, a
    free port): yields its URL; stopped afterwards."""
    import os
    import subprocess

    from pixelscope.cli.dashboard import streamlit_command

    port = free_port()
    proc = subprocess.Popen(streamlit_command(port), cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PIXELSCOPE_BUNDLE": str(root / "reports" / "publish"),
                                 "PIXELSCOPE_PROJECT": str(root), **env})
    try:
        url = f"http://127.0.0.1:{port}"
        assert wait_healthy(url), "streamlit did not start"
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def chromium_page(pw, hosts: set[str], height: int = 1100):
    """Debian's Chromium and one page; the host of every request it makes goes into `hosts`."""
    browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    return browser, page


@pytest.mark.slow
def test_review_in_a_real_browser_box_exclude_accept_keep_apply_undo(demo_project, tmp_path):
    """On a copy of the project `make demo` builds, in Chromium: accept the label-error finder's top
    suggestion (a planted label flip) -> a box on the map away from it -> exclude with a reason ->
    "keep this one" in a duplicate group -> Apply: the Curated page counts the boxed images excluded
    with that reason, the export shrinks by as many, the flipped image sits under its true class in
    the torchvision export, the group's representative changes; `dvc status` then shows curate stale
    and `dvc repro` gives the ledger and exports Apply gave; undo everything -> Apply -> the earlier
    set, SHA256SUMS byte for byte. Every request goes to 127.0.0.1; screenshots for the README."""
    import os
    import subprocess
    import sys

    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    root = tmp_path / "demo"
    shutil.copytree(demo_project, root, symlinks=True)
    curated = root / "data" / "curated"
    formats = ("torchvision", "imagefolder", "webdataset", "parquet")
    sums = {f: (curated / f / "SHA256SUMS").read_bytes() for f in formats}
    led0 = pq.read_table(curated / "curation.parquet").to_pandas()
    planted = json.loads((root / "data" / "demo_planted.json").read_text())
    issues = pq.read_table(root / "data" / "processed" / "issues.parquet").to_pandas()
    top = issues[issues["label_error"].fillna(False)].sort_values("label_error_score", ascending=False).iloc[0]
    assert top["path"] in planted["label_flips"]  # the page's first suggestion is a planted flip
    xs = pq.read_table(root / "reports" / "publish" / "projection.parquet").to_pandas().set_index("id")["x"]
    pad = 0.04 * float(xs.max() - xs.min())  # the map's x range, as the page sets it
    u = float((xs[top["id"]] - xs.min() + pad) / (xs.max() - xs.min() + 2 * pad))  # the flip's place, 0..1
    box = (0.0, min(0.35, 0.8 * u)) if u > 0.5 else (max(0.65, 1 - 0.8 * (1 - u)), 1.0)  # a third away from it
    hosts: set[str] = set()
    shots = REPO / "docs" / "dashboard" if os.environ.get("PIXELSCOPE_SCREENSHOTS") else tmp_path  # README pictures

    def click(page, text: str) -> None:
        page.get_by_role("button", name=text).first.click()
        page.wait_for_timeout(300)
        finished(page)

    def apply(page) -> dict:
        page.goto(served)
        finished(page)
        before = apply_status(root)
        click(page, "Apply decisions")
        s = wait_applied(root, after=before)
        assert s["state"] == "done", s
        page.wait_for_timeout(2500)  # the sidebar's poll notices, the app reruns on the new bundle
        return s

    def entries() -> list[dict]:
        return [json.loads(x) for x in (root / "curation" / "decisions.jsonl").read_text().splitlines()]

    def hashes() -> dict[str, bytes]:
        return {f: (curated / f).read_bytes() for f in ("curation.parquet", *(f"{x}/SHA256SUMS" for x in formats))}

    with served_project(root) as served, sync_playwright() as pw:
        browser, page = chromium_page(pw, hosts)
        # 1. accept the top label-error suggestion
        page.goto(f"{served}/issues")
        finished(page)
        click(page, "accept")
        accepted = entries()[-1]
        assert (accepted["action"], accepted["path"], accepted["value"]) == \
            ("accept_suggestion", top["path"], top["suggested_label"])
        # 2. a box over a third of the map away from that image, excluded with a reason
        page.goto(f"{served}/embedding_map")
        finished(page)
        plot = page.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(plot["x"] + plot["width"] * box[0] + 2, plot["y"] + 2)
        page.mouse.down()
        page.mouse.move(plot["x"] + plot["width"] * box[1] - 2, plot["y"] + plot["height"] - 2, steps=12)
        page.mouse.up()
        page.wait_for_function("() => document.body.innerText.includes(' selected')", timeout=60_000)
        finished(page)
        selected = int(re.search(r"([\d,]+) selected", page.inner_text("body")).group(1).replace(",", ""))
        assert selected > 0
        page.get_by_text(re.compile(r"^Act on the selection")).click()
        page.get_by_label("reason (optional; stored as written)").fill("left cluster: <b>not</b> ours")
        page.screenshot(path=str(shots / "review-action.png"))
        click(page, f"Record for {selected:,} images")
        decided = entries()[1:]
        assert len(decided) == selected and {d["action"] for d in decided} == {"exclude"}
        assert top["path"] not in {d["path"] for d in decided}
        # 3. keep another copy of the first duplicate group
        page.goto(f"{served}/issues")
        finished(page)
        click(page, "keep this one")
        s = apply(page)
        assert [e["action"] for e in entries()] == ["accept_suggestion"] + ["exclude"] * selected + ["keep"]
        led = pq.read_table(curated / "curation.parquet").to_pandas()
        boxed = {d["path"] for d in decided}
        was_in = led0[led0["path"].isin(boxed) & led0["included"]]["path"]
        now = led.set_index("path")
        assert not now.loc[list(boxed), "included"].any()
        review_out = now.loc[list(was_in)]
        assert (review_out["first_reason"] == "excluded in review").all()
        assert review_out["reasons"].str.contains("left cluster: <b>not</b> ours", regex=False).all()
        assert set(was_in) <= set(s["diff"]["dropped"])
        flip = Path(top["path"])  # accepted: under its true class now
        assert list((curated / "torchvision").glob(f"*/{top['suggested_label']}/*{flip.stem}*"))
        assert not list((curated / "torchvision").glob(f"*/{flip.parent.name}/*{flip.stem}*"))
        kept = entries()[-1]["path"]
        group = now.at[kept, "duplicate_group"]  # the group's representative is the kept image now
        assert set(now.loc[now["duplicate_group"] == group, "group_key"]) == {entries()[-1]["id"]}
        assert "kept instead of" in now.at[kept, "review"]
        page.goto(f"{served}/curated")
        finished(page)
        assert "excluded in review" in page.inner_text("body")
        # 4. DVC sees the decisions: curate is stale, and `dvc repro` gives what Apply gave
        applied = hashes()
        venv = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # stages call `pixelscope`
        status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, capture_output=True, text=True)
        assert "curate:" in status.stdout and "curation/decisions.jsonl" in status.stdout, status.stdout
        repro = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, capture_output=True, text=True, env=venv)
        assert repro.returncode == 0 and "Running stage 'curate'" in repro.stdout, repro.stdout + repro.stderr
        assert hashes() == applied
        page.goto(f"{served}/decisions")
        finished(page)
        page.screenshot(path=str(shots / "review-decisions.png"))
        # 5. undo everything from the Decisions page: the header's row marker selects every row
        grid_box = page.locator("[data-testid='stDataFrame']").first.bounding_box()
        page.mouse.click(grid_box["x"] + 18, grid_box["y"] + 18)
        page.wait_for_timeout(500)
        finished(page)
        click(page, f"Undo {len(entries())} selected entries")
        apply(page)
        page.goto(f"{served}/decisions")
        finished(page)
        page.screenshot(path=str(shots / "review-apply-diff.png"))
        browser.close()
    assert {f: (curated / f / "SHA256SUMS").read_bytes() for f in formats} == sums  # the earlier set, byte for byte
    assert hosts == {served.split("/")[2]}, hosts


@pytest.mark.slow
def test_more_like_a_dropped_file_finds_its_original_first_in_a_real_browser(demo_project, tmp_path):
    """A half-size re-encoded copy of a demo image, dropped on the Images page: `pixelscope similar`
    embeds it in a process of its own and the original comes first — with the project (the bundle's
    index re-ranked by the store) and from the bundle alone; the page stays on loopback."""
    import os

    from PIL import Image
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    manifest = pq.read_table(demo_project / "data" / "interim" / "manifest.parquet").to_pandas()
    original = manifest[(manifest["status"] == "ok") & (manifest["label"] == "rocket")].iloc[3]["path"]
    im = Image.open(demo_project / "data" / "raw" / original)
    query = tmp_path / "query.jpg"
    im.resize((im.width // 2, im.height // 2)).save(query, quality=70)
    hosts: set[str] = set()
    def drop(page, served: str) -> list[str]:
        """The query file dropped on the Images page: the result grid's captions."""
        page.goto(f"{served}/images")
        finished(page)
        page.get_by_text("More like this: drop an image file").click()
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(query))
        page.wait_for_function("() => document.body.innerText.includes('most like query.jpg')", timeout=120_000)
        finished(page)
        return page.locator("[data-testid='stImageCaption']").all_inner_texts()

    with served_project(demo_project, PIXELSCOPE_READ_ONLY="1") as served, sync_playwright() as pw:
        browser, page = chromium_page(pw, hosts)
        captions = drop(page, served)
        first = next(c for c in captions if " · " in c)
        assert first.startswith(original), (original, captions[:3])
        assert float(first.rsplit(" · ", 1)[1]) > 0.9
        shots = REPO / "docs" / "dashboard" if os.environ.get("PIXELSCOPE_SCREENSHOTS") else tmp_path
        page.screenshot(path=str(shots / "similar.png"), full_page=True)
        # an opened image shows more like it: the neighbours the bundle stores, with their similarities
        oid = manifest.loc[manifest["path"] == original, "id"].iloc[0]
        page.goto(f"{served}/images?image={oid[:16]}")
        finished(page)
        assert "More like this (nearest by embedding cosine)" in page.inner_text("body")
        sims = [float(c.rsplit(" · ", 1)[1]) for c in page.locator("[data-testid='stImageCaption']").all_inner_texts()
                if re.search(r" · [01]\.\d{3}$", c)]
        nb = pq.read_table(demo_project / "reports" / "publish" / "neighbours.parquet").to_pandas().set_index("id")
        stored = [round(float(s), 3) for s in nb.at[oid, "similarities"]]
        assert len(sims) >= 5 and sorted(sims) == sorted(stored), (sims, stored)  # the grid fills column by column
        browser.close()
    assert hosts == {served.split("/")[2]}, hosts
    # the bundle alone, copied where there is no project: its compressed index still finds the original
    alone = tmp_path / "alone"
    shutil.copytree(demo_project / "reports" / "publish", alone / "reports" / "publish")
    with served_project(alone, PIXELSCOPE_READ_ONLY="1") as served, sync_playwright() as pw:
        browser, page = chromium_page(pw, hosts)
        captions = drop(page, served)
        assert "decoded vectors (approximate)" in page.inner_text("body")  # no store here: the codes, said so
        assert next(c for c in captions if " · " in c).startswith(original), (original, captions[:3])
        browser.close()


def test_a_filter_saved_as_a_slice_lands_in_params_with_comments_kept_and_is_listed(own_project, monkeypatch):
    root = own_project
    (root / "params.yaml").write_text("# my project\ningest:\n  workers: 1  # keep it small\ncurate:\n"
                                      "  formats: [parquet]\n  slices: {}  # named filters\n")
    at = app(root / "reports" / "publish", "images", monkeypatch, where="label = 'cat' AND width > 100")
    at.text_input(key="slice-name").input("big_cats").run()
    next(b for b in at.button if b.label == "Save slice").click().run()
    assert not at.exception, [e.value for e in at.exception]
    text = (root / "params.yaml").read_text()
    assert "# my project" in text and "workers: 1  # keep it small" in text and "# named filters" in text
    from pixelscope.config import load_params

    assert load_params(root / "params.yaml").curate.slices == {"big_cats": "label = 'cat' AND width > 100"}
    at = app(root / "reports" / "publish", "images", monkeypatch)
    assert "slice: big_cats" in next(s for s in at.selectbox if s.label == "slice").options


@pytest.mark.slow
def test_pixelscope_dashboard_read_only_shows_no_action_in_the_browser(bundle, tmp_path):
    import os
    import subprocess
    import sys

    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    root = tmp_path / "project"
    shutil.copytree(bundle.parents[1], root, symlinks=True)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pixelscope", "dashboard", str(root / "reports" / "publish"),
                             "--port", str(port), "--project", str(root), "--read-only"], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={k: v for k, v in os.environ.items() if not k.startswith("PIXELSCOPE_")})
    served = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(served), "the dashboard did not start"
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            for path in ("images?where=label%20%3D%20'cat'", "issues", "decisions", "embedding_map"):
                page.goto(f"{served}/{path}")
                finished(page)
                body = page.inner_text("body")
                assert not re.search(r"Act on (the|these|this|all|every) ", body), path  # an action panel's title
                assert "Apply decisions" not in body and "keep this one" not in body and "Record for" not in body, path
                assert "read-only" in body
            browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert not (root / "curation" / "decisions.jsonl").exists() or not (root / "curation" / "decisions.jsonl").read_text()


def test_the_evaluation_page_shows_the_models_numbers_and_a_confusion_cells_images(bundle, monkeypatch):
    manifest = pq.read_table(bundle / "manifest.parquet").to_pandas()
    rows = manifest[(manifest["status"] == "ok") & manifest["label"].notna() & manifest["pred_label"].notna()]
    accuracy = float((rows["label"] == rows["pred_label"]).mean())
    cell = int(((rows["label"] == "rocket") & (rows["pred_label"] == "cat")).sum())
    assert 0 < accuracy < 1 and cell > 0
    at = app(bundle, "evaluation", monkeypatch, true="rocket", pred="cat")
    assert metric(at, "accuracy") == f"{accuracy:.3f}" and metric(at, "evaluated") == f"{len(rows):,}"
    assert f"{cell:,} images labelled rocket, predicted cat" in texts(at)
    assert len(at.get("plotly_chart")) >= 1


@pytest.fixture(scope="module")
def detection_bundle(corpus, tmp_path_factory) -> Path:
    """12 real ant / bee photos with COCO boxes (two per image) and a model's boxes for them, through
    ingest, objects, profile, issues and publish."""
    from pixelscope.annotations.step import objects_step
    from pixelscope.issues.step import issues_step
    from pixelscope.profile.step import profile_step
    from pixelscope.publish.step import publish_step

    root = tmp_path_factory.mktemp("det-dash")
    raw = root / "data" / "raw"
    raw.mkdir(parents=True)
    for f in sorted((corpus / "labeled" / "hymenoptera").rglob("*.jpg"))[:12]:
        shutil.copy(f, raw / f.name)
    p0 = parse_params({"ingest": {"workers": 1}})
    ingest_to(p0, raw, root / p0.paths.manifest)
    m = pq.read_table(root / p0.paths.manifest).to_pandas()
    images, anns, preds = [], [], []
    for k, (path, w, h) in enumerate(zip(m["path"], m["width"], m["height"])):
        images.append({"id": k, "file_name": path, "width": int(w), "height": int(h)})
        for cat, box in ((1, [w * 0.1, h * 0.1, w * 0.3, h * 0.4]), (2, [w * 0.5, h * 0.5, w * 0.05, h * 0.05])):
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": cat, "bbox": box, "iscrowd": 0})
            preds.append({"image_id": k, "category_id": cat, "bbox": [box[0] + 2, box[1], box[2], box[3]], "score": 0.97})
    (root / "coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "ant"}, {"id": 2, "name": "bee"}]}))
    (root / "preds.json").write_text(json.dumps(preds))
    p = parse_params({"ingest": {"workers": 1, "annotations": {"path": "coco.json", "predictions": "preds.json"}},
                      "paths": {"embeddings": "none"}})
    for step in (objects_step, profile_step, issues_step, publish_step):
        step(p, root)
    return root / "reports" / "publish"


def test_the_patches_page_shows_object_crops_filters_them_and_opens_their_image(detection_bundle, monkeypatch):
    objects = pq.read_table(detection_bundle / "objects.parquet").to_pandas()
    assert len(objects) == 24 and (detection_bundle / "predicted_objects.parquet").exists()
    at = app(detection_bundle, "patches", monkeypatch)
    assert len(at.get("image")) == 24 and "24 objects" in texts(at)
    at = app(detection_bundle, "patches", monkeypatch, pwhere="class = 'bee' AND rel_area < 0.01")
    assert len(at.get("image")) == 12 and "12 objects" in texts(at)
    small = objects[objects["class"] == "bee"].sort_values("rel_area").iloc[0]
    patches = [c.value for c in at.caption if "of the image" in c.value]
    assert len(patches) == 12 and all(c.startswith("bee") for c in patches)
    assert patches[0].startswith(f"bee · {small['rel_area']:.3%}")  # smallest first (sorted by rel_area)
    at = app(detection_bundle, "patches", monkeypatch, pwhere="no_such_column > 1")
    assert at.error and "no_such_column > 1" in shown(at.error[0].value)
    at = app(detection_bundle, "patches", monkeypatch)
    at.radio(key="patch_source").set_value("the model's boxes").run()
    assert len(at.get("image")) == 24 and not at.exception
    # the Images page draws an opened image's boxes (toggles on by default)
    image_id = pq.read_table(detection_bundle / "manifest.parquet").column("id")[0].as_py()
    at = app(detection_bundle, "images", monkeypatch, image=image_id)
    assert at.toggle(key="gt_boxes").value and at.toggle(key="pred_boxes").value
    assert "annotated boxes (2)" in at.toggle(key="gt_boxes").label
    at = app(detection_bundle, "images", monkeypatch)  # the grid: boxes on every thumbnail, on request
    at.toggle(key="grid_boxes").set_value(True).run()
    assert not at.exception and len(at.get("image")) == 12
    # the Features page shows the objects' own sketches: relative area, overlaid per class
    at = app(detection_bundle, "features", monkeypatch, rows="annotated objects")
    assert at.radio(key="rows").value == "annotated objects" and at.selectbox[0].value == "rel_area"
    objects_profile = Profile.load(detection_bundle / "profile.json").objects
    assert objects_profile is not None and "class" in at.radio[1].options
    shown_table = next(d.value for d in at.dataframe if "p50" in d.value.columns)
    assert shown_table.iloc[0]["p50"] == pytest.approx(objects_profile.quantiles("rel_area", [0.5])[0])


def test_boxes_are_drawn_in_their_class_colour_where_the_box_is():
    from dashboards.boxes import colour, crop, draw

    image = np.full((100, 200, 3), 255, np.uint8)
    truth = pd.DataFrame({"x0": [20.0], "y0": [10.0], "x1": [120.0], "y1": [60.0], "class": ["ant"]})
    drawn = draw(image, (400, 200), truth, None)  # the image is half the size the boxes are in
    want = tuple(int(colour("ant")[k:k + 2], 16) for k in (1, 3, 5))
    assert tuple(drawn[20, 10]) == want and tuple(drawn[30, 35]) == want  # left edge x = 10, bottom edge y = 30
    assert tuple(drawn[50, 100]) == (255, 255, 255)  # outside the box: untouched
    patch = crop(image, (400, 200), (20.0, 10.0, 120.0, 60.0), side=80)
    assert max(patch.shape[:2]) == 80


def test_mask_outlines_are_drawn_from_polygons_and_rle():
    """An object's mask outline in its class colour, from a polygon (scaled) and from a compressed RLE
    (decoded by pycocotools, traced); inside the mask and off its edge the pixels are untouched."""
    import json

    from pycocotools import mask as cocomask

    from dashboards.boxes import colour, draw

    image = np.full((100, 200, 3), 255, np.uint8)
    m = np.zeros((200, 400), np.uint8)
    m[100:160, 240:360] = 1  # full size 400 x 200: the drawn image is half of it
    rle = cocomask.encode(np.asfortranarray(m))
    truth = pd.DataFrame({"x0": [0.0, 220.0], "y0": [0.0, 90.0], "x1": [200.0, 380.0], "y1": [100.0, 170.0],
                          "class": ["ant", "bee"],
                          "segmentation": [json.dumps([[40.0, 20.0, 160.0, 20.0, 100.0, 80.0]]),
                                           json.dumps({"size": [200, 400], "counts": rle["counts"].decode()})]})
    drawn = draw(image, (400, 200), truth, None)
    ant, bee = (tuple(int(colour(c)[k:k + 2], 16) for k in (1, 3, 5)) for c in ("ant", "bee"))
    assert tuple(drawn[10, 50]) == ant  # the triangle's top edge (y 20 -> 10 drawn), inside its box
    assert tuple(drawn[25, 50]) == (255, 255, 255)  # inside the triangle: untouched
    assert tuple(drawn[65, 120]) == bee and tuple(drawn[50, 150]) == bee  # the RLE square's left and top edges
    assert tuple(drawn[65, 150]) == (255, 255, 255)  # inside it


@pytest.mark.slow
def test_boxes_and_patches_in_a_real_browser(detection_bundle, tmp_path):
    """Chromium on the detection bundle: the Patches page shows the crops and opens an image, whose
    boxes are drawn; nothing is asked of any host but 127.0.0.1; screenshots for the README
    (PIXELSCOPE_SCREENSHOTS=1 writes them to docs/dashboard/)."""
    import os
    import subprocess

    from playwright.sync_api import sync_playwright

    from pixelscope.cli.dashboard import streamlit_command

    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run does it)")
    shots = REPO / "docs" / "dashboard" if os.environ.get("PIXELSCOPE_SCREENSHOTS") else tmp_path
    port = free_port()
    proc = subprocess.Popen(streamlit_command(port), env={**os.environ, "PIXELSCOPE_BUNDLE": str(detection_bundle)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_healthy(url), "streamlit did not start"
        hosts: set[str] = set()
        with sync_playwright() as pw:
            browser, page = chromium_page(pw, hosts, height=1000)
            page.goto(f"{url}/patches")
            finished(page)
            assert page.locator("[data-testid='stException']").count() == 0
            page.wait_for_function("() => document.querySelectorAll('[data-testid=\"stImage\"]').length >= 24",
                                   timeout=60_000)  # the crops arrive as the page runs
            assert page.locator("[data-testid='stImage']").count() == 24 and "24 objects" in page.inner_text("body")
            page.screenshot(path=str(shots / "patches.png"))
            page.get_by_text("open image").first.click()
            page.wait_for_function("() => document.body.innerText.includes('annotated boxes')", timeout=60_000)
            finished(page)
            assert "image=" in page.url and page.locator("[data-testid='stImage']").count() >= 1
            page.screenshot(path=str(shots / "boxes.png"))
            browser.close()
        assert hosts == {f"127.0.0.1:{port}"}, hosts
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_an_opened_image_names_its_issue_flags(bundle, monkeypatch):
    """The Issues line lists the image's flags (a bool column with a _score beside it); it said "none"
    for every image whose table held numpy booleans."""
    issues = pq.read_table(bundle / "issues.parquet").to_pandas()
    hit = issues[issues["near_duplicate"].astype(bool)].iloc[0]
    at = app(bundle, "images", monkeypatch, image=hit["id"][:16])
    line = next(shown(m.value) for m in at.markdown if "**Issues:**" in m.value)
    assert "near_duplicate" in line and "none" not in line


def test_an_object_drift_row_draws_its_cdfs_and_links_to_the_patches(detection_bundle, tmp_path, monkeypatch):
    """A drift row about the objects (objects.rel_area) draws the reference and current CDFs from the
    objects' own sketches and links to those objects on the Patches page (not to an image column)."""
    from urllib.parse import unquote_plus

    from pixelscope.validate.drift import compare as drift_rows

    b = tmp_path / "b"
    shutil.copytree(detection_bundle, b)
    shutil.copy(b / "profile.json", b / "reference.json")
    p = Profile.load(b / "profile.json")
    rows = pd.DataFrame([r.__dict__ for r in drift_rows(p, p, parse_params({"drift": {"min_rows": 10}}).drift)])
    assert rows["feature"].str.startswith("objects.").any()
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), b / "drift.parquet")
    target = next(f"{f} [{s}] {t}" for f, s, t in zip(rows["feature"], rows["segment"], rows["test"])
                  if f == "objects.rel_area" and s == "all")
    at = app(b, "drift", monkeypatch, only="0", row=target)
    assert not at.exception and len(at.get("plotly_chart")) == 1
    links = [e for e in at.get("page_link")]
    said = [(e.proto.label, unquote_plus(e.proto.query_string)) for e in links]
    assert any("Patches page" in label and "rel_area BETWEEN" in query for label, query in said), said


def test_the_evaluation_page_shows_a_detectors_coco_metrics(detection_bundle, monkeypatch):
    """Publish carries pycocotools' metrics of the model's boxes; the Evaluation page shows them (and no
    classification section when there are no per-image predictions)."""
    m = json.loads((detection_bundle / "box_metrics.json").read_text())
    assert m["map50"] == 1.0 and 0 < m["map"] <= 1.0  # every box found, 2 px off
    at = app(detection_bundle, "evaluation", monkeypatch)
    assert metric(at, "mAP@50") == "1.000" and metric(at, "mAP (IoU .50:.95)") == f"{m['map']:.3f}"
    assert metric(at, "false positives") == "0" and metric(at, "false negatives") == "0"
    per_class = next(d.value for d in at.dataframe if "ap50" in d.value.columns)
    assert sorted(per_class["class"]) == ["ant", "bee"] and not at.info


def test_the_evaluation_page_lists_a_detectors_misses_each_opening_its_image(detection_bundle, tmp_path, monkeypatch):
    b = tmp_path / "b"
    shutil.copytree(detection_bundle, b)
    path = pq.read_table(b / "manifest.parquet").column("path")[0].as_py()
    pq.write_table(pa.table({"path": [path], "kind": ["false_negative"], "class": ["bee"],
                             "bbox": [[10.0, 20.0, 30.0, 40.0]], "score": pa.array([None], pa.float64())}),
                   b / "box_errors.parquet")
    at = app(b, "evaluation", monkeypatch)
    assert metric(at, "false negatives") == "1"
    said = [e.proto.label for e in at.get("page_link")]
    assert said == [f"{path} · bee at (10, 20, 30, 40)"], said
