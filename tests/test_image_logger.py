"""ImageLogger: images logged from a running process give ingest's features, UTC windows that
merge to the whole, counted drops, and drift on window close."""

from __future__ import annotations

import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageEnhance

from conftest import ingest_to
from pixelscope import ImageLogger, compare, profile_images
from pixelscope.config import parse_params
from pixelscope.errors import BadInput, ConfigError
from pixelscope.image_logger import _base_row, image_row, window_seconds
from pixelscope.ingest.step import settings_for
from pixelscope.profile import Profile

ENCODING_FEATURES = {"bytes_per_pixel"}  # needs the encoded file: null for pixels logged without one


def photos(corpus: Path, n: int) -> list[Path]:
    return sorted((corpus / "labeled" / "hymenoptera").rglob("*.jpg"))[:n]


def features_of(row: dict) -> dict:
    skip = {"path", "source", "label", "split", "format", "mode", "decoder", "bytes", "warning", "pred_label",
            "pred_confidence", *ENCODING_FEATURES}
    return {k: v for k, v in row.items() if k not in skip and not k.startswith("exif_")}


def test_bytes_paths_arrays_and_pil_images_give_ingests_features(corpus, tmp_path):
    """Bytes and paths take ingest's own code path: the same row. Arrays and PIL images of a PNG
    (fully decoded by ingest too) give the same feature values; only bytes_per_pixel is null."""
    raw = tmp_path / "raw"
    raw.mkdir()
    jpeg = photos(corpus, 1)[0]
    (raw / "a.jpg").write_bytes(jpeg.read_bytes())
    png = Image.open(jpeg).convert("RGB").resize((300, 200))
    png.save(raw / "b.png")
    p = parse_params({"ingest": {"workers": 1}})
    ingest_to(p, raw, tmp_path / "m.parquet")
    manifest = pq.read_table(tmp_path / "m.parquet").to_pandas().set_index("path")
    s = settings_for(p.ingest, p.features)

    def logged(image, **kw):
        return image_row(image, s, _base_row("service", None, None, None), **kw)

    ingested = {k: (None if v != v else v) for k, v in manifest.loc["a.jpg"].to_dict().items()}
    for image in (jpeg.read_bytes(), jpeg):
        row = logged(image)
        assert row["status"] == "ok" and row["id"] == ingested["id"]
        assert features_of(row) == {k: ingested[k] for k in features_of(row)}
    ingested = {k: (None if v != v else v) for k, v in manifest.loc["b.png"].to_dict().items()}
    arr = np.asarray(Image.open(raw / "b.png").convert("RGB"))
    for image, kw in ((arr, {}), (Image.open(raw / "b.png"), {}), (arr[:, :, ::-1].copy(), {"channels": "BGR"}),
                      (arr.astype(np.float32) / 255, {})):
        row = logged(image, **kw)
        assert row["status"] == "ok" and row["bytes_per_pixel"] is None
        got, want = features_of(row), {k: ingested[k] for k in features_of(row) if k != "id"}
        got.pop("id")
        assert got == want, image.__class__  # exactly: the same pixels through the same features
    bad = logged(np.zeros((5, 5, 2), np.uint8))
    assert bad["status"] == "error" and bad["reason"] == "bad_array" and "shape" in bad["detail"]


