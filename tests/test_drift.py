"""Drift statistics from sketches: agreement with exact computations on the raw values,
same-distribution data passes, shifted data fails, sketch error is never called drift."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from pixelscope.config import DriftConfig, ProfileConfig
from pixelscope.errors import BadInput
from pixelscope.profile import Profile
from pixelscope.profile.embedding import EmbeddingStats
from pixelscope.profile.sketches import CategoricalSketch, NumericSketch
from pixelscope.validate.drift import (
    adjust,
    binned,
    categorical_rows,
    compare,
    embedding_rows,
    hellinger,
    jensen_shannon,
    ks_statistic,
    mean_shift_p_value,
    mmd_test,
    numeric_rows,
    psi,
)


def num(values: np.ndarray, k: int = 200) -> NumericSketch:
    s = NumericSketch(k)
    s.update(values)
    return s


def cat(values: list[str]) -> CategoricalSketch:
    s = CategoricalSketch()
    s.update(values)
    return s


def exact_binned(a: np.ndarray, b: np.ndarray, bins: int) -> tuple[np.ndarray, np.ndarray]:
    edges = np.quantile(a, np.linspace(0, 1, bins + 1)[1:-1])
    count = lambda x: np.bincount(np.searchsorted(edges, x, side="left"), minlength=bins) / len(x)  # noqa: E731
    return count(a), count(b)


@pytest.mark.parametrize("shift", [0.0, 0.1, 0.5])
def test_sketch_statistics_agree_with_exact_ones(shift):
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=50_000), rng.normal(shift, 1.0, size=40_000)
    sa, sb = num(a), num(b)
    res = sa.rank_error + sb.rank_error
    exact = stats.ks_2samp(a, b)
    assert abs(ks_statistic(sa, sb) - exact.statistic) <= res
    pa, pb = binned(sa, sb, 10)
    ea, eb = exact_binned(a, b, 10)
    assert np.abs(pa - ea).max() <= 2 * res and np.abs(pb - eb).max() <= 2 * res
    assert abs(psi(pa, pb) - psi(ea, eb)) <= 0.01 + 0.1 * psi(ea, eb)
    assert abs(hellinger(pa, pb) - hellinger(ea, eb)) <= 0.02
    assert abs(jensen_shannon(pa, pb) - jensen_shannon(ea, eb)) <= 0.005 + 0.1 * jensen_shannon(ea, eb)


def _decide(rows, cfg=DriftConfig()):
    ps = adjust([r.p_value for r in rows if r.p_value is not None], cfg.correction)
    for r, p in zip([r for r in rows if r.p_value is not None], ps):
        r.p_adjusted = p
    return {r.test: r.statistic > r.threshold and (r.p_adjusted is None or r.p_adjusted < cfg.alpha) for r in rows}


@pytest.mark.parametrize("n, shift", [(200, 0.8), (5000, 0.7)])  # exact sketches; estimating sketches
def test_numeric_same_distribution_passes_shift_fails(n, shift):
    rng = np.random.default_rng(1)
    cfg = DriftConfig()
    same = _decide(numeric_rows("x", "all", num(rng.normal(size=n)), num(rng.normal(size=n)), cfg))
    assert not any(same.values()), same
    shifted = _decide(numeric_rows("x", "all", num(rng.normal(size=n)), num(rng.normal(shift, 1, size=n)), cfg))
    assert all(shifted.values()), shifted


def test_a_difference_below_sketch_resolution_is_never_drift():
    """At a million rows a shift of 0.01 sd is 'significant' for exact KS, but the sketches
    cannot resolve it, so it must not be called drift."""
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=1_000_000), rng.normal(0.01, 1, size=1_000_000)
    rows = numeric_rows("x", "all", num(a, k=200), num(b, k=200), DriftConfig(ks_min=0.0, psi_max=0, hellinger_max=0, js_max=0))
    ks = next(r for r in rows if r.test == "ks")
    assert stats.ks_2samp(a, b).pvalue < 0.05  # exact test on raw values would flag it
    assert ks.threshold >= ks.resolution > 0 and ks.statistic <= ks.resolution
    assert not any(_decide(rows, DriftConfig(ks_min=0.0)).values())


def test_categorical_mix_change_and_unseen_category():
    rng = np.random.default_rng(3)
    classes = ["cat", "dog", "car", "bus"]
    ref = list(rng.choice(classes, 400))
    same = categorical_rows("label", "all", cat(ref), cat(list(rng.choice(classes, 400))), DriftConfig())[0]
    doubled = list(rng.choice(classes, 400, p=[0.4, 0.2, 0.2, 0.2]))
    mix = categorical_rows("label", "all", cat(ref), cat(doubled), DriftConfig())[0]
    unseen = categorical_rows("label", "all", cat(ref), cat(list(rng.choice(classes, 340)) + ["truck"] * 60), DriftConfig())[0]
    assert same.p_value > 0.01 and same.statistic < 0.1
    for r in (mix, unseen):
        assert r.p_value < 1e-4 and r.statistic > r.threshold
    assert unseen.statistic >= 0.14  # the new category's whole share counts


def test_embedding_mmd_and_centroid_shift():
    rng = np.random.default_rng(4)
    dim = 32
    base = rng.normal(size=dim)

    def stats_of(vectors: np.ndarray, tag: int) -> EmbeddingStats:
        ids = [f"{tag:04x}{i:060x}" for i in range(len(vectors))]
        ids = [f"{rng.integers(0, 2**52):013x}" + i[13:] for i in ids]
        chunks = lambda: [(np.array(ids), vectors.astype(np.float16), ["a"] * len(ids))]  # noqa: E731
        return EmbeddingStats.build("m", "k", dim, chunks, sample_size=200)

    ref = stats_of(base + rng.normal(size=(300, dim)), 1)
    same = stats_of(base + rng.normal(size=(300, dim)), 2)
    moved = stats_of(base + 0.6 + rng.normal(size=(300, dim)), 3)
    cfg = DriftConfig()
    r_same = {r.test + r.segment: r for r in embedding_rows(ref, same, cfg)}
    r_moved = {r.test + r.segment: r for r in embedding_rows(ref, moved, cfg)}
    for segment in ("all", "label=a"):  # overall and per label
        assert r_same["mmd" + segment].p_value > 0.01 and r_moved["mmd" + segment].p_value < 0.01
        assert r_same["cosine_shift" + segment].p_value > 0.01 and r_moved["cosine_shift" + segment].p_value < 1e-6
    assert r_moved["cosine_shiftall"].statistic > r_same["cosine_shiftall"].statistic
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(60, 8))
    assert mmd_test(x, y, 50)[1] == mmd_test(x, y, 50)[1]  # seeded: reproducible
    far = mmd_test(rng.normal(size=(100, 8)), rng.normal(2, 1, size=(100, 8)), 200)[1]
    assert far < 1e-6  # past what 200 permutations alone can resolve
    with pytest.raises(BadInput, match="different models"):
        embedding_rows(ref, EmbeddingStats("m", "other", dim), cfg)


def test_multiple_testing_corrections():
    p = [0.01, 0.04, 0.03, 0.005]
    assert np.allclose(adjust(p, "holm"), [0.03, 0.06, 0.06, 0.02])
    assert np.allclose(adjust(p, "bh"), [0.02, 0.04, 0.04, 0.02])
    assert adjust([], "bh") == []


@pytest.mark.slow
def test_mean_shift_p_value_is_calibrated_under_the_null():
    """Same distribution (correlated, anisotropic vectors): about 5 % of p-values fall below 0.05;
    a mean moved by a fraction of the noise is found, with a p-value far below 1/permutations."""
    rng = np.random.default_rng(5)
    dim = 64
    mix = rng.normal(size=(dim, dim)) * np.linspace(2, 0.1, dim)  # a few strong directions
    draw = lambda n, shift=0.0: rng.normal(size=(n, dim)) @ mix.T + 3 + shift  # noqa: E731
    ps = []
    for _ in range(300):
        x, y = draw(200), draw(200)
        ps.append(mean_shift_p_value(x.mean(0), y.mean(0), 200, 200, x, y))
    assert 0.02 <= np.mean(np.array(ps) < 0.05) <= 0.09
    assert np.mean(np.array(ps) < 0.01) <= 0.025
    x, y = draw(200), draw(200, shift=2.0)  # a quarter of the per-coordinate noise
    assert mean_shift_p_value(x.mean(0), y.mean(0), 200, 200, x, y, permutations=200) < 1e-4


def test_compare_counts_each_hypothesis_once_and_skips_constant_segment_columns():
    rng = np.random.default_rng(6)
    kinds = {"status": "categorical", "reason": "categorical", "label": "categorical", "x": "numeric"}

    def profile(shift: float) -> Profile:
        p = Profile.empty(kinds, ProfileConfig(segments=["label"]))
        labels = list(rng.choice(["a", "b"], 400))
        p.update(pa.table({"status": ["ok"] * 400, "reason": [None] * 400, "label": labels,
                           "x": rng.normal(shift, 1, 400)}))
        return p

    cfg = DriftConfig(segments=["label"])
    rows = compare(profile(0.0), profile(0.0), cfg)
    # the label is constant inside its own segments: only its per-class share tests carry label=<class>
    assert not any(r.feature == "label" and r.segment.startswith("label=") and r.test != "share" for r in rows)
    assert sorted(r.segment for r in rows if r.test == "share") == ["label=a", "label=b"]
    binned_rows = [r for r in rows if r.feature == "x" and r.segment == "all" and r.test in ("psi", "hellinger", "js")]
    assert len(binned_rows) == 3 and len({r.p_adjusted for r in binned_rows}) == 1
    # Holm inside each family, divided by the family's share of alpha (no embeddings here: its
    # budget goes to the other three in proportion)
    present = {r.family for r in rows}
    assert present == {"class_balance", "features", "segments"}
    total = sum(cfg.budget[f] for f in present)
    for family in present:
        tested = {(r.feature, r.segment, r.test in ("psi", "hellinger", "js")) for r in rows
                  if r.p_value is not None and r.family == family}
        smallest = min(r.p_value for r in rows if r.p_value is not None and r.family == family)
        share = cfg.budget[family] / total
        assert min(r.p_adjusted for r in rows if r.family == family) == pytest.approx(
            min(1.0, smallest * len(tested) / share))
    from pixelscope.validate.drift import family_shares

    assert sum(family_shares(cfg, present).values()) == pytest.approx(1.0)  # the families' levels sum to alpha


@pytest.fixture(scope="module")
def labeled_rows(corpus, tmp_path_factory):
    """The corpus's labeled real photos (CIFAR-10 airplane / cat / dog, ants, bees) through ingest."""
    import pyarrow.parquet as pq

    from conftest import ingest_to
    from pixelscope.config import parse_params

    out = tmp_path_factory.mktemp("labeled") / "manifest.parquet"
    ingest_to(parse_params({"ingest": {"workers": 1}}), corpus / "labeled", out)
    table = pq.read_table(out)
    return table.filter(pa.compute.equal(table.column("status"), "ok"))


