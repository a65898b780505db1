import pytest

from pixelscope.config import ConfigError, dotted_overrides, load_params, parse_params


def test_defaults_are_valid():
    p = parse_params({})
    assert p.profile.kll_k == 200
    assert p.ingest.labels == "folder"


def test_repo_params_file_is_valid():
    p = load_params("params.yaml")
    assert p.paths.raw.as_posix() == "data/raw"


def test_unknown_key_is_named():
    with pytest.raises(ConfigError) as e:
        parse_params({"ingest": {"wokers": 2}})
    assert "ingest.wokers" in str(e.value)
    assert "unknown key" in str(e.value)


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match=r"profiel: unknown key"):
        parse_params({"profiel": {}})


def test_wrong_type_is_named():
    with pytest.raises(ConfigError) as e:
        parse_params({"profile": {"kll_k": "big"}})
    assert "profile.kll_k" in str(e.value)
    assert "'big'" in str(e.value)


def test_out_of_range_is_named():
    with pytest.raises(ConfigError, match=r"features.working_size"):
        parse_params({"features": {"working_size": 1}})


def test_bad_choice_is_named():
    with pytest.raises(ConfigError, match=r"ingest.labels"):
        parse_params({"ingest": {"labels": "filename"}})


def test_csv_labels_need_a_path():
    with pytest.raises(ConfigError, match=r"labels_csv"):
        parse_params({"ingest": {"labels": "csv"}})


def test_not_a_mapping():
    with pytest.raises(ConfigError, match="mapping"):
        parse_params([1, 2])  # type: ignore[arg-type]


def test_yaml_errors_and_missing_file(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("ingest: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_overrides_are_validated_too(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("ingest:\n  workers: 3\n")
    assert load_params(f).ingest.workers == 3
    assert load_params(f, dotted_overrides(["ingest.workers=1"])).ingest.workers == 1
    with pytest.raises(ConfigError, match="ingest.workers"):
        load_params(f, dotted_overrides(["ingest.workers=-1"]))
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        dotted_overrides(["ingest.workers"])
