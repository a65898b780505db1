"""Detection and segmentation annotations (COCO, YOLO, VOC, masks) read into one objects table,
checked against the real images: each broken annotation is a flagged row naming its file, object
and rule; counts add up; the same boxes in three formats give the same objects; mask areas agree
with pycocotools' own COCO API."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from conftest import ingest_to
from pixelscope.annotations.formats import detect, read
from pixelscope.annotations.objects import objects_table
from pixelscope.config import parse_params
from pixelscope.errors import BadInput

pytest.importorskip("pycocotools")


@pytest.fixture(scope="module")
def photos(corpus, tmp_path_factory) -> tuple[Path, object]:
    """Four real photos in raw/images/ (one unannotated), and their manifest."""
    root = tmp_path_factory.mktemp("det")
    images = root / "raw" / "images"
    images.mkdir(parents=True)
    for f in sorted((corpus / "labeled" / "hymenoptera").rglob("*.jpg"))[:4]:
        shutil.copy(f, images / f.name)
    ingest_to(parse_params({"ingest": {"workers": 1}}), root / "raw", root / "m.parquet")
    return root, pq.read_table(root / "m.parquet")


def sizes(manifest) -> dict[str, tuple[int, int]]:
    m = manifest.to_pydict()
    return {Path(p).name: (w, h) for p, w, h in zip(m["path"], m["width"], m["height"])}


def good_boxes(manifest) -> dict[str, list[tuple[int, float, float, float, float]]]:
    """(class, x0, y0, x1, y1) per image: three of the four photos annotated, one box at the border."""
    out = {}
    for k, (name, (w, h)) in enumerate(sorted(sizes(manifest).items())[:3]):
        out[name] = [(0, 0.0, 0.0, w * 0.5, h * 0.5), (1, w * 0.25, h * 0.3, w * 0.75, h * 0.9)][: 1 + k % 2]
    return out


def write_yolo(folder: Path, manifest, data_yaml: str) -> None:
    """good_boxes as YOLO label files (class cx cy w h, shares of the image) and a data.yaml."""
    (folder / "data.yaml").write_text(data_yaml)
    for name, boxes in good_boxes(manifest).items():
        w, h = sizes(manifest)[name]
        (folder / f"{Path(name).stem}.txt").write_text("".join(
            f"{c} {(x0 + x1) / 2 / w} {(y0 + y1) / 2 / h} {(x1 - x0) / w} {(y1 - y0) / h}\n" for c, x0, y0, x1, y1 in boxes))


def write_coco(path: Path, manifest, extra_annotations=(), extra_images=()) -> dict:
    images = [{"id": k, "file_name": name, "width": w, "height": h}
              for k, (name, (w, h)) in enumerate(sorted(sizes(manifest).items()))] + list(extra_images)
    ids = {im["file_name"]: im["id"] for im in images}
    anns = []
    for name, boxes in good_boxes(manifest).items():
        for c, x0, y0, x1, y1 in boxes:
            anns.append({"id": len(anns) + 1, "image_id": ids[name], "category_id": c + 1, "iscrowd": 0,
                         "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
                         "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]})
    for a in extra_annotations:
        anns.append({"id": len(anns) + 1, "iscrowd": 0, **a})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "ant"}, {"id": 2, "name": "bee"}]}
    path.write_text(json.dumps(data))
    return data


def test_coco_objects_are_checked_against_their_images_and_every_broken_one_is_named(photos, tmp_path):
    root, manifest = photos
    (name, (w, h)), *_ = sorted(sizes(manifest).items())
    rle_mask = np.zeros((h, w), np.uint8, order="F")
    rle_mask[10:40, 20:80] = 1
    from pycocotools import mask as cocomask

    rle = cocomask.encode(rle_mask)
    rle["counts"] = rle["counts"].decode()
    broken = [
        {"image_id": 0, "category_id": 9, "bbox": [1, 1, 5, 5]},  # unknown_class
        {"image_id": 0, "category_id": 1, "bbox": [w - 10, 5, 50, 20]},  # box_outside
        {"image_id": 0, "category_id": 1, "bbox": [5, 5, 0, 10]},  # bad_box
        {"image_id": 0, "category_id": 1, "segmentation": [[1, 1, 5, 5]]},  # bad_polygon
        {"image_id": 0, "category_id": 2, "segmentation": rle, "iscrowd": 1},  # an RLE crowd region: kept
        {"image_id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]},  # image_missing
        {"image_id": 0, "category_id": 1},  # no_geometry
    ]
    data = write_coco(tmp_path / "instances.json", manifest, broken,
                      [{"id": 99, "file_name": "not-there.jpg", "width": 10, "height": 10}])
    assert detect(tmp_path / "instances.json") == "coco"
    objects, images, counts = objects_table(read(tmp_path / "instances.json"), manifest)
    o = objects.to_pandas()
    assert counts["objects_read"] == len(data["annotations"]) == counts["kept"] + counts["flagged"]
    assert counts["flagged_by_rule"] == {"unknown_class": 1, "box_outside": 1, "bad_box": 1, "bad_polygon": 1,
                                         "image_missing": 1, "no_geometry": 1}
    for rule, row in o[o["status"] == "flagged"].set_index("rule").iterrows():
        assert "instances.json" in row["detail"] and "object #" in row["detail"], rule
    assert "not-there.jpg" in o.set_index("rule").loc["image_missing", "detail"]
    crowd = o[o["crowd"]].iloc[0]
    assert crowd["status"] == "ok" and crowd["mask_area"] == 30 * 60 and (crowd["x0"], crowd["y0"]) == (20, 10)
    # the masks' areas are the ones pycocotools' own COCO API computes for the same annotations
    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "instances.json"))
    ok = o[(o["status"] == "ok")]
    by_box = {(r.path.split("/")[-1], round(r.x0, 3), round(r.y0, 3)): r.mask_area for r in ok.itertuples()}
    for ann in coco.loadAnns(coco.getAnnIds()):
        if "segmentation" in ann and ann["image_id"] != 99 and "bbox" in ann and ann["bbox"][2] > 0 \
                and len(ann["segmentation"]) and isinstance(ann["segmentation"], list) and len(ann["segmentation"][0]) >= 6:
            key = (coco.imgs[ann["image_id"]]["file_name"], round(ann["bbox"][0], 3), round(ann["bbox"][1], 3))
            assert by_box[key] == coco.annToMask(ann).sum()
    # per image: every readable image is a row, the unannotated one with no objects
    im = images.to_pandas().set_index("path")
    assert len(im) == 4 and counts["images_without_objects"] == 1 and sorted(im["objects"]) == [0, 1, 2, 2]
    two = im.loc[f"images/{sorted(sizes(manifest))[1]}"]  # boxes of 0.25 and 0.30 of the image overlapping by 0.05
    assert list(two["classes"]) == ["ant", "bee"] and two["coverage"] == pytest.approx(0.50, abs=0.02)


def test_the_same_boxes_as_yolo_voc_and_coco_give_the_same_objects(photos, tmp_path):
    root, manifest = photos
    write_coco(tmp_path / "coco.json", manifest)
    yolo, voc = tmp_path / "yolo", tmp_path / "voc"
    yolo.mkdir()
    voc.mkdir()
    write_yolo(yolo, manifest, "names: [ant, bee]\n")
    for name, boxes in good_boxes(manifest).items():
        w, h = sizes(manifest)[name]
        objs = "".join(f"<object><name>{['ant', 'bee'][c]}</name><truncated>0</truncated><bndbox><xmin>{x0}</xmin>"
                       f"<ymin>{y0}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>" for c, x0, y0, x1, y1 in boxes)
        (voc / f"{Path(name).stem}.xml").write_text(f"<annotation><filename>{name}</filename><size><width>{w}</width>"
                                                     f"<height>{h}</height></size>{objs}</annotation>")
    assert detect(yolo) == "yolo" and detect(voc) == "voc"
    cols = ["path", "object", "class", "x0", "y0", "x1", "y1", "rel_area", "truncated"]
    tables = {}
    for fmt, where in (("coco", tmp_path / "coco.json"), ("yolo", yolo), ("voc", voc)):
        objects, _, counts = objects_table(read(where), manifest)
        assert counts["flagged"] == 0 and counts["kept"] == sum(len(b) for b in good_boxes(manifest).values()), fmt
        tables[fmt] = objects.to_pandas()[cols].sort_values(["path", "object"]).reset_index(drop=True)
    for fmt in ("yolo", "voc"):
        np.testing.assert_allclose(tables[fmt][["x0", "y0", "x1", "y1"]], tables["coco"][["x0", "y0", "x1", "y1"]],
                                   atol=1e-6, err_msg=fmt)
        assert tables[fmt]["class"].tolist() == tables["coco"]["class"].tolist()
        assert tables[fmt]["truncated"].tolist() == tables["coco"]["truncated"].tolist()
    assert tables["coco"]["truncated"].any() and not tables["coco"]["truncated"].all()


def test_yolo_and_voc_lines_that_cannot_be_read_are_named_not_guessed(photos, tmp_path):
    root, manifest = photos
    (name, (w, h)), *_ = sorted(sizes(manifest).items())
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "classes.txt").write_text("ant\nbee\n")
    (yolo / f"{Path(name).stem}.txt").write_text("0 0.5 0.5 0.2 0.2\nant 0.5 0.5 0.1 0.1\n0 0.5 0.5\n5 0.5 0.5 0.1 0.1\n"
                                                  "1 0.1 0.1 0.4 0.1 0.4 0.4\n")
    r = read(yolo)
    assert [(p.rule, p.detail.split(":")[0]) for p in r.problems] == [("bad_line", "line 2"), ("bad_line", "line 3")]
    objects, _, counts = objects_table(r, manifest)
    assert counts["objects_read"] == 3 and counts["flagged_by_rule"] == {"unknown_class": 1}
    polygon = objects.to_pandas().query("`class` == 'bee'").iloc[0]
    assert polygon["mask_area"] == pytest.approx(0.5 * (0.3 * w) * (0.3 * h), rel=0.05)  # a right triangle
    voc = tmp_path / "voc"
    voc.mkdir()
    (voc / "a.xml").write_text("<annotation><filename>x.jpg</filename>")
    (voc / "b.xml").write_text('<!DOCTYPE x [<!ENTITY a "aaaa">]><annotation>&a;</annotation>')  # entities: refused
    assert [p.rule for p in read(voc).problems] == ["bad_xml", "bad_xml"]
    with pytest.raises(BadInput, match="ingest.annotations.format"):
        read(voc, "labelme")  # type: ignore[arg-type]


def test_segmentation_masks_give_one_object_per_class_and_a_mask_of_another_size_is_flagged(photos, tmp_path):
    root, manifest = photos
    (a, (w, h)), (b, _), *_ = sorted(sizes(manifest).items())
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "classes.txt").write_text("background\nant\nbee\n")
    m = np.zeros((h, w), np.uint8)
    m[10:30, 5:25] = 1
    m[50:60, 40:100] = 2
    m[0:5, 0:5] = 255  # "ignore"
    Image.fromarray(m).save(masks / f"{Path(a).stem}.png")
    Image.fromarray(np.ones((8, 8), np.uint8)).save(masks / f"{Path(b).stem}.png")
    assert detect(masks) == "masks"
    objects, _, counts = objects_table(read(masks), manifest)
    o = objects.to_pandas().query("status == 'ok'").set_index("class")
    assert counts["objects_read"] == 4 and counts["flagged_by_rule"] == {"mask_size": 1}  # background is a class here
    assert o.loc["ant", "mask_area"] == 400 and (o.loc["ant", "x0"], o.loc["ant", "y1"]) == (5, 30)
    assert o.loc["bee", "mask_area"] == 600 and o.loc["bee", "fill"] == 1.0
    assert "8 x 8" in objects.to_pandas().query("rule == 'mask_size'")["detail"].item()


@pytest.mark.slow
def test_the_objects_stage_runs_in_dvc_and_prefect_and_reruns_when_the_annotations_change(photos, tmp_path,
                                                                                           prefect_server):
    """A git + DVC project with COCO annotations: `dvc repro objects` writes the tables; editing the
    JSON reruns the objects stage alone (the annotation file is a dep); the Prefect flow on a YOLO copy
    gives the same boxes."""
    import subprocess
    import sys

    import yaml

    from conftest import REPO
    from flows.steps import objects_flow
    from pixelscope.pipeline.stages import dvc_yaml

    _, manifest = photos
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(photos[0] / "raw", root / "data" / "raw")
    shutil.copytree(REPO / "pixelscope", root / "pixelscope", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["ingest"].update(workers=1, annotations={"path": "annotations/instances.json", "format": "auto"})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (root / "annotations").mkdir()
    write_coco(root / "annotations" / "instances.json", manifest)
    (root / "dvc.yaml").write_text(dvc_yaml(root / "params.yaml"))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path)}

    def run(*args: str) -> str:
        r = subprocess.run(list(args), cwd=root, capture_output=True, text=True, env=env, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    run("git", "init", "-q")
    run(sys.executable, "-m", "dvc", "init", "-q")
    out = run(sys.executable, "-m", "dvc", "repro", "objects")
    assert "Running stage 'ingest'" in out and "Running stage 'objects'" in out
    coco = pq.read_table(root / "data" / "interim" / "objects.parquet").to_pandas()
    assert len(coco) == sum(len(b) for b in good_boxes(manifest).values()) and (coco["status"] == "ok").all()
    metrics = json.loads((root / "reports" / "metrics" / "objects.json").read_text())
    assert metrics["objects_read"] == metrics["kept"] + metrics["flagged"] == len(coco)
    data = json.loads((root / "annotations" / "instances.json").read_text())
    data["annotations"][0]["bbox"][2] = -3  # a broken box: the stage reruns and flags it
    (root / "annotations" / "instances.json").write_text(json.dumps(data))
    out = run(sys.executable, "-m", "dvc", "repro", "objects")
    assert "Running stage 'objects'" in out and "Running stage 'ingest'" not in out
    again = pq.read_table(root / "data" / "interim" / "objects.parquet").to_pandas()
    assert again["rule"].tolist().count("bad_box") == 1 and len(again) == len(coco)
    # the Prefect flow, the same stage, YOLO labels of the same boxes
    yolo = root / "labels"
    yolo.mkdir()
    write_yolo(yolo, manifest, "names: {0: ant, 1: bee}\n")  # the mapping form of data.yaml's names
    result = objects_flow(str(root), {"ingest": {"annotations": {"path": "labels", "format": "auto"}}})
    assert result["counts"]["kept"] == len(coco) and result["counts"]["flagged"] == 0
    flowed = pq.read_table(root / "data" / "interim" / "objects.parquet").to_pandas()
    np.testing.assert_allclose(flowed.sort_values(["path", "object"])[["x0", "y0", "x1", "y1"]],
                               coco.sort_values(["path", "object"])[["x0", "y0", "x1", "y1"]], atol=1e-6)


def coco_with_random_boxes(path: Path, manifest, seed: int, scale: float, per_image: int = 30) -> None:
    """per_image boxes on every photo, sides uniform in [0.05, 0.2] x scale of the image's, two classes."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    for k, (name, (w, h)) in enumerate(sorted(sizes(manifest).items())):
        images.append({"id": k, "file_name": name, "width": w, "height": h})
        for _ in range(per_image):
            bw, bh = rng.uniform(0.05, 0.2) * scale * w, rng.uniform(0.05, 0.2) * scale * h
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            anns.append({"id": len(anns) + 1, "image_id": k, "category_id": int(rng.integers(1, 3)),
                         "bbox": [x, y, bw, bh], "iscrowd": 0})
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "ant"}, {"id": 2, "name": "bee"}]}))