def test_windows_roll_on_utc_boundaries_and_merge_to_the_whole(corpus, tmp_path):
    """A fake clock crosses an hour boundary: two window profiles (written atomically, rolled into
    the day), whose merge equals the profile of all images at once."""
    images = [np.asarray(Image.open(f).convert("RGB")) for f in photos(corpus, 12)]
    now = [1_764_000_000.0 - 1_764_000_000.0 % 3600 + 3000]  # 50 minutes into an hour
    closed = []
    with ImageLogger(window="1h", out=tmp_path / "svc", project=tmp_path, clock=lambda: now[0],
                     on_window=closed.append) as log:
        for k, im in enumerate(images):
            if k == 7:
                now[0] += 1200  # into the next hour
            log.log(im, prediction="ant" if k % 2 else "bee", confidence=0.5 + k / 40)
    assert [w.images for w in closed] == [7, 5] and all(w.profiled == w.images for w in closed)
    assert closed[1].start - closed[0].start == closed[0].end - closed[0].start
    files = sorted((tmp_path / "svc").glob("*.json"))
    assert [f.name for f in files] == [f"{w.start:%Y%m%dT%H%M%SZ}.json" for w in closed]
    merged = Profile.load(files[0]).merge(Profile.load(files[1]))
    whole = profile_images(images, predictions=["ant" if k % 2 else "bee" for k in range(12)],
                           confidences=[0.5 + k / 40 for k in range(12)], source="service")
    assert merged.files_seen == whole.files_seen == 12
    for col in ("brightness_mean", "sharpness", "pred_confidence"):
        a, b = merged.columns[col], whole.columns[col]
        assert a.count == b.count == 12 and a.min == pytest.approx(b.min) and a.max == pytest.approx(b.max)
        assert a.mean == pytest.approx(b.mean) and a.quantiles([0.5]) == pytest.approx(b.quantiles([0.5]))
    rolling = json.loads(next((tmp_path / "svc" / "rolling").glob("*.drops.json")).read_text())
    assert sorted(rolling) == [f.stem for f in files]
    history = pq.read_table(tmp_path / parse_params({}).paths.history).to_pandas()
    assert history["kind"].tolist() == ["service", "service"] and history["files"].tolist() == [7, 5]
    assert history["drift_ref"].isna().all()  # no reference: no verdict


def test_a_quiet_service_still_writes_its_window_once_it_has_ended(tmp_path):
    """No later image, no flush: the window closes close_after_s after its end, by the clock alone."""
    rng = np.random.default_rng(3)
    start = 1_764_000_000.0 - 1_764_000_000.0 % 60
    now = [start + 10]
    closed: list = []
    log = ImageLogger(window="1m", out=tmp_path / "svc", project=tmp_path, history=False, close_after_s=2,
                      clock=lambda: now[0], on_window=closed.append)
    try:
        for _ in range(3):
            log.log(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
        time.sleep(1.5)
        now[0] = start + 61  # past the end, not yet past the grace: still open
        time.sleep(1.5)
        assert closed == [] and not list((tmp_path / "svc").glob("*.json"))
        now[0] = start + 63
        deadline = time.monotonic() + 10
        while not closed and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [w.images for w in closed] == [3] and len(list((tmp_path / "svc").glob("*.json"))) == 1
        log.log(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))  # the next window opens as usual
    finally:
        log.close()
    assert [w.images for w in closed] == [3, 1]
    with pytest.raises(ConfigError, match="close_after_s"):
        ImageLogger(out=tmp_path / "x", close_after_s=-1)


@pytest.mark.parametrize("policy", ["drop", "sample"])
def test_images_the_queue_policy_leaves_out_are_counted(policy, tmp_path):
    """A worker held back and a queue of 4: the calls that find no room are counted in the window's
    profile (dropped / sampled_out), so files_seen equals the calls to log()."""
    hold = threading.Event()
    log = ImageLogger(window="1d", out=tmp_path / "svc", project=tmp_path, queue_size=4, on_full=policy)
    real_close = log._close_window_safely
    log._close_window_safely = lambda: (hold.wait(10), real_close())  # type: ignore[method-assign]
    log._queue.put(("flush", threading.Event()))  # the worker's first item waits until released
    accepted = sum(log.log(np.full((16, 16, 3), k, np.uint8)) for k in range(40))
    hold.set()
    log.close()
    w = log.windows[-1]  # the flush closed the window once with the drops alone; its last close has all
    assert len({x.profile_file for x in log.windows}) == 1
    assert w.images == 40 and w.profiled == accepted and sum(w.not_profiled.values()) == 40 - accepted > 0
    assert set(w.not_profiled) == ({"dropped"} if policy == "drop" else {"dropped", "sampled_out"})


