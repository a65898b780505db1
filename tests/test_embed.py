"""Preprocess + embed: transforms, loader, store, models (real EfficientNet-Lite0 weights),
inference backends, incremental stores, embedding statistics. GPU tests skip without CUDA."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelscope.config import ConfigError, EmbedConfig, PreprocessConfig, parse_params
from pixelscope.embed.infer import Embedder
from pixelscope.embed.loader import Item, _gpu_batch, batches, cpu_batches, orient_chw
from pixelscope.embed.models import load_model
from pixelscope.embed.step import embed_step, preprocess_step
from pixelscope.embed.transforms import build
from pixelscope.errors import BadInput, StoreError, WeightsError
from pixelscope.ingest.step import ingest_step
from pixelscope.io.decode import orient
from pixelscope.io.store import ShardStore
from pixelscope.profile.embedding import ALL, EmbeddingStats
from pixelscope.profile.step import profile_step

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64), b.astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- transforms -----------------------------------------------------------------------------

@pytest.mark.parametrize("transforms, key", [
    ([{"rezise": {"size": 10}}], "preprocess.transforms[0].rezise: unknown transform"),
    ([{"resize": {"sise": 10}}], "preprocess.transforms[0].resize: bad options"),
    ([{"resize": {"size": 10, "interpolation": "cubic"}}], "preprocess.transforms[0].resize: bad options"),
    ([{"normalize": {"mean": [0, 0, 0], "std": [1, 1, 1]}}, {"center_crop": {"size": 8}}],
     "preprocess.transforms[0].normalize: normalize must be the last"),
    ([{"torchvision.NoSuchThing": {}}], "preprocess.transforms[0].torchvision.NoSuchThing"),
    ([{"resize": {"size": 32}}], "output size depends on the input"),
])
def test_bad_transforms_name_the_key(transforms, key):
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        build(PreprocessConfig(transforms=transforms))


def test_transforms_fixed_size_and_seeded_augmentation():
    prep = build(PreprocessConfig(transforms=[{"resize": {"size": 40}}, {"torchvision.RandomHorizontalFlip": {"p": 0.5}},
                                              {"center_crop": {"size": 32}}]))
    img = torch.arange(3 * 50 * 70).remainder(251).to(torch.uint8).view(3, 50, 70)
    outs = [prep.apply(img, seed) for seed in range(8)]
    assert all(o.shape == (3, 32, 32) and o.dtype == torch.uint8 for o in outs)
    assert torch.equal(prep.apply(img, 3), outs[3])  # same seed (image id) -> same augmentation
    assert len({o.sum().item() + 7 * o[:, :, 0].sum().item() for o in outs}) == 2  # flipped and not
    assert prep.min_side == 40


def test_normalize_matches_mean_std():
    prep = build(PreprocessConfig())
    batch = torch.full((2, 3, 4, 4), 255, dtype=torch.uint8)
    x = prep.normalize(batch)
    assert torch.allclose(x[0, :, 0, 0], (1 - torch.tensor([0.485, 0.456, 0.406])) / torch.tensor([0.229, 0.224, 0.225]))


def test_orient_chw_matches_decode_orient():
    a = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    for o in range(1, 9):
        t = orient_chw(torch.from_numpy(a).permute(2, 0, 1), o).permute(1, 2, 0).numpy()
        assert np.array_equal(t, orient(a, o)), o


# --- store ----------------------------------------------------------------------------------

def test_store_roundtrip_memory_mapped_and_incremental(tmp_path):
    s = ShardStore.create(tmp_path, "k1", "float16", (4,), model="m")
    ids = [f"{i:064x}" for i in range(10)]
    rows = np.arange(40, dtype=np.float16).reshape(10, 4)
    s.add(ids[:6], rows[:6])
    s.add(ids[6:], rows[6:])
    (s.folder / ".shard-00002.npy.x.tmp").write_bytes(b"half")  # a killed writer's leftover
    again = ShardStore.open(tmp_path, "k1")
    assert not list(again.folder.glob(".*.tmp"))
    assert again.ids() == set(ids) and len(again) == 10
    assert np.array_equal(again.get([ids[7], ids[1]]), rows[[7, 1]])
    shards = list(again.shards())
    assert len(shards) == 2 and isinstance(shards[0][1], np.memmap)
    with pytest.raises(StoreError, match="holds float16"):
        ShardStore.create(tmp_path, "k1", "float16", (5,))
    with pytest.raises(KeyError):
        again.get(["f" * 64])


# --- embedding statistics -------------------------------------------------------------------

def _chunks(ids, vecs, labels, parts=3):
    def gen():
        for k in np.array_split(np.arange(len(ids)), parts):
            yield np.array(ids)[k], vecs[k], [labels[i] for i in k]
    return gen


def test_embedding_stats_merge_equals_union():
    rng = np.random.default_rng(1)
    n, dim = 600, 16
    ids = [f"{rng.integers(0, 2**62):016x}" + "0" * 48 for _ in range(n)]
    vecs = rng.normal(size=(n, dim)).astype(np.float16)
    labels = [["a", "b", "c"][i % 3] for i in range(n)]
    kw = dict(kll_k=100, sample_size=50)
    whole = EmbeddingStats.build("m", "k", dim, _chunks(ids, vecs, labels), **kw)
    a = EmbeddingStats.build("m", "k", dim, _chunks(ids[:250], vecs[:250], labels[:250]), **kw)
    b = EmbeddingStats.build("m", "k", dim, _chunks(ids[250:], vecs[250:], labels[250:]), **kw)
    merged = EmbeddingStats.from_dict(json.loads(json.dumps(a.to_dict()))).merge(b)
    for label in (ALL, "a", "b", "c"):
        assert merged.count[label] == whole.count[label]
        assert np.allclose(merged.centroid(label), whole.centroid(label))
        assert merged.norms[label].count == whole.norms[label].count
    assert merged.sample_ids == whole.sample_ids  # bottom-k sample: exactly the union's
    assert np.array_equal(merged.sample, whole.sample)
    assert np.allclose(whole.centroid(ALL), vecs.astype(np.float64).mean(axis=0))
    assert merged.summary()["labels"]["a"]["images"] == 200
    with pytest.raises(BadInput, match="different models"):
        merged.merge(EmbeddingStats("m", "other", dim))


# --- models and weights ---------------------------------------------------------------------

def test_missing_or_wrong_weights_name_the_fix(tmp_path, monkeypatch):
    with pytest.raises(WeightsError, match="weights file not found"):
        load_model(EmbedConfig(weights=tmp_path / "nope.pth"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    ckpt = tmp_path / "torch" / "hub" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "resnet18-f37072fd.pth").write_bytes(b"not the weights")
    with pytest.raises(WeightsError, match="SHA-256.*corrupt or a different file.*resnet18-f37072fd.pth"):
        load_model(EmbedConfig(model="torchvision.resnet18"))
    with pytest.raises(ConfigError, match="embed.model: unknown model 'nonet'"):
        load_model(EmbedConfig(model="nonet"))


def test_torchvision_model_from_a_local_weights_file(tmp_path):
    from pixelscope.embed.torchcompat import import_torchvision

    tv = import_torchvision()
    path = tmp_path / "r18.pth"
    torch.save(tv.models.resnet18().state_dict(), path)
    m = load_model(EmbedConfig(model="torchvision.resnet18", weights=path))
    assert m.dim == 512 and m.name == "torchvision.resnet18"


def test_plugins_add_a_model_and_a_transform(tmp_path, monkeypatch):
    (tmp_path / "my_plugins.py").write_text(textwrap.dedent('''
        import torch
        from pixelscope.embed.models import Model, model
        from pixelscope.embed.transforms import transform

        @transform("invert")
        def invert():
            return lambda img: 255 - img

        @model("mean_rgb")
        def mean_rgb(cfg):
            net = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
            return Model("mean_rgb", net.eval(), 3, "none")
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    prep = build(PreprocessConfig(plugins=["my_plugins"], transforms=[{"invert": {}}, {"center_crop": {"size": 8}},
                                                                       {"normalize": {"mean": [0, 0, 0], "std": [1, 1, 1]}}]))
    e = Embedder(EmbedConfig(model="mean_rgb", plugins=["my_plugins"]), prep, "cpu")
    y = e(prep.apply(torch.zeros(3, 10, 10, dtype=torch.uint8)).unsqueeze(0))
    assert y.shape == (1, 3) and np.allclose(y, 1.0)  # inverted black = white = 1.0


# --- real weights on real photos ------------------------------------------------------------

@pytest.fixture(scope="module")
def photos(corpus, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("photos")
    src = {"chelsea": corpus / "skimage" / "chelsea.png", "rocket": corpus / "skimage" / "rocket.jpg",
           "coffee": corpus / "skimage" / "coffee.png"}
    out = {k: v for k, v in src.items()}
    with Image.open(src["chelsea"]) as im:
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(d / "chelsea_flipped.png")
    out["chelsea_flipped"] = d / "chelsea_flipped.png"
    return out


def _embed(paths: dict[str, Path], backend: str = "auto") -> dict[str, np.ndarray]:
    cfg = PreprocessConfig(workers=1, device="cpu")
    prep = build(cfg)
    e = Embedder(EmbedConfig(backend=backend), prep, "cpu")
    items = [Item(f"{i:064x}", str(p)) for i, p in enumerate(paths.values())]
    vecs = {}
    for batch in cpu_batches(items, cfg, 8, 1):
        assert not batch.errors
        for i, v in zip(batch.ids, e(batch.images)):
            vecs[list(paths)[int(i, 16)]] = v
    return vecs


def test_flipped_photo_is_much_nearer_than_unrelated_photos(photos):
    v = _embed(photos)
    assert v["chelsea"].shape == (1280,) and v["chelsea"].dtype == np.float16
    same = cosine(v["chelsea"], v["chelsea_flipped"])
    other = max(cosine(v["chelsea"], v["rocket"]), cosine(v["chelsea"], v["coffee"]))
    assert same > 0.9, same
    assert other < same - 0.3, (same, other)


def test_embeddings_deterministic_on_cpu_and_backends_agree(photos):
    a, b = _embed(photos), _embed(photos)
    assert all(np.array_equal(a[k], b[k]) for k in a)  # bit for bit, run to run
    t = _embed(photos, backend="torch")
    assert all(cosine(a[k], t[k]) > 0.999 for k in a)  # ONNX Runtime vs eager torch


def test_gpu_decoder_falls_back_to_cpu_for_what_it_rejects(photos, tmp_path):
    """On this torch build nvJPEG is unavailable, so every file takes the CPU fallback: the
    batch must equal the CPU path's, and an unreadable file must be an error row."""
    cfg = PreprocessConfig(workers=1, device="cpu")
    prep = build(cfg)
    items = [Item(f"{i:064x}", str(p)) for i, p in enumerate(photos.values())]
    files = [(it, Path(it.path).read_bytes()) for it in items] + [(Item("e" * 64, str(tmp_path / "gone.jpg")), None)]
    from pixelscope.embed.torchcompat import import_torchvision

    import_torchvision()
    from torchvision.io import decode_jpeg

    got = _gpu_batch(files, prep, "cpu", decode_jpeg)
    want = next(cpu_batches(items, cfg, 8, 1))
    assert got.ids == want.ids and torch.equal(got.images, want.images)
    assert [e["reason"] for e in got.errors] == ["read_error"]