def test_object_sketches_merge_travel_in_the_profile_and_drift_in_their_own_family(photos, tmp_path):
    """The profile step adds the objects' sketches (overall and per class) to the profile; they
    survive save / load, merge like the rest, and a 'zoom changed' version (boxes twice the side)
    drifts in the objects family while a like version does not."""
    from pixelscope.annotations.step import objects_step
    from pixelscope.profile import Profile
    from pixelscope.profile.step import profile_step
    from pixelscope.validate.drift import compare

    root, manifest = photos

    def version(name: str, seed: int, scale: float) -> Profile:
        project = tmp_path / name
        coco_with_random_boxes(tmp_path / f"{name}.json", manifest, seed, scale)
        p = parse_params({"ingest": {"workers": 1, "annotations": {"path": str(tmp_path / f"{name}.json")}},
                          "paths": {"raw": str(root / "raw")}})
        ingest_to(p, root / "raw", project / "data" / "interim" / "manifest.parquet")
        assert objects_step(p, project).counts["kept"] == 120
        result = profile_step(p, project)
        assert result.counts["objects"] == 120
        return Profile.load(project / "data" / "processed" / "profile.json")

    ref, like, zoomed = version("ref", 0, 1.0), version("like", 1, 1.0), version("zoomed", 2, 2.0)
    assert ref.objects is not None and ref.objects.files_seen == 120 and set(ref.objects.segments["class"]) == {"ant", "bee"}
    assert ref.objects.columns["rel_area"].quantiles([0.5])[0] == pytest.approx(0.0156, rel=0.35)  # ~0.125^2
    merged = Profile.deserialize(ref.serialize()).merge(Profile.deserialize(like.serialize()))
    assert merged.objects is not None and merged.objects.ok == 240 and merged.ok == ref.ok + like.ok
    drifted = {(r.feature, r.family) for r in compare(ref, zoomed) if r.drift}
    assert ("objects.rel_area", "objects") in drifted and ("objects.width", "objects") in drifted
    assert not any(f.startswith("objects.") for f, _ in {(r.feature, r.family) for r in compare(ref, like) if r.drift})
    assert not {f for f, _ in drifted if not f.startswith("objects.")}  # the images themselves did not change
    with pytest.raises(BadInput, match="objects"):
        Profile.deserialize(ref.serialize()).merge(Profile.deserialize(ref.serialize()).__class__.empty(ref.kinds, ref.cfg))