def test_a_darkened_stream_drifts_on_window_close_and_a_like_one_does_not(corpus, tmp_path):
    def jpeg(im: Image.Image) -> bytes:  # encoded bytes, as a service receives them
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        return buf.getvalue()

    images = [Image.open(f).convert("RGB") for f in photos(corpus, 78)[::2] + photos(corpus, 78)[1::2]]
    reference = profile_images([jpeg(im) for im in images[:39]], source="service")  # drift.min_rows: 30
    like, dark = images[39:], [ImageEnhance.Brightness(im).enhance(0.35) for im in images[39:]]
    verdicts = {}
    for name, stream in (("like", like), ("dark", dark)):
        with ImageLogger(window="1d", out=tmp_path / name, project=tmp_path / name, reference=reference,
                         keep_examples=4) as log:
            for im in stream:
                log.log(jpeg(im))
        (w,) = log.windows
        verdicts[name] = w.drifted
        drifted = {r.feature for r in w.drift if r.drift}
        if name == "dark":
            assert "brightness_mean" in drifted
            thumbs = sorted((tmp_path / name).glob("*.examples/*.jpg"))  # what the drifted window looked like
            assert len(thumbs) == 4 and all(np.asarray(Image.open(t)).mean() < 90 for t in thumbs)
    assert verdicts == {"like": False, "dark": True}
    assert not any(r.drift for r in compare(reference, reference))


def test_bad_windows_and_policies_name_the_value():
    assert window_seconds("15m") == 900 and window_seconds("2d") == 172800
    for bad in ("7m", "1y", "h", "0h"):
        with pytest.raises(ConfigError, match="window"):
            window_seconds(bad)
    with pytest.raises(ConfigError, match="on_full"):
        ImageLogger(on_full="later")  # type: ignore[arg-type]


@pytest.mark.slow
def test_profiles_reach_mlflow_by_hand_and_from_a_wrapped_pyfunc_model(corpus, tmp_path, monkeypatch):
    """log_profile attaches profile, summary and drift to a run; autolog wraps a pyfunc model's predict
    so the images it sees and its predictions are profiled into the active run at window close.
    Read back with MlflowClient against a local sqlite tracking store."""
    import mlflow
    import mlflow.pyfunc
    from mlflow.tracking import MlflowClient

    from pixelscope.mlflow import autolog, log_profile

    class MeanBrightness(mlflow.pyfunc.PythonModel):  # a stub model, honest about it: dark vs bright
        def predict(self, context, model_input, params=None):
            return ["bright" if im.mean() > 100 else "dark" for im in model_input]

    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    images = [np.asarray(Image.open(f).convert("RGB").resize((96, 96))) for f in photos(corpus, 36)]
    reference = profile_images(images[:31])
    mlflow.pyfunc.save_model(str(tmp_path / "model"), python_model=MeanBrightness())
    model = mlflow.pyfunc.load_model(str(tmp_path / "model"))
    with mlflow.start_run() as run:
        metrics = log_profile(reference, reference=reference)
        model = autolog(model, reference=reference, window="1d", out=tmp_path / "svc", project=tmp_path)
        answers = model.predict(np.stack(images[:31])) + model.predict(np.stack(images[31:]))
        model.pixelscope.close()
    client = MlflowClient()
    logged = client.get_run(run.info.run_id).data.metrics
    assert logged["pixelscope.images"] == metrics["pixelscope.images"] == 31 and logged["pixelscope.drifted_features"] == 0
    (window,) = model.pixelscope.windows
    key = f"pixelscope/{window.start:%Y%m%dT%H%M%SZ}"
    assert logged[f"{key}.images"] == 36 and logged[f"{key}.ok"] == 36 and f"{key}.drifted_features" in logged
    files = {a.path for a in client.list_artifacts(run.info.run_id, key)}
    assert {f"{key}/profile.json", f"{key}/summary.json", f"{key}/drift.csv"} <= files
    back = Profile.load(client.download_artifacts(run.info.run_id, f"{key}/profile.json", str(tmp_path / "back")))
    assert back.files_seen == 36
    assert {v for v, *_ in back.columns["pred_label"].top()} == set(answers)  # the predictions, profiled