def test_worker_batches_through_shared_memory_equal_the_in_process_ones(photos, tmp_path):
    """Decode workers write tensors into shared batch buffers (reused round the ring): the
    batches equal the single-process ones, errors stay rows, and no buffer file is left."""
    import tempfile

    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 100)
    files = [*photos.values(), tmp_path / "broken.jpg"] * 3
    items = [Item(f"{i:064x}", str(p)) for i, p in enumerate(files)]
    cfg = PreprocessConfig(workers=2, device="cpu")
    one = list(cpu_batches(items, cfg, 2, 1))
    two = list(cpu_batches(items, cfg, 2, 2))  # 8 batches through a ring of 5 buffers
    assert len(one) == len(two) == 8
    for a, b in zip(one, two):
        assert a.ids == b.ids and torch.equal(a.images, b.images)
        assert [e["reason"] for e in a.errors] == [e["reason"] for e in b.errors]
    assert sum(len(b.errors) for b in two) == 3
    leftovers = [*Path("/dev/shm").glob("pixelscope-batches-*"), *Path(tempfile.gettempdir()).glob("pixelscope-batches-*")]
    assert not leftovers, leftovers


@cuda
def test_gpu_path_matches_cpu_path(photos):
    items = [Item(f"{i:064x}", str(p)) for i, p in enumerate(photos.values())]
    gpu = next(batches(items, PreprocessConfig(device="cuda")))
    cpu = next(batches(items, PreprocessConfig(device="cpu", workers=1)))
    assert gpu.ids == cpu.ids and gpu.images.is_cuda
    diff = (gpu.images.cpu().float() - cpu.images.float()).abs().mean()
    assert diff < 6, diff  # nvJPEG vs libjpeg IDCT and reduced decode differ slightly
    prep = build(PreprocessConfig())
    e = Embedder(EmbedConfig(), prep, "cuda")
    c = Embedder(EmbedConfig(backend="torch", precision="fp32"), prep, "cpu")
    g, h = e(gpu.images), c(cpu.images)
    assert all(cosine(x, y) > 0.97 for x, y in zip(g, h))


