"""The profile: mergeable, serializable, constant size, accurate within the KLL error."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ingest_to
from pixelscope.config import ProfileConfig
from pixelscope.errors import BadInput, ConfigError
from pixelscope.profile import OTHER_SEGMENT, Profile

KINDS = {"label": "categorical", "source": "categorical", "status": "categorical", "reason": "categorical",
         "x": "numeric", "y": "numeric", "id": "distinct", "note": "none"}
CFG = ProfileConfig(kll_k=200, segments=["label"])


def table(xs, ys, labels, ok=None) -> pa.Table:
    n = len(xs)
    ok = ok if ok is not None else [True] * n
    return pa.table({
        "label": pa.array(labels, pa.string()),
        "source": pa.array(["s"] * n, pa.string()),
        "status": pa.array(["ok" if o else "error" for o in ok], pa.string()),
        "reason": pa.array([None if o else "truncated" for o in ok], pa.string()),
        "x": pa.array(xs, pa.float64()),
        "y": pa.array(ys, pa.float64()),
        "id": pa.array([f"id{i}-{x}" for i, x in enumerate(xs)], pa.string()),
        "note": pa.array([None] * n, pa.string()),
    })


def build(t: pa.Table, cfg: ProfileConfig = CFG) -> Profile:
    p = Profile.empty(KINDS, cfg)
    p.update(t)
    return p


finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False, width=32)
rows = st.lists(st.tuples(finite, st.one_of(st.none(), finite), st.sampled_from(["a", "b", "c"]), st.booleans()),
                min_size=1, max_size=400)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(a=rows, b=rows)
def test_merge_equals_profile_of_union(a, b):
    def t(rs):
        return table([r[0] for r in rs], [np.nan if r[1] is None else r[1] for r in rs], [r[2] for r in rs],
                     [r[3] for r in rs])

    merged = build(t(a)).merge(build(t(b)))
    union = build(pa.concat_tables([t(a), t(b)]))
    assert (merged.files_seen, merged.ok, merged.errors) == (union.files_seen, union.ok, union.errors)
    assert merged.files_seen == merged.ok + merged.errors
    for col in ("x", "y"):
        m, u = merged.sketch(col), union.sketch(col)
        assert (m.count, m.nulls) == (u.count, u.nulls)
        if u.count:
            assert (m.min, m.max) == (u.min, u.max)
            assert m.mean == pytest.approx(u.mean, rel=1e-9, abs=1e-6)
            assert m.variance == pytest.approx(u.variance, rel=1e-6, abs=1e-3)
            # quantiles: the merged estimate's rank in the union data is within the KLL rank error
            picked = [r[0] if col == "x" else r[1] for r in a + b if r[3] and (col == "x" or r[1] is not None)]
            values = np.sort(np.array(picked, dtype=np.float32))
            eps = m.rank_error
            for q in (0.1, 0.5, 0.9):
                est = m.quantiles([q])[0]
                lo = np.searchsorted(values, est, "left") / len(values)
                hi = np.searchsorted(values, est, "right") / len(values)
                assert lo - eps <= q <= hi + eps
    ml, ul = merged.sketch("label"), union.sketch("label")
    assert ml.frequencies() == ul.frequencies()
    assert merged.segment_rows == union.segment_rows
    for value, sketches in union.segments["label"].items():
        assert merged.segments["label"][value]["x"].count == sketches["x"].count


def test_serialize_roundtrip_is_exact():
    rng = np.random.default_rng(1)
    p = build(table(rng.normal(size=3000), rng.uniform(size=3000), rng.choice(["a", "b"], 3000).tolist()))
    q = Profile.deserialize(p.serialize())
    assert q.serialize() == p.serialize()
    assert q.quantiles("x", [0.5]) == p.quantiles("x", [0.5])
    assert q.summary() == p.summary()
    d = json.loads(p.serialize())
    assert d["format"] == "pixelscope-profile" and d["version"] == 1


def test_deserialize_rejects_garbage():
    with pytest.raises(BadInput, match="not JSON"):
        Profile.deserialize(b"\x80\x03pickle")
    with pytest.raises(BadInput, match="format marker"):
        Profile.deserialize(b'{"a": 1}')
    with pytest.raises(BadInput, match="version 99"):
        Profile.deserialize(b'{"format": "pixelscope-profile", "version": 99}')


@pytest.mark.slow
def test_size_does_not_grow_with_rows():
    rng = np.random.default_rng(2)
    sizes = []
    for n in (10_000, 100_000, 1_000_000):
        p = Profile.empty(KINDS, CFG)
        for start in range(0, n, 50_000):
            m = min(50_000, n - start)
            p.update(table(rng.lognormal(size=m), rng.normal(size=m), rng.choice(["a", "b", "c"], m).tolist()))
        sizes.append(len(p.serialize()))
        assert p.files_seen == n
    assert sizes[2] < 1.3 * sizes[0], sizes
    assert sizes[2] < 100_000


def test_errors_are_counted_not_profiled():
    p = build(table([1.0, 2.0, 3.0], [1.0, 1.0, 1.0], ["a", "a", "b"], ok=[True, False, True]))
    assert (p.files_seen, p.ok, p.errors) == (3, 2, 1)
    assert p.errors_by_reason == {"truncated": 1}
    assert p.sketch("x").count == 2 and p.sketch("x").max == 3.0


def test_segments_are_capped():
    cfg = ProfileConfig(segments=["label"], max_segment_values=3)
    p = build(table(list(range(10)), list(range(10)), [f"c{i}" for i in range(10)]), cfg)
    assert set(p.segments["label"]) == {"c0", "c1", "c2", OTHER_SEGMENT}  # 3 named values, the rest share one
    assert sum(p.segment_rows["label"].values()) == 10 and p.segment_rows["label"][OTHER_SEGMENT] == 7


def test_merge_refuses_incompatible_profiles():
    a = build(table([1.0], [1.0], ["a"]))
    b = Profile.empty({**KINDS, "z": "numeric"}, CFG)
    with pytest.raises(BadInput, match="different columns"):
        a.merge(b)
    c = Profile.empty(KINDS, ProfileConfig(kll_k=100, segments=["label"]))
    with pytest.raises(BadInput, match="kll_k"):
        a.merge(c)


def test_a_failed_merge_changes_neither_profile():
    """A merge refused for its embedding statistics (one side has them, or another model made them)
    used to add the counts, columns and segments first: both profiles must stay as they were."""
    from pixelscope.profile.embedding import EmbeddingStats

    rng = np.random.default_rng(5)
    a = build(table(list(rng.normal(size=50)), list(rng.normal(size=50)), ["a", "b"] * 25))
    b = build(table(list(rng.normal(size=30)), list(rng.normal(size=30)), ["b", "c"] * 15))
    b.embedding = EmbeddingStats("m", "k", 4)
    c = build(table(list(rng.normal(size=20)), list(rng.normal(size=20)), ["a"] * 20))
    c.embedding = EmbeddingStats("m", "other", 4)
    for left, right, why in ((a, b, "one without"), (c, b, "different models")):
        before = (left.serialize(), right.serialize())
        with pytest.raises(BadInput, match=why):
            left.merge(right)
        assert (left.serialize(), right.serialize()) == before


def test_unknown_segment_column():
    with pytest.raises(ConfigError, match="profile.segments"):
        Profile.empty(KINDS, ProfileConfig(segments=["camera"]))


def test_histogram_counts_add_up():
    rng = np.random.default_rng(3)
    p = build(table(rng.uniform(0, 10, 5000), rng.uniform(size=5000), ["a"] * 5000))
    edges, counts = p.sketch("x").histogram(10)
    assert len(edges) == 11 and sum(counts) == pytest.approx(5000)
    assert all(c == pytest.approx(500, abs=5000 * p.sketch("x").rank_error * 2) for c in counts)


def test_corpus_quantiles_within_rank_error(corpus, tmp_path):
    """KLL quantiles of real-image features vs exact quantiles of the same values."""
    from pixelscope.config import parse_params

    params = parse_params({"ingest": {"workers": 2}})
    ingest_to(params, corpus, tmp_path / "m.parquet")
    prof = Profile.from_manifest(tmp_path / "m.parquet", params.profile)
    import pyarrow.parquet as pq

    t = pq.read_table(tmp_path / "m.parquet").to_pylist()
    ok = [r for r in t if r["status"] == "ok"]
    checked = 0
    for col in ("brightness_mean", "sharpness", "bytes", "width", "entropy", "colorfulness", "saturation_mean"):
        sk = prof.sketch(col)
        exact = np.sort(np.array([r[col] for r in ok if r[col] is not None], dtype=np.float32))
        assert sk.count == len(exact)
        for q in (0.05, 0.25, 0.5, 0.75, 0.95):
            est = sk.quantiles([q])[0]
            lo = np.searchsorted(exact, np.float32(est), "left") / len(exact)
            hi = np.searchsorted(exact, np.float32(est), "right") / len(exact)
            assert lo - sk.rank_error <= q <= hi + sk.rank_error, (col, q)
            checked += 1
        assert sk.min == pytest.approx(float(exact[0]), rel=1e-6) and sk.max == pytest.approx(float(exact[-1]), rel=1e-6)
    assert checked == 35