def test_a_forked_child_logs_on_its_own_and_the_parent_goes_on(tmp_path):
    """After fork the child has a worker of its own and writes its own window file; the parent's
    window counts only the parent's images."""
    import os

    log = ImageLogger(window="1d", out=tmp_path / "svc", project=tmp_path, history=False)
    log.log(np.full((20, 20, 3), 10, np.uint8))
    log.flush()
    pid = os.fork()
    if pid == 0:  # the child: log three images, close, leave without running the parent's exit hooks
        try:
            for k in range(3):
                log.log(np.full((20, 20, 3), 50 + k, np.uint8))
            log.close()
            os._exit(0 if len(log.windows) == 1 and log.windows[0].images == 3 else 1)
        finally:
            os._exit(2)
    assert os.waitpid(pid, 0)[1] == 0
    log.log(np.full((20, 20, 3), 200, np.uint8))
    log.close()
    files = sorted((tmp_path / "svc").glob("*.json"))
    assert len(files) == 2 and any(f.stem.endswith(f"-{pid}") for f in files)
    assert {f.stem.endswith(f"-{pid}"): Profile.load(f).files_seen for f in files} == {True: 3, False: 2}


def test_a_killed_service_loses_at_most_its_open_window_and_leaves_no_partial_profile(tmp_path):
    """kill -9 while images are logged into 1-second windows: every window file there is a whole
    profile, and the windows closed before the kill are all there."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "service.py"
    script.write_text(
        "import numpy as np, sys, time\n"
        "from pixelscope import ImageLogger\n"
        f"log = ImageLogger(window='1s', out={str(tmp_path / 'svc')!r}, project={str(tmp_path)!r})\n"
        "rng = np.random.default_rng(0)\n"
        "while True:\n"
        "    log.log(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))\n"
        "    time.sleep(0.002)\n")
    proc = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path)
    try:
        deadline = time.time() + 60
        while len(list((tmp_path / "svc").glob("*.json"))) < 3 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    files = sorted((tmp_path / "svc").glob("*.json"))
    assert len(files) >= 3
    for f in files:
        assert Profile.load(f).files_seen > 0  # whole: every file written there parses
    # beside them at most a hidden temporary file of the write the kill cut short (swept by the next writer)
    assert all(f.suffix == ".json" or (f.name.startswith(".") and f.suffix == ".tmp")
               for f in (tmp_path / "svc").iterdir() if f.is_file())


def test_worker_processes_give_the_same_windows_in_the_same_order(corpus, tmp_path):
    """workers=2: rows computed in two spawned processes, put into the windows in log() order — the
    same window split and sketches as one thread."""
    images = [np.asarray(Image.open(f).convert("RGB").resize((128, 96))) for f in photos(corpus, 10)]
    results = {}
    for workers in (1, 2):
        now = [1_764_000_000.0 - 1_764_000_000.0 % 3600 + 3590]
        with ImageLogger(window="1h", out=tmp_path / str(workers), project=tmp_path, history=False, workers=workers,
                         clock=lambda now=now: now[0]) as log:
            for k, im in enumerate(images):
                now[0] += 2  # the hour turns after the fifth image
                log.log(im, label=k)
        results[workers] = [(w.images, Profile.load(w.profile_file).columns["brightness_mean"].mean,
                             sorted(v for v, *_ in Profile.load(w.profile_file).columns["label"].top()))
                            for w in log.windows]
    assert [r[0] for r in results[1]] == [4, 6]
    assert results[2] == results[1]


def test_the_example_service_logs_every_image_it_answers(corpus, tmp_path, monkeypatch):
    """examples/service through Starlette's TestClient: each answered request is one image in the
    window written at shutdown; a body that is not an image is a 400 and is not logged."""
    from starlette.testclient import TestClient

    from examples.service.app import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PIXELSCOPE_OUT", str(tmp_path / "svc"))
    monkeypatch.setenv("PIXELSCOPE_WINDOW", "1d")
    files = photos(corpus, 5)
    with TestClient(app) as client:
        assert client.get("/health").json() == {"ok": True, "logging": True}
        answers = [client.post("/predict", content=f.read_bytes(), headers={"Content-Type": "image/jpeg"}).json()
                   for f in files]
        bad = client.post("/predict", content=b"not an image")
    assert bad.status_code == 400 and "not an image" in bad.json()["error"]
    assert all(a["logged"] and a["label"] in ("bright", "dark") and "stub" in a["model"] for a in answers)
    (window,) = list((tmp_path / "svc").glob("*.json"))
    profile = Profile.load(window)
    assert profile.files_seen == profile.ok == len(files)
    assert {v for v, *_ in profile.columns["pred_label"].top()} == {a["label"] for a in answers}


def test_forked_workers_closing_windows_at_once_lose_no_rows(tmp_path):
    """Four forked service workers close the same window at the same moment: the day's rolling
    profile has every image and the history a row for each worker's window (writers take a lock)."""
    import os

    log = ImageLogger(window="1d", out=tmp_path / "svc", project=tmp_path)
    go = tmp_path / "go"
    pids = []
    for worker in range(4):
        pid = os.fork()
        if pid == 0:
            code = 2
            try:
                for k in range(5 + worker):
                    log.log(np.full((24, 24, 3), 20 * worker + k, np.uint8))
                while not go.exists():  # all four close together
                    time.sleep(0.005)
                log.close()
                code = 0
            finally:
                os._exit(code)
        pids.append(pid)
    go.touch()
    assert all(os.waitpid(pid, 0)[1] == 0 for pid in pids)
    log.close()  # the parent logged nothing: no window of its own
    rolling = next(f for f in (tmp_path / "svc" / "rolling").glob("*.json") if not f.name.endswith(".drops.json"))
    assert Profile.load(rolling).files_seen == 5 + 6 + 7 + 8
    hist = pq.read_table(tmp_path / "reports" / "history" / "history.parquet").to_pandas()
    assert sorted(hist["files"]) == [5, 6, 7, 8] and hist["key"].is_unique


