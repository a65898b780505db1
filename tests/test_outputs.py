"""The model's outputs: a predictions file joined to the manifest (by id or by path), profiled
per predicted class and per label with the label / prediction agreement, drift-tested; the
embedding model's own semantic columns."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ingest_to, with_paths
from pixelscope.config import DriftConfig, ProfileConfig, parse_params
from pixelscope.errors import BadInput
from pixelscope.io.manifest import column_kinds
from pixelscope.profile import Profile
from pixelscope.profile.outputs import agreement, model_outputs
from pixelscope.profile.step import profile_step
from pixelscope.validate.drift import compare


@pytest.fixture(scope="module")
def demo(demo_raw, tmp_path_factory):
    """The demo set ingested once: (manifest path, its rows as dicts)."""
    manifest = tmp_path_factory.mktemp("outputs") / "manifest.parquet"
    ingest_to(parse_params({"ingest": {"workers": 1}}), demo_raw / "raw", manifest)
    return manifest, pq.read_table(manifest).to_pylist()


def _profile(manifest: Path, predictions: Path | None, tmp_path: Path, **profile):
    params = parse_params({"ingest": {"workers": 1}, "profile": {"predictions": predictions, **profile}})
    p = with_paths(params, manifest=manifest, profile=tmp_path / "profile.json",
                   embeddings=tmp_path / "no-embeddings")
    return profile_step(p, "."), Profile.load(tmp_path / "profile.json")


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_predictions_by_path_are_profiled_per_predicted_class_with_agreement(demo, tmp_path):
    manifest, rows = demo
    ok = [r for r in rows if r["status"] == "ok"]
    bad = [r for r in rows if r["status"] != "ok"]
    classes = sorted({r["label"] for r in ok})
    given, want = [], {}
    for k, r in enumerate(ok[:-3]):  # the last three readable images get no prediction
        pred = r["label"] if k % 4 else classes[(classes.index(r["label"]) + 1) % len(classes)]  # every 4th is wrong
        conf = round(0.5 + (k % 10) / 20, 3)
        given.append([r["path"], pred, conf])
        want[r["path"]] = (pred, conf)
    given += [["nowhere/a.jpg", "cat", 0.9], ["nowhere/b.jpg", "dog", 0.8], [bad[0]["path"], "cat", 0.7]]
    result, prof = _profile(manifest, _write_csv(tmp_path / "preds.csv", ["path", "prediction", "confidence"], given),
                            tmp_path)

    c = result.counts
    assert c["predictions"] == len(given) == c["predictions_matched"] + c["predictions_on_unreadable"] \
        + c["predictions_unmatched"]
    assert (c["predictions_matched"], c["predictions_on_unreadable"], c["predictions_unmatched"]) == (len(ok) - 3, 1, 2)
    assert c["ok"] == c["images_with_prediction"] + c["images_without_prediction"] and c["images_without_prediction"] == 3
    assert "2 predictions match no manifest image (by path)" in result.notes[0] and "nowhere/a.jpg" in result.notes[0]

    # the predicted class: counts exact, one segment per predicted class, confidence per label
    pred_counts = Counter(p for p, _ in want.values())
    assert dict((v, n) for v, n, *_ in prof.columns["pred_label"].top(50)) == dict(pred_counts)
    assert prof.columns["pred_label"].nulls == 3
    assert dict(prof.segment_rows["pred_label"]) == {**pred_counts, "(none)": 3}
    confidence = prof.columns["pred_confidence"]
    assert confidence.count == len(want) and confidence.mean == pytest.approx(np.mean([v for _, v in want.values()]))
    cat = [want[r["path"]][1] for r in ok if r["label"] == "cat" and r["path"] in want]
    assert prof.segments["label"]["cat"]["pred_confidence"].mean == pytest.approx(np.mean(cat))

    # agreement per class = the share of its images whose prediction is the label, exactly
    agree = agreement(prof)
    for label in classes:
        mine = [want[r["path"]][0] == label for r in ok if r["label"] == label and r["path"] in want]
        assert agree[label] == {"images": len(mine), "agreement": pytest.approx(np.mean(mine))}
    assert agree["(all)"]["agreement"] == pytest.approx(np.mean([want[p][0] == lab for p, lab in
                                                                 ((r["path"], r["label"]) for r in ok) if p in want]))
    assert agree["(all)"]["agreement"] < 0.8  # every 4th is wrong


def test_predictions_by_id_reach_every_copy_and_parquet_boxes(demo, tmp_path):
    manifest, rows = demo
    ok = [r for r in rows if r["status"] == "ok"]
    ids = sorted({r["id"] for r in ok})
    table = pa.table({"id": ids, "predicted_label": ["thing"] * len(ids), "score": np.linspace(0.1, 0.9, len(ids)),
                      "boxes": pa.array([k % 4 for k in range(len(ids))], pa.int64()),
                      "box_area": np.linspace(0.01, 0.5, len(ids))})
    pq.write_table(table, tmp_path / "preds.parquet")
    result, prof = _profile(manifest, tmp_path / "preds.parquet", tmp_path)
    assert result.counts["images_with_prediction"] == len(ok) and result.counts["images_without_prediction"] == 0
    assert result.counts["predictions_matched"] == len(ids) and result.counts["predictions_unmatched"] == 0
    by_id = dict(zip(ids, table.column("boxes").to_pylist()))
    assert prof.columns["pred_boxes"].count == len(ok)
    assert prof.columns["pred_boxes"].mean == pytest.approx(np.mean([by_id[r["id"]] for r in ok]))
    assert prof.columns["pred_box_area"].max == pytest.approx(0.5)
    assert agreement(prof)["(all)"]["agreement"] == 0.0  # "thing" is nobody's label


@pytest.mark.parametrize("header, row, needles", [
    (["file", "prediction"], ["a.jpg", "cat"], ["needs an `id` or `path` column", "'file'"]),
    (["path", "class"], ["a.jpg", "cat"], ["needs a `prediction` column", "'class'"]),
    (["path", "prediction", "confidence"], ["a.jpg", "cat", "high"], ["column `confidence` must be numeric", "row 1",
                                                                     "'high'"]),
    (["path", "prediction", "confidence"], ["a.jpg", "cat", "1.5"], ["column `confidence` must be in [0, 1]", "1.5"]),
    (["path", "prediction", "boxes"], ["a.jpg", "cat", "2.5"], ["column `boxes` must be an integer >= 0"]),
    (["path", "prediction"], ["", "cat"], ["column `path` is empty in row 1"]),
])
def test_a_malformed_predictions_file_is_an_error_naming_the_file_and_column(demo, tmp_path, header, row, needles):
    manifest, _ = demo
    f = _write_csv(tmp_path / "bad.csv", header, [row])
    with pytest.raises(BadInput) as e:
        _profile(manifest, f, tmp_path)
    for n in [str(f), *needles]:
        assert n in str(e.value), str(e.value)


def test_repeated_keys_and_unknown_formats_are_errors_and_the_cli_says_so_in_one_line(demo, tmp_path):
    manifest, rows = demo
    p = rows[0]["path"]
    f = _write_csv(tmp_path / "twice.csv", ["path", "prediction"], [[p, "cat"], [p, "dog"]])
    with pytest.raises(BadInput, match=r"twice.csv: column `path` names 1 image\(s\) more than once"):
        _profile(manifest, f, tmp_path)
    (tmp_path / "preds.json").write_text("{}")
    with pytest.raises(BadInput, match="must be a .parquet or .csv file"):
        _profile(manifest, tmp_path / "preds.json", tmp_path)
    r = subprocess.run([sys.executable, "-m", "pixelscope", "profile", str(manifest), "-o", str(tmp_path / "p.json"),
                        "--set", f"profile.predictions={f}"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "more than once" in r.stderr, r.stderr


@pytest.fixture(scope="module")
def labeled(corpus, tmp_path_factory):
    """The corpus's labeled real photos through ingest, with a predictions file by path: the
    label for four images in five, the next class for the fifth (a plausible, imperfect model)."""
    folder = tmp_path_factory.mktemp("labeled")
    manifest = folder / "manifest.parquet"
    ingest_to(parse_params({"ingest": {"workers": 1}}), corpus / "labeled", manifest)
    table = pq.read_table(manifest)
    table = table.filter(pa.compute.equal(table.column("status"), "ok"))
    classes = sorted(set(table.column("label").to_pylist()))
    preds = [[p, lab if k % 5 else classes[(classes.index(lab) + 1) % len(classes)], 0.9]
             for k, (p, lab) in enumerate(zip(table.column("path").to_pylist(), table.column("label").to_pylist()))]
    f = _write_csv(folder / "preds.csv", ["path", "prediction", "confidence"], preds)
    return table, model_outputs(manifest, folder / "none", f)


def test_a_doubled_predicted_class_on_real_photos_drifts_and_the_same_mix_does_not(labeled):
    """Bootstrap batches (600 vs 600) of real photos' rows with their predictions: the model
    predicting one class twice as often drifts through that class's share test on pred_label;
    the same mix drawn again does not drift at all."""
    rows, outputs = labeled
    joined = outputs.join(rows)
    predicted = np.array(joined.column("pred_label").to_pylist())
    classes = sorted(set(predicted))
    by_class = {c: np.flatnonzero(predicted == c) for c in classes}
    kinds = {**column_kinds(rows.schema), **outputs.kinds}
    rng = np.random.default_rng(5)

    def batch(weights: dict[str, float], n: int = 600) -> Profile:
        idx = np.concatenate([rng.choice(by_class[c], round(n * w), replace=True) for c, w in weights.items()])
        p = Profile.empty(kinds, ProfileConfig(segments=["label", "pred_label"]))
        p.update(joined.take(pa.array(idx, type=pa.int64())))
        return p

    even = {c: 1 / len(classes) for c in classes}
    doubled = {c: (0.4 if c == classes[1] else 0.6 / (len(classes) - 1)) for c in classes}
    ref = batch(even)
    rows_out = compare(ref, batch(doubled), DriftConfig())
    fired = {(r.feature, r.segment, r.test) for r in rows_out if r.drift}
    assert ("pred_label", f"pred_label={classes[1]}", "share") in fired
    share = next(r for r in rows_out if r.feature == "pred_label" and r.segment == f"pred_label={classes[1]}")
    assert share.family == "class_balance" and share.statistic == pytest.approx(0.2, abs=0.01)
    assert not any(r.drift for r in compare(ref, batch(even), DriftConfig()))


@pytest.mark.slow
def test_semantic_columns_are_written_profiled_and_deterministic_on_cpu(demo_raw, tmp_path):
    """The embed step writes each image's top-1 ImageNet class and confidence from the model's
    own classifier; two runs in two projects give the same columns; the profile carries them."""
    from pixelscope.embed.step import embed_step
    from pixelscope.ingest.step import ingest_step
    from pixelscope.io.store import SEMANTIC, current_store

    params = parse_params({"ingest": {"workers": 1}, "preprocess": {"workers": 1, "device": "cpu"}})
    tables = []
    for name in ("a", "b"):
        project = tmp_path / name
        shutil.copytree(demo_raw / "raw", project / "data" / "raw")
        ingest_step(params, project)
        result = embed_step(params, project)
        assert result.details["semantic"] is True
        store = current_store(project / params.paths.embeddings)
        tables.append(pq.read_table(store.folder / SEMANTIC).sort_by("id"))
    a, b = tables
    assert a.equals(b)  # bit for bit, run to run
    ok = result.counts["images"]
    assert a.num_rows == ok and a.column("semantic_confidence").null_count == 0
    conf = a.column("semantic_confidence").to_numpy()
    assert ((conf > 0) & (conf <= 1)).all()
    manifest = pq.read_table(project / params.paths.manifest).to_pylist()
    cls = dict(zip(a.column("id").to_pylist(), a.column("semantic_class").to_pylist()))
    cats = Counter(cls[r["id"]] for r in manifest if r["status"] == "ok" and r["label"] == "cat")
    assert set(cats) & {"tabby", "tiger cat", "Egyptian cat", "Persian cat", "Siamese cat", "lynx"}, cats

    # incremental: a lost row is computed again, rows of ids no longer asked for are dropped
    from pixelscope.embed.models import load_model
    from pixelscope.embed.semantic import write_semantic

    model = load_model(params.embed)
    ids = a.column("id").to_pylist()
    pq.write_table(a.slice(1), store.folder / SEMANTIC)
    write_semantic(store, ids[:-1], model.head, model.classes)
    again = pq.read_table(store.folder / SEMANTIC).sort_by("id")
    want = a.slice(0, a.num_rows - 1)
    assert again.column("id").equals(want.column("id"))
    assert again.column("semantic_class").equals(want.column("semantic_class"))
    assert np.allclose(again.column("semantic_confidence").to_numpy(), want.column("semantic_confidence").to_numpy(),
                       atol=1e-6)
    write_semantic(store, ids, model.head, model.classes)  # back to every image

    profile_step(params, project)
    prof = Profile.load(project / params.paths.profile)
    sk = prof.columns["semantic_class"]
    assert sk.count == ok and dict((v, n) for v, n, *_ in sk.top(200)) == dict(Counter(cls.values()))
    assert prof.columns["semantic_confidence"].count == ok
    shown = subprocess.run([sys.executable, "-m", "pixelscope", "show", str(project / params.paths.profile), "--json"],
                           capture_output=True, text=True, timeout=120)
    assert {c["column"] for c in json.loads(shown.stdout)["columns"]} >= {"semantic_class", "semantic_confidence"}
