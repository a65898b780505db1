"""A plugin feature appears in the manifest and the profile with no core change."""

from __future__ import annotations

import textwrap

import pyarrow.parquet as pq
import pytest

from conftest import ingest_to
from pixelscope.config import ConfigError, parse_params
from pixelscope.features import registry
from pixelscope.profile import Profile

PLUGIN = textwrap.dedent('''
    from pixelscope.features import feature

    @feature("red_share", kind="numeric", doc="share of red-dominant pixels")
    def red_share(view):
        r, g, b = (view.rgb[..., i].astype(int) for i in range(3))
        return float(((r > g) & (r > b)).mean())

    @feature("size_class", kind="categorical")
    def size_class(view):
        return "large" if view.meta["width"] >= 800 else "small"

    @feature("flaky", kind="numeric")
    def flaky(view):
        if view.meta["width"] % 2:
            raise RuntimeError("odd width")
        return 1.0
''')


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    registry.registered()  # built-ins in place before the snapshot
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "my_features.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    with registry.FEATURES.scoped():
        yield "my_features"
    import sys

    sys.modules.pop("my_features", None)


@pytest.mark.parametrize("workers", [1, 2])
def test_plugin_feature_in_manifest_and_profile(demo_raw, tmp_path, plugin, workers):
    p = parse_params({"ingest": {"workers": workers}, "features": {"plugins": [plugin]}})
    summary = ingest_to(p, demo_raw / "raw", tmp_path / "m.parquet")
    t = pq.read_table(tmp_path / "m.parquet")
    assert {"red_share", "size_class", "flaky"} <= set(t.column_names)
    ok = [r for r in t.to_pylist() if r["status"] == "ok"]
    assert all(0 <= r["red_share"] <= 1 for r in ok)
    assert {r["size_class"] for r in ok} == {"large", "small"}
    # a failing plugin costs its own value only, with a warning; the row stays ok
    odd = [r for r in ok if r["width"] % 2]
    assert odd and all(r["flaky"] is None and "plugin feature flaky failed" in r["warning"] for r in odd)
    assert summary.counts["ok"] == len(ok)
    prof = Profile.from_manifest(tmp_path / "m.parquet", p.profile)
    assert prof.sketch("red_share").count == len(ok)
    assert prof.sketch("flaky").nulls == len(odd)
    assert set(prof.sketch("size_class").frequencies()) == {"large", "small"}
    assert "red_share" in prof.segments["label"]["cat"]


def test_missing_plugin_module_is_a_config_error(demo_raw, tmp_path):
    p = parse_params({"features": {"plugins": ["no_such_plugin_module"]}})
    with pytest.raises(ConfigError, match="features.plugins"):
        ingest_to(p, demo_raw / "raw", tmp_path / "m.parquet")


def test_builtin_names_are_protected():
    from pixelscope.features import feature, registered

    registered()
    with pytest.raises(ConfigError, match="'sharpness' is already registered by the built-in"):
        feature("sharpness")(lambda v: 0.0)
    with pytest.raises(ConfigError, match="kind"):
        feature("x", kind="vector")  # type: ignore[arg-type]


def test_a_plugin_loaded_in_one_scope_registers_again_in_the_next(tmp_path, monkeypatch):
    """scoped() forgets the plugin module it saw imported, so loading it in a later scope registers it
    again (it used to stay in sys.modules: the second load_plugins silently did nothing)."""
    import sys

    registry.registered()
    (tmp_path / "plug").mkdir()
    (tmp_path / "plug" / "scoped_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path / "plug"))
    try:
        for _ in range(2):
            with registry.FEATURES.scoped():
                registry.load_plugins(["scoped_plugin"])
                assert "red_share" in registry.FEATURES
            assert "red_share" not in registry.FEATURES and "scoped_plugin" not in sys.modules
    finally:
        sys.modules.pop("scoped_plugin", None)