def test_boxes_and_columns_of_your_own_are_profiled(tmp_path):
    """boxes= gives the count and mean area share of the model's boxes (clipped to the image); declared
    columns are profiled as their kind; an undeclared column is an error at the call; a box or a
    value that cannot be read is a warning on the row, never a lost image."""
    img = np.full((100, 200, 3), 90, np.uint8)
    with ImageLogger(window="1d", out=tmp_path / "svc", project=tmp_path, history=False,
                     columns={"latency_ms": "numeric", "camera": "categorical"}) as log:
        log.log(img, boxes=[[0, 0, 100, 50], [150, 50, 250, 150]], latency_ms=12.5, camera="north")  # 2nd: half outside
        log.log(img, boxes=np.empty((0, 4)), latency_ms=7, camera="south")
        log.log(img, boxes=[[10, 10, 10, 40]], latency_ms="slow", camera="north")  # no area; not a number
        log.log(img, boxes="not boxes")
        with pytest.raises(BadInput, match="latency_s.*not declared"):
            log.log(img, latency_s=3)
    p = Profile.load(log.windows[-1].profile_file)
    assert p.files_seen == 4 and p.ok == 4
    assert p.columns["pred_boxes"].count == 3 and p.columns["pred_boxes"].quantiles([0, 1]) == [0.0, 2.0]
    assert p.columns["pred_box_area"].count == 2  # no boxes: no mean area
    assert p.columns["pred_box_area"].quantiles([0, 1]) == [0.0, pytest.approx((0.25 + 0.125) / 2)]
    assert p.columns["latency_ms"].count == 2 and p.columns["latency_ms"].quantiles([0, 1]) == [7.0, 12.5]
    assert {v: n for v, n, *_ in p.columns["camera"].top()} == {"north": 2, "south": 1}
    with pytest.raises(ConfigError, match="already a manifest"):
        ImageLogger(out=tmp_path / "x", columns={"brightness_mean": "numeric"})
    with pytest.raises(ConfigError, match="numeric' or 'categorical"):
        ImageLogger(out=tmp_path / "x", columns={"speed": "float"})
    batch = profile_images([img, img], boxes=[[[0, 0, 200, 100]], None], site=["a", "b"], score=[1, 2.5])
    assert batch.kinds["site"] == "categorical" and batch.kinds["score"] == "numeric"
    assert batch.columns["pred_box_area"].quantiles([0.5]) == [1.0] and batch.columns["score"].count == 2