# --- the steps: incremental stores, error rows, the profile --------------------------------

def _project(demo_raw: Path, tmp_path: Path, n_labels: int | None = None) -> Path:
    project = tmp_path / "proj"
    shutil.copytree(demo_raw / "raw", project / "data" / "raw")
    return project


@pytest.mark.slow
def test_embed_step_incremental_errors_and_profile(demo_raw, tmp_path):
    project = _project(demo_raw, tmp_path)
    p = parse_params({"ingest": {"workers": 1}, "preprocess": {"workers": 2}, "embed": {"shard_rows": 40}})
    raw = project / p.paths.raw
    manifest = project / p.paths.manifest
    held_back = sorted(raw.glob("field/cat/*.jpg"))
    aside = tmp_path / "aside"
    aside.mkdir()
    for f in held_back:
        shutil.move(f, aside / f.name)
    s = ingest_step(p, project)
    first = embed_step(p, project)
    assert first.counts["errors"] == 0 and first.counts["ingest_errors"] == s.counts["errors"]
    assert first.counts["computed"] == first.counts["images"] == s.counts["ok"] and first.counts["reused"] == 0
    assert first.details["source"] == "files"

    for f in aside.iterdir():  # new images arrive; one known image is corrupted after ingest
        shutil.move(f, raw / "field" / "cat" / f.name)
    s2 = ingest_step(p, project)
    from pixelscope.io.store import current_store
    from pixelscope.profile.embedding import stats_from_store

    assert stats_from_store(current_store(project / p.paths.embeddings), manifest) is None  # new images not embedded yet
    victim = sorted(raw.glob("studio/coffee/*.jpg"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # truncated after the manifest was written
    second = embed_step(p, project)
    assert s2.counts["files_seen"] == s.counts["files_seen"] + len(held_back)
    c2 = second.counts
    assert c2["computed"] == s2.counts["ok"] - s.counts["ok"] > 0 and c2["reused"] == first.counts["computed"]
    assert c2["images"] == c2["reused"] + c2["computed"] + c2["errors"]  # counts add up
    assert second.counts["errors"] == 0  # the corrupted file's id was embedded before: not read again

    # a new preprocessing re-embeds everything; the corrupted file is then an error row
    p2 = parse_params({**p.model_dump(mode="json"), "preprocess": {"workers": 2, "transforms": [
        {"resize": {"size": 200}}, {"center_crop": {"size": 192}}, {"normalize": {"mean": [0.5] * 3, "std": [0.5] * 3}}]}})
    third = embed_step(p2, project)
    assert third.details["key"] != first.details["key"] and third.counts["reused"] == 0
    assert third.counts["errors"] == 1 and list(third.details["errors_by_reason"]) in (["truncated"], ["decode_error"])
    assert third.counts["images"] == third.counts["computed"] + third.counts["errors"]
    errors = json.loads((Path(third.outputs["store"]) / "errors.json").read_text())
    assert errors[0]["path"].endswith(victim.name)
    victim.write_bytes(data)

    # preprocess stores tensors once; embed then reads them instead of decoding
    pre = preprocess_step(p, project)
    assert pre.counts["computed"] == s2.counts["ok"] and pre.counts["errors"] == 0
    store = ShardStore.open(project / p.paths.tensors, pre.details["preprocess"])
    assert store.meta["row_shape"] == [3, 224, 224] and store.meta["dtype"] == "uint8"
    again = preprocess_step(p, project)
    assert again.counts["computed"] == 0 and again.counts["reused"] == s2.counts["ok"]
    shutil.rmtree(project / p.paths.embeddings)
    fourth = embed_step(p, project)
    assert fourth.details["source"] == "tensors" and fourth.counts["computed"] == s2.counts["ok"]

    # the profile gets the embedding statistics; the projection covers every embedded image
    profile_step(p, project)
    from pixelscope.profile import Profile

    prof = Profile.load(project / p.paths.profile)
    assert prof.embedding is not None and prof.embedding.count[ALL] == s2.counts["ok"]
    assert set(prof.embedding.labels) == {"astronaut", "cat", "coffee", "galaxy", "motorcycle", "rocket"}
    assert len(prof.embedding.sample_ids) == min(p.embed.sample_size, s2.counts["ok"])
    import pyarrow.parquet as pq

    proj = pq.read_table(Path(fourth.outputs["store"]) / "projection.parquet").to_pydict()
    assert len(proj["id"]) == s2.counts["ok"] and all(np.isfinite(proj["x"]))


def test_the_torchvision_hook_acts_only_when_the_extension_cannot_load(tmp_path):
    """The .pth hook's test of torchvision's compiled extension: a library that loads (or none at all)
    means leave torchvision alone; one that fails to load means define the stand-in operators."""
    import importlib.machinery

    from pixelscope.embed import torchcompat

    assert torchcompat._extension_loads([str(tmp_path)])  # no _C library: nothing to stand in for
    (tmp_path / f"_C{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"not a shared library")
    assert not torchcompat._extension_loads([str(tmp_path)])
    r = subprocess.run([sys.executable, "-c", "import sys, torchvision, torchvision.models\n"
                        "from pixelscope.embed import torchcompat\n"
                        "print(torchcompat.shimmed(), 'torchcompat' in repr(sys.meta_path), '+cu' in torchvision.__version__)"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    shimmed, finder_left, tv_cuda_build = r.stdout.split()
    cuda_build_beside_cpu_torch = tv_cuda_build == "True" and torch.version.cuda is None
    assert shimmed == str(cuda_build_beside_cpu_torch) and finder_left == "False"  # stand-ins only where needed