def test_a_doubled_class_share_on_real_photos_is_flagged_and_the_same_mix_is_not(labeled_rows):
    """Bootstrap batches of real photos' manifest rows at realistic sizes (600 vs 600, five
    classes): one class's share doubled (20 % -> 40 %) drifts through its share test in the
    class-balance family; the same mix drawn again does not drift at all."""
    from pixelscope.io.manifest import column_kinds

    rng = np.random.default_rng(3)
    labels = np.array(labeled_rows.column("label").to_pylist())
    classes = sorted(set(labels))
    by_class = {c: np.flatnonzero(labels == c) for c in classes}
    cfg = DriftConfig()

    def batch(weights: dict[str, float], n: int = 600):
        counts = {c: round(n * w) for c, w in weights.items()}
        idx = np.concatenate([rng.choice(by_class[c], k, replace=True) for c, k in counts.items()])
        p = Profile.empty(column_kinds(labeled_rows.schema), ProfileConfig(segments=["label"]))
        p.update(labeled_rows.take(pa.array(idx, type=pa.int64())))
        return p

    even = {c: 1 / len(classes) for c in classes}
    doubled = {c: (0.4 if c == classes[0] else 0.6 / (len(classes) - 1)) for c in classes}
    ref = batch(even)
    rows = compare(ref, batch(doubled), cfg)
    fired = [(r.feature, r.segment, r.test) for r in rows if r.drift]
    assert ("label", f"label={classes[0]}", "share") in fired
    share = next(r for r in rows if r.test == "share" and r.segment == f"label={classes[0]}")
    assert share.family == "class_balance" and share.statistic == pytest.approx(0.2, abs=0.01)
    assert not any(r.drift for r in compare(ref, batch(even), cfg))