def test_a_caller_blocked_on_a_full_queue_goes_on_when_there_is_room(tmp_path):
    """on_full="block": with the worker held, the fifth call waits; released, every image is profiled."""
    hold = threading.Event()
    log = ImageLogger(window="1d", out=tmp_path / "svc", project=tmp_path, history=False, queue_size=4)
    real_close = log._close_window_safely
    log._close_window_safely = lambda: (hold.wait(10), real_close())  # type: ignore[method-assign]
    log._queue.put(("flush", threading.Event()))
    done = []
    caller = threading.Thread(target=lambda: done.extend(log.log(np.full((8, 8, 3), k, np.uint8)) for k in range(10)))
    caller.start()
    time.sleep(0.3)
    assert caller.is_alive() and len(done) <= 5  # waiting for room
    hold.set()
    caller.join(10)
    log.close()
    assert done == [True] * 10 and log.windows[-1].profiled == 10


@pytest.mark.slow
def test_embed_true_gives_windows_the_pipelines_embedding_statistics_and_embedding_drift(corpus, tmp_path):
    """embed=True: a window's profile carries embedding statistics with the embed step's key (the
    project's model and transforms); against a window of like photos the embedding does not drift,
    against CIFAR's 32 x 32 images it does (MMD / centroid shift), and the windows merge."""
    from pixelscope.validate.drift import compare as drift

    ants = sorted((corpus / "labeled" / "hymenoptera").rglob("*.jpg"))
    cifar = sorted((corpus / "labeled" / "cifar10").rglob("*.jpg"))
    p = parse_params({"drift": {"min_rows": 20}})

    def window(name: str, files: list[Path]) -> Profile:
        with ImageLogger(p, window="1d", out=tmp_path / name, project=tmp_path, history=False, embed=True) as log:
            for f in files:
                log.log(f.read_bytes())
        return Profile.load(log.windows[-1].profile_file)

    ref, like, other = window("ref", ants[0::2][:30]), window("like", ants[1::2][:30]), window("other", cifar[:30])
    assert ref.embedding is not None and ref.embedding.count["(all)"] == 30
    from pixelscope.embed.infer import Embedder
    from pixelscope.embed.transforms import build

    assert ref.embedding.key == Embedder(p.embed, build(p.preprocess), "cpu").key  # the embed step's store key
    embedding_drift = lambda a, b: {r.feature for r in drift(a, b, p.drift) if r.drift and r.family == "embedding"}  # noqa: E731
    assert not embedding_drift(ref, like)
    assert embedding_drift(ref, other)
    merged = Profile.deserialize(ref.serialize()).merge(like)
    assert merged.embedding is not None and merged.embedding.count["(all)"] == 60
    # an image too thin for the transforms (as the preprocess step refuses it) keeps its row, counted, not embedded
    with ImageLogger(p, window="1d", out=tmp_path / "thin", project=tmp_path, history=False, embed=True) as log:
        log.log(np.full((4, 400, 3), 90, np.uint8))
        log.log(ants[0].read_bytes())
    assert log.windows[-1].profiled == 2 and dict(log.not_embedded) == {"extreme_aspect_ratio": 1}
    assert Profile.load(log.windows[-1].profile_file).embedding.count["(all)"] == 1