def test_the_objects_finder_flags_planted_box_faults_and_names_the_objects(photos, tmp_path):
    """Planted on real photos: a box annotated twice, one box under two classes, a box too small for a
    640-px input, an object at the border, a rare class, an image left without objects, and an object
    the stage flagged. Each lands on its image, with a reason naming the objects; clean images stay clean."""
    from pixelscope.annotations.step import objects_step
    from pixelscope.issues.step import issues_step

    root, manifest = photos
    (a, (wa, ha)), (b, (wb, hb)), (c, (wc, hc)), (d, (wd, hd)) = sorted(sizes(manifest).items())
    images = [{"id": k, "file_name": n, "width": w, "height": h}
              for k, (n, (w, h)) in enumerate(sorted(sizes(manifest).items()))]
    box = lambda k, cat, x, y, w, h: {"image_id": k, "category_id": cat, "bbox": [x, y, w, h], "iscrowd": 0}  # noqa: E731
    anns = [box(0, 1, 20, 20, 100, 80), box(0, 1, 21, 20, 100, 80),  # a: ant twice (IoU ~0.98)
            box(1, 1, 30, 30, 90, 90), box(1, 2, 30, 30, 90, 90),  # b: ant and bee on one box
            box(1, 1, 150, 40, 2, 2),  # b: 2 px: under 8 px at a 640 input for any photo here
            box(2, 1, 0, 10, 60, 60), box(2, 3, 80, 80, 50, 50),  # c: at the left border; the only wasp
            box(2, 1, 90, 5, -4, 10)]  # c: a box the objects stage flags (bad_box); d: no objects
    anns += [box(k % 3, 2, 200 + 30 * (k // 3), 150, 25, 25) for k in range(30)]  # bees, so the wasp is rare
    for n, x in enumerate(anns, 1):
        x["id"] = n
    (tmp_path / "coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "ant"}, {"id": 2, "name": "bee"}, {"id": 3, "name": "wasp"}]}))
    project = tmp_path / "project"
    p = parse_params({"ingest": {"workers": 1, "annotations": {"path": str(tmp_path / "coco.json")}},
                      "paths": {"raw": str(root / "raw")}, "issues": {"objects": {"rare_share": 0.05}}})
    ingest_to(p, root / "raw", project / "data" / "interim" / "manifest.parquet")
    objects_step(p, project)
    issues_step(p, project)
    issues = pq.read_table(project / "data" / "processed" / "issues.parquet").to_pandas()
    issues["name"] = issues["path"].str.split("/").str[-1]
    flagged = {flag: sorted(issues.loc[issues[flag], "name"]) for flag in
               ("duplicate_boxes", "class_overlap", "small_objects", "cut_objects", "no_objects", "rare_class",
                "flagged_objects")}
    assert flagged["duplicate_boxes"] == [a] and flagged["class_overlap"] == [b] and flagged["small_objects"] == [b]
    assert flagged["no_objects"] == [d] and flagged["rare_class"] == [c] and flagged["flagged_objects"] == [c]
    assert c in flagged["cut_objects"]
    reasons = dict(zip(issues["name"], issues["reasons"]))
    assert "#0 (ant) and #1 (ant): IoU 0.98" in reasons[a] and "#0 (ant) and #1 (bee): IoU 1.00" in reasons[b]
    assert "wasp" in reasons[c] and "bad_box" in reasons[c]
    assert issues.loc[issues["name"] == a, "duplicate_boxes_score"].item() == pytest.approx(0.98, abs=0.01)
    summary = json.loads((project / "data" / "processed" / "issues.json").read_text())["finders"]["objects"]
    assert summary["classes"] == {"bee": 31, "ant": 5, "wasp": 1} and summary["imbalance"] == 31.0
    assert not issues.loc[issues["name"] == d, ["duplicate_boxes", "class_overlap", "small_objects"]].any(axis=None)


def detection_project(corpus: Path, tmp_path: Path, **curate):
    """16 ant / bee photos with 3 random COCO boxes each, through ingest, objects, issues and curate."""
    from conftest import REPO
    from pixelscope.annotations.step import objects_step
    from pixelscope.curate.step import curate_step
    from pixelscope.issues.step import issues_step

    raw = tmp_path / "data" / "raw"
    for label in ("ants", "bees"):
        (raw / label).mkdir(parents=True)
        for f in sorted((corpus / "labeled" / "hymenoptera").rglob(f"{label}*/*.jpg"))[:8]:
            shutil.copy(f, raw / label / f.name)
    shutil.copytree(REPO / "expectations", tmp_path / "expectations")
    p0 = parse_params({"ingest": {"workers": 1}})
    ingest_to(p0, raw, tmp_path / p0.paths.manifest)
    manifest = pq.read_table(tmp_path / p0.paths.manifest)
    coco_with_random_boxes(tmp_path / "coco.json", manifest, seed=3, scale=1.0, per_image=3)
    p = parse_params({"ingest": {"workers": 1, "annotations": {"path": "coco.json"}}, "paths": {"embeddings": "none"},
                      "curate": {"workers": 1, "splits": {"ratios": {"train": 0.75, "val": 0.25, "test": 0.0}},
                                 **curate}})
    objects_step(p, tmp_path)
    issues_step(p, tmp_path)
    curate_step(p, tmp_path)
    return p


@pytest.mark.slow
def test_exports_with_boxes_load_in_pycocotools_torchvision_supervision_and_datasets(corpus, tmp_path):
    """16 ant / bee photos with COCO boxes through objects, issues and curate: the COCO export loads in
    pycocotools and torchvision's CocoDetection, the YOLO export in supervision's reader, the parquet
    export in Hugging Face datasets (an `objects` feature), the webdataset JSON carries the boxes —
    each with the ledger's images and the objects table's kept boxes; the card counts them per split."""
    import tarfile

    p = detection_project(corpus, tmp_path, formats=["coco", "yolo", "parquet", "webdataset"])
    out = tmp_path / "data" / "curated"
    led = pq.read_table(out / "curation.parquet").to_pandas()
    inc = led[led["included"]]
    objs = pq.read_table(tmp_path / p.paths.objects).to_pandas()
    kept = objs[(objs["status"] == "ok") & objs["path"].isin(inc["path"])]
    splits = sorted(set(inc["split"]))
    assert len(kept) > 0 and set(splits) <= {"train", "val"}
    from pycocotools.coco import COCO
    from torchvision.datasets import CocoDetection

    total = 0
    for split in splits:
        ann = out / "coco" / "annotations" / f"instances_{split}.json"
        coco = COCO(str(ann))
        want = kept[kept["path"].isin(inc.loc[inc["split"] == split, "path"])]
        assert len(coco.getImgIds()) == (inc["split"] == split).sum() and len(coco.getAnnIds()) == len(want)
        assert sorted(c["name"] for c in coco.loadCats(coco.getCatIds())) == ["ant", "bee"]
        ds = CocoDetection(str(out / "coco" / split), str(ann))
        image, target = ds[0]
        assert image.size == (coco.imgs[ds.ids[0]]["width"], coco.imgs[ds.ids[0]]["height"]) and isinstance(target, list)
        total += sum(len(ds[k][1]) for k in range(len(ds)))
    assert total == len(kept)
    import supervision as sv

    yolo = out / "yolo"
    for split in splits:
        sv_ds = sv.DetectionDataset.from_yolo(str(yolo / "images" / split), str(yolo / "labels" / split),
                                              str(yolo / "data.yaml"))
        assert len(sv_ds) == (inc["split"] == split).sum() and sv_ds.classes == ["ant", "bee"]
        boxes = sum(len(d) for _, _, d in sv_ds)
        assert boxes == kept["path"].isin(inc.loc[inc["split"] == split, "path"]).sum()
        # the same pixels as the objects table (YOLO keeps 6 decimals of a share of the image)
        exported, _, det = next(iter(sv_ds))
        row = inc[[Path(exported).name.endswith(Path(q).name) for q in inc["path"]]].iloc[0]
        mine = kept[kept["path"] == row["path"]].sort_values("object")[["x0", "y0", "x1", "y1"]].to_numpy()
        np.testing.assert_allclose(np.sort(det.xyxy, axis=0), np.sort(mine, axis=0), atol=0.5)
    import datasets

    hf = datasets.load_dataset("parquet", data_files={s: str(out / "parquet" / "data" / f"{s}-*.parquet") for s in splits})
    assert hf["train"].features["objects"]["category"].feature.names == ["ant", "bee"]
    assert sum(len(r["objects"]["bbox"]) for s in splits for r in hf[s]) == len(kept)
    first = hf["train"][0]
    ref = kept[kept["path"] == inc.set_index("id").loc[first["id"], "path"]].sort_values("object")
    np.testing.assert_allclose(first["objects"]["bbox"], ref[["x0", "y0", "width", "height"]].to_numpy(), atol=0.01)
    with tarfile.open(next((out / "webdataset").glob("train-*.tar"))) as tar:
        sample = json.loads(tar.extractfile(next(m for m in tar.getmembers() if m.name.endswith(".json"))).read())
    assert set(sample["objects"]) == {"bbox", "category"} and len(sample["objects"]["bbox"]) >= 1
    card = (out / "README.md").read_text()
    assert "## Objects" in card and "object-detection" in card
    assert "| train | " in card.split("## Objects")[1]


def test_curate_filters_images_by_their_objects_and_objects_by_their_columns(corpus, tmp_path):
    """`where` sees object_count / object_classes / object_coverage per image; object_classes merges
    classes (ant + bee -> insect) before objects_where drops the small boxes; the COCO export has
    exactly the objects left, and the ledger counts the ones dropped."""
    from pycocotools.coco import COCO

    p = detection_project(corpus, tmp_path, formats=["coco"], exclude=[],
                          where="list_contains(object_classes, 'bee') AND object_coverage > 0",
                          object_classes={"ant": "insect", "bee": "insect"}, objects_where="rel_area >= 0.02")
    out = tmp_path / "data" / "curated"
    led = pq.read_table(out / "curation.parquet").to_pandas()
    per_image = pq.read_table(tmp_path / p.paths.object_images).to_pandas()
    with_bees = set(per_image.loc[[("bee" in list(c)) for c in per_image["classes"]], "path"])
    assert set(led.loc[led["included"], "path"]) == with_bees and 0 < len(with_bees) < 16
    objs = pq.read_table(tmp_path / p.paths.objects).to_pandas()
    want = objs[objs["path"].isin(with_bees) & (objs["rel_area"] >= 0.02)]
    got = 0
    for ann in sorted((out / "coco" / "annotations").glob("*.json")):
        coco = COCO(str(ann))
        assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["insect"]
        got += len(coco.getAnnIds())
    assert got == len(want) > 0
    counts = json.loads((out / "curate.json").read_text())
    assert counts["objects_exported"] == len(want)
    assert counts["objects_dropped"] == objs["path"].isin(with_bees).sum() - len(want) > 0


def test_coco_evaluation_and_cleanlab_find_the_planted_box_errors(photos, tmp_path):
    """A model that predicts the true boxes (score 0.97; cleanlab looks for overlooked objects among
    predictions scored >= 0.95) against annotations with three planted errors —
    a box shifted by 60 % of its width, a box given the other class, an object left unannotated:
    predictions equal to the annotations give mAP 1.0; with the errors, COCOeval's false positives and
    negatives are exactly the planted ones, and cleanlab ranks each planted box first in its kind."""
    from pixelscope.annotations.evaluate import coco_metrics, label_issues
    from pixelscope.annotations.step import objects_step

    root, manifest = photos
    truth = tmp_path / "truth.json"
    coco_with_random_boxes(truth, manifest, seed=5, scale=0.6, per_image=4)
    data = json.loads(truth.read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.97}
               for a in data["annotations"]]
    (tmp_path / "predictions.json").write_text(json.dumps(results))
    anns = data["annotations"]
    shifted, swapped, missing = anns[1], anns[6], anns[11]
    shifted["bbox"][0] += 0.6 * shifted["bbox"][2]
    swapped["category_id"] = 3 - swapped["category_id"]
    data["annotations"] = [a for a in anns if a is not missing]
    (tmp_path / "annotated.json").write_text(json.dumps(data))
    m = manifest.to_pandas()
    images = m[m["status"] == "ok"][["path", "width", "height", "label"]]

    def tables(gt_file: str):
        p = parse_params({"ingest": {"annotations": {"path": str(tmp_path / gt_file),
                                                     "predictions": str(tmp_path / "predictions.json")}}})
        project = tmp_path / gt_file.split(".")[0]
        (project / "data" / "interim").mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "m.parquet", project / "data" / "interim" / "manifest.parquet")
        objects_step(p, project)
        gt = pq.read_table(project / p.paths.objects).to_pandas()
        pred = pq.read_table(project / p.paths.predicted_objects).to_pandas()
        return gt[gt["status"] == "ok"], pred[pred["status"] == "ok"]

    gt, pred = tables("truth.json")
    assert len(pred) == len(gt) == 16 and pred["score"].eq(0.97).all()
    perfect, errors = coco_metrics(images, gt, pred)
    assert perfect["map"] == 1.0 and perfect["map50"] == 1.0 and errors.empty
    gt, pred = tables("annotated.json")
    metrics, errors = coco_metrics(images, gt, pred, slice_by="label")
    assert 0.5 < metrics["map"] < 1.0 and {c["class"] for c in metrics["per_class"]} == {"ant", "bee"}
    assert len(metrics["slices"]) == images["label"].nunique()
    fn = errors[errors["kind"] == "false_negative"]
    fp = errors[errors["kind"] == "false_positive"]
    # the shifted box: an FN (annotation) + FP (prediction); the swapped one: FN + FP; the missing one: an FP
    assert len(fn) == 2 and len(fp) == 3
    names = {k: data_name for k, data_name in enumerate(sorted(sizes(manifest)))}
    assert {(Path(p).name, c) for p, c in zip(fn["path"], fn["class"])} == {
        (names[shifted["image_id"]], ["ant", "bee"][shifted["category_id"] - 1]),
        (names[swapped["image_id"]], ["ant", "bee"][swapped["category_id"] - 1])}
    issues = label_issues(images, gt, pred)
    annotated = issues[issues["kind"] == "annotated"]
    worst_loc = annotated.sort_values("badloc").iloc[0]
    worst_swap = annotated.sort_values("swap").iloc[0]
    worst_missing = issues[issues["kind"] == "predicted"].sort_values("overlooked").iloc[0]
    assert Path(worst_loc["path"]).name == names[shifted["image_id"]]
    assert worst_loc["box"][0] == pytest.approx(shifted["bbox"][0], abs=0.5)
    assert Path(worst_swap["path"]).name == names[swapped["image_id"]]
    assert worst_swap["class"] == ["ant", "bee"][swapped["category_id"] - 1]
    assert Path(worst_missing["path"]).name == names[missing["image_id"]]
    assert worst_missing["box"][0] == pytest.approx(missing["bbox"][0], abs=0.5)
    # the issues step flags those images through cleanlab's verdict, and `pixelscope evaluate` prints the metrics
    import subprocess
    import sys

    from pixelscope.issues.step import issues_step

    project = tmp_path / "annotated"
    p = parse_params({"ingest": {"annotations": {"path": str(tmp_path / "annotated.json"),
                                                 "predictions": str(tmp_path / "predictions.json")}},
                      "paths": {"embeddings": "none"}})
    issues_step(p, project)
    found = pq.read_table(project / p.paths.issues).to_pandas()
    flagged = {Path(x).name for x in found.loc[found["box_label_issue"], "path"]}
    planted = {names[a["image_id"]] for a in (shifted, swapped, missing)}
    assert flagged == planted, (flagged, planted)
    reason = found.loc[found["path"].str.endswith(names[shifted["image_id"]]), "reasons"].item()
    assert "cleanlab: badly located" in reason
    (project / "params.yaml").write_text(
        f"ingest:\n  annotations:\n    path: {tmp_path / 'annotated.json'}\n    predictions: {tmp_path / 'predictions.json'}\n")
    r = subprocess.run([sys.executable, "-m", "pixelscope", "evaluate", "--json"], cwd=project, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    boxes = json.loads(r.stdout)["boxes"]
    assert boxes["map"] == metrics["map"] and boxes["errors"]["false_positives"] == 3
    assert len(pq.read_table(project / "reports" / "evaluate" / "box_errors.parquet")) == 5


@pytest.mark.slow
def test_the_detection_demo_runs_the_whole_pipeline_and_its_planted_faults_are_found(tmp_path, prefect_server):
    """`make demo-detection`'s flow on 60 scenes of a seed nobody tuned on: every stage runs through
    Prefect and DVC, the planted faults are found by the finders, the COCO and YOLO exports hold the
    kept boxes, and the model's boxes are evaluated."""
    import subprocess
    import sys

    from flows.demo_detection import demo_detection

    r = demo_detection(str(tmp_path / "dd"), scenes=60, seed=11)
    assert r["ran"][:2] == ["ingest", "objects"] and "publish" in r["ran"]
    f = r["found"]
    assert all(f[k]["found"] == f[k]["planted"] for k in ("duplicated", "missing", "wrong_class"))
    assert f["shifted"]["found"] >= f["shifted"]["planted"] - 1
    assert f["box_label_issue"]["precision"] == 1.0 and f["duplicate_boxes"]["precision"] == 1.0
    assert 0.5 < r["boxes"]["map"] < 1.0
    root = Path(r["project"])
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    from pycocotools.coco import COCO

    led = pq.read_table(root / "data" / "curated" / "curation.parquet").to_pandas()
    exported = sum(len(COCO(str(a)).getAnnIds()) for a in (root / "data" / "curated" / "coco" / "annotations").glob("*.json"))
    counts = json.loads((root / "data" / "curated" / "curate.json").read_text())
    assert exported == counts["objects_exported"] > 0 and led["included"].sum() > 0
    assert (root / "reports" / "publish" / "objects.parquet").exists()


def test_a_mask_pycocotools_cannot_decode_is_flagged_not_raised(photos, tmp_path):
    root, manifest = photos
    (name, (w, h)), *_ = sorted(sizes(manifest).items())
    images = [{"id": 0, "file_name": name, "width": w, "height": h}]
    anns = [{"id": 1, "image_id": 0, "category_id": 1, "segmentation": {"size": ["a", w], "counts": [1, 2]}},
            {"id": 2, "image_id": 0, "category_id": 1, "segmentation": {"size": [h, w], "counts": [5, w * h * 2]}},
            {"id": 3, "image_id": 0, "category_id": 1, "bbox": [1, 1, 10, 10]}]
    (tmp_path / "c.json").write_text(json.dumps({"images": images, "annotations": anns,
                                                 "categories": [{"id": 1, "name": "ant"}]}))
    objects, _, counts = objects_table(read(tmp_path / "c.json"), manifest)
    assert counts["objects_read"] == 3 and counts["kept"] == 1 and counts["flagged_by_rule"] == {"bad_mask": 2}
    details = objects.to_pandas().query("rule == 'bad_mask'")["detail"].tolist()
    assert any("cannot be decoded" in d for d in details) and any("pixels in a" in d for d in details)


def half_blurred_project(corpus: Path, tmp_path: Path, **annotations):
    """Two PNGs of the same real photo, one with its right half blurred (Gaussian, radius 6), ingested;
    COCO boxes on each: the left half, the right half and a 2 x 2 px box."""
    from PIL import ImageFilter, ImageOps

    raw = tmp_path / "data" / "raw" / "images"
    raw.mkdir(parents=True)
    src = sorted((corpus / "labeled" / "hymenoptera").rglob("*.jpg"))[5]
    with Image.open(src) as im:
        sharp = ImageOps.exif_transpose(im).convert("RGB")
    w, h = sharp.size
    blurred = sharp.copy()
    blurred.paste(sharp.crop((w // 2, 0, w, h)).filter(ImageFilter.GaussianBlur(6)), (w // 2, 0))
    sharp.save(raw / "sharp.png")
    blurred.save(raw / "blurred.png")
    boxes = {"left": [w * 0.05, h * 0.1, w * 0.45, h * 0.9], "right": [w * 0.55, h * 0.1, w * 0.95, h * 0.9],
             "tiny": [w * 0.5, h * 0.5, w * 0.5 + 2, h * 0.5 + 2]}
    images = [{"id": k, "file_name": f"{n}.png", "width": w, "height": h} for k, n in enumerate(("sharp", "blurred"))]
    anns = [{"id": len(images) * j + k + 1, "image_id": k, "category_id": 1 + (name == "tiny"), "iscrowd": 0,
             "bbox": [x0, y0, x1 - x0, y1 - y0]}
            for j, (name, (x0, y0, x1, y1)) in enumerate(boxes.items()) for k in range(2)]
    (tmp_path / "coco.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "half"}, {"id": 2, "name": "tiny"}]}))
    p = parse_params({"ingest": {"workers": 1, "annotations": {"path": "coco.json", **annotations}},
                      "paths": {"embeddings": "none"}})
    ingest_to(p, tmp_path / "data" / "raw", tmp_path / p.paths.manifest)
    return p, sharp, boxes


def test_crop_features_measure_each_box_and_the_objects_per_image_are_profiled(corpus, tmp_path):
    """Each kept box gets the brightness, contrast and sharpness of its crop (ingest's decode, its
    working size): the blurred half of a photo is far less sharp than the same half unblurred while
    the untouched halves agree; brightness is the crop's own (checked against the full-size pixels);
    a 2 x 2 px box has no sharpness. The profile sketches them per object and the objects per image
    with the images; `crop_features: false` leaves them empty."""
    from pixelscope.annotations.step import objects_step
    from pixelscope.profile import Profile
    from pixelscope.profile.step import profile_step

    p, sharp, boxes = half_blurred_project(corpus, tmp_path)
    r = objects_step(p, tmp_path)
    assert r.metrics["crop_seconds"] > 0
    o = pq.read_table(tmp_path / p.paths.objects).to_pandas()
    o["image"] = [Path(q).stem for q in o["path"]]
    o["box"] = [next(n for n, b in boxes.items() if abs(b[0] - x) < 0.01) for x in o["x0"]]
    at = o.set_index(["image", "box"])
    s = at["crop_sharpness"]
    assert s["blurred", "right"] < 0.1 * s["sharp", "right"]
    assert 0.8 < s["blurred", "left"] / s["sharp", "left"] < 1.25
    assert np.isnan(s["sharp", "tiny"]) and not np.isnan(at.loc[("sharp", "tiny"), "crop_brightness"])
    luma = np.asarray(sharp.convert("L"), np.float64) / 255
    for name in ("left", "right"):
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[name])
        crop = luma[y0:y1, x0:x1]
        assert abs(at.loc[("sharp", name), "crop_brightness"] - crop.mean()) < 0.01
        assert abs(at.loc[("sharp", name), "crop_contrast"] - crop.std()) < 0.03
    assert at.loc[("blurred", "right"), "crop_contrast"] < at.loc[("sharp", "right"), "crop_contrast"]
    profile_step(p, tmp_path)
    prof = Profile.load(tmp_path / p.paths.profile)
    assert prof.objects is not None and prof.objects.sketch("crop_sharpness").count == 4  # the tiny boxes: nulls
    assert prof.objects.sketch("crop_sharpness", ("class", "half")).count == 4
    per_image = prof.sketch("object_count")
    assert per_image.count == 2 and per_image.mean == 3.0 and prof.sketch("object_coverage").max > 0.6
    p_off = parse_params({"ingest": {"workers": 1, "annotations": {"path": "coco.json", "crop_features": False}},
                          "paths": {"embeddings": "none"}})
    objects_step(p_off, tmp_path)
    off = pq.read_table(tmp_path / p.paths.objects).to_pandas()
    assert off["crop_sharpness"].isna().all() and len(off) == len(o)


def test_masks_reach_the_coco_export_as_pycocotools_decodes_them(photos, tmp_path):
    """Polygons (COCO) and a semantic mask PNG's classes go through the objects table to the COCO
    export's `segmentation`: pycocotools' annToMask gives back the PNG's pixels exactly and the
    polygons' areas as the objects table measured them."""
    from pycocotools.coco import COCO

    from conftest import REPO
    from pixelscope.annotations.step import objects_step
    from pixelscope.curate.step import curate_step
    from pixelscope.issues.step import issues_step

    root, manifest = photos
    names = sorted(sizes(manifest))
    (a, (w, h)) = names[0], sizes(manifest)[names[0]]
    shutil.copytree(root / "raw", tmp_path / "data" / "raw")
    shutil.copytree(REPO / "expectations", tmp_path / "expectations")
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "classes.txt").write_text("background\nant\nbee\n")
    m = np.zeros((h, w), np.uint8)
    m[10:30, 5:25] = 1
    m[40:90, 30:70] = 2
    m[60:70, 40:50] = 1  # an ant inside the bee: two separate ant regions, one object (the class)
    Image.fromarray(m).save(masks / f"{Path(a).stem}.png")
    write_coco(tmp_path / "coco.json", manifest, extra_annotations=[
        {"image_id": 1, "category_id": 1, "segmentation": [[10, 10, 60, 12, 30, 50]]}])
    for source, path in (("masks", "masks"), ("coco", "coco.json")):
        p = parse_params({"ingest": {"workers": 1, "annotations": {"path": path}}, "paths": {"embeddings": "none"},
                          "curate": {"workers": 1, "formats": ["coco"], "exclude": [],
                                     "splits": {"ratios": {"train": 1.0, "val": 0.0, "test": 0.0}}}})
        ingest_to(p, tmp_path / "data" / "raw", tmp_path / p.paths.manifest)
        objects_step(p, tmp_path)
        issues_step(p, tmp_path)
        curate_step(p, tmp_path)
        objs = pq.read_table(tmp_path / p.paths.objects).to_pandas().query("status == 'ok'")
        coco = COCO(str(tmp_path / "data" / "curated" / "coco" / "annotations" / "instances_train.json"))
        anns = coco.loadAnns(coco.getAnnIds())
        assert len(anns) == len(objs) and all("segmentation" in x for x in anns)
        if source == "masks":
            for ann in anns:
                cls = coco.loadCats(ann["category_id"])[0]["name"]
                np.testing.assert_array_equal(coco.annToMask(ann), m == {"background": 0, "ant": 1, "bee": 2}[cls])
        else:
            got = sorted(float(coco.annToMask(x).sum()) for x in anns)
            assert got == sorted(objs["mask_area"]) and len(got) == 5


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["yolo", "voc"])
def test_yolo_and_voc_projects_go_through_dvc_and_prefect_to_exports_their_readers_load(fmt, tmp_path,
                                                                                        prefect_server):
    """The detection demo's scenes with their ground truth as YOLO labels or Pascal VOC XML (the
    model's boxes as YOLO txt with confidences): the Prefect flow runs every stage through DVC (up to
    date after), the objects stage reads the format with nothing flagged, the planted faults are
    found, and the COCO (pycocotools), YOLO (supervision) and parquet (datasets) exports hold the
    ledger's images and objects."""
    import subprocess
    import sys

    import datasets
    import supervision as sv
    from pycocotools.coco import COCO

    from flows.demo_detection import demo_detection

    r = demo_detection(str(tmp_path / fmt), scenes=24, seed=23, annotations=fmt)
    root = Path(r["project"])
    assert r["annotations"] == fmt and r["ran"][:2] == ["ingest", "objects"] and "curate" in r["ran"]
    status = subprocess.run([sys.executable, "-m", "dvc", "status"], cwd=root, capture_output=True, text=True)
    assert "up to date" in status.stdout, status.stdout
    metrics = json.loads((root / "reports" / "metrics" / "objects.json").read_text())
    assert metrics["format"] == fmt and metrics["kept"] == metrics["objects_read"] == r["objects"]
    assert metrics["predicted_kept"] == r["predicted"] and metrics["entries_not_read"] == 0
    f = r["found"]
    assert f["duplicated"]["found"] == f["duplicated"]["planted"] > 0
    assert sum(f[k]["found"] for k in ("shifted", "missing", "wrong_class")) >= \
        sum(f[k]["planted"] for k in ("shifted", "missing", "wrong_class")) - 1
    assert f["box_label_issue"]["precision"] >= 0.8 and 0.5 < r["boxes"]["map"] < 1.0
    out = root / "data" / "curated"
    led = pq.read_table(out / "curation.parquet").to_pandas()
    inc = led[led["included"]]
    counts = json.loads((out / "curate.json").read_text())
    splits = sorted(set(inc["split"]))
    coco_images = coco_objects = yolo_images = yolo_objects = 0
    for split in splits:
        coco = COCO(str(out / "coco" / "annotations" / f"instances_{split}.json"))
        coco_images, coco_objects = coco_images + len(coco.getImgIds()), coco_objects + len(coco.getAnnIds())
        ds = sv.DetectionDataset.from_yolo(str(out / "yolo" / "images" / split), str(out / "yolo" / "labels" / split),
                                           str(out / "yolo" / "data.yaml"))
        yolo_images, yolo_objects = yolo_images + len(ds), yolo_objects + sum(len(d) for _, _, d in ds)
    assert coco_images == yolo_images == len(inc) > 0
    assert coco_objects == yolo_objects == counts["objects_exported"] > 0
    hf = datasets.load_dataset("parquet", data_files={s: str(out / "parquet" / "data" / f"{s}-*.parquet") for s in splits})
    assert sum(len(row["objects"]["bbox"]) for s in splits for row in hf[s]) == counts["objects_exported"]


def test_cleanlab_box_scores_in_chunks_and_processes_equal_the_librarys_own(monkeypatch):
    """_box_scores (the dataset-wide least similarity as a minimum over chunks, each image's matrices
    computed once, chunks in a process pool) gives exactly what cleanlab's public compute_*_box_scores
    give on the whole set."""
    import warnings

    import pandas as pd
    from cleanlab.object_detection import rank

    import pixelscope.annotations.evaluate as ev

    rng = np.random.default_rng(5)
    rows = []
    for k in range(30):
        for j in range(int(rng.integers(0, 6))):
            x, y, w, h = rng.uniform(0, 400), rng.uniform(0, 300), rng.uniform(10, 120), rng.uniform(10, 120)
            rows.append({"path": f"im{k}.jpg", "object": j, "class": f"c{rng.integers(0, 4)}", "x0": x, "y0": y,
                         "x1": x + w, "y1": y + h})
    gt = pd.DataFrame(rows)
    pred = gt.sample(frac=0.8, random_state=1).copy()
    pred[["x0", "x1"]] += rng.uniform(-15, 15, (len(pred), 1))
    pred["class"] = np.where(rng.random(len(pred)) < 0.1, "c9", pred["class"])
    pred["score"] = rng.uniform(0.3, 1.0, len(pred))
    images = pd.DataFrame({"path": [f"im{k}.jpg" for k in range(30)]})
    _, labels, predictions, _ = ev.to_cleanlab(images, gt, pred)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = (rank.compute_badloc_box_scores(labels=labels, predictions=predictions),
                rank.compute_swap_box_scores(labels=labels, predictions=predictions),
                rank.compute_overlooked_box_scores(labels=labels, predictions=predictions))
    monkeypatch.setattr(ev, "CLEANLAB_CHUNK", 7)  # five chunks: the pool runs
    got = ev._box_scores(labels, predictions)
    for w, g in zip(want, got):
        assert len(w) == len(g) == 30
        for a, b in zip(w, g):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_an_annotated_image_gone_after_ingest_keeps_its_objects_and_is_counted(corpus, tmp_path):
    """The crop pass cannot decode an image deleted since ingest: its objects keep their rows (no
    crop features), the step counts and says it, the other image's crops are there."""
    from pixelscope.annotations.step import objects_step

    p, _, _ = half_blurred_project(corpus, tmp_path)
    (tmp_path / "data" / "raw" / "images" / "blurred.png").unlink()
    r = objects_step(p, tmp_path)
    assert r.counts["crop_images_not_decoded"] == 1 and any("no longer decode" in n for n in r.notes)
    o = pq.read_table(tmp_path / p.paths.objects).to_pandas()
    gone = o["path"].str.endswith("blurred.png")
    assert len(o) == 6 and (o["status"] == "ok").all()
    assert o.loc[gone, "crop_brightness"].isna().all() and o.loc[~gone, "crop_brightness"].notna().all()
