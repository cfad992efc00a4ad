"""Typed config: defaults, TOML file, environment overrides and validation."""
from pathlib import Path

import pytest

from cartola.config import ConfigError, load_config


def test_defaults_resolve_under_project_home(tmp_path):
    config = load_config(environ={"CARTOLA_PROJECT_HOME": str(tmp_path)})
    assert config.data_dir == tmp_path / "data"
    assert config.model_serving_dir == tmp_path / "serving_model" / "cartola_pro"
    assert config.sqlite_metadata_path() == tmp_path / "tfx_output" / "metadata" / "metadata.db"
    assert config.schedule == "@weekly"


def test_environment_overrides_typed_fields(tmp_path):
    config = load_config(environ={
        "CARTOLA_PROJECT_HOME": str(tmp_path), "CARTOLA_MIN_KS": "0.45",
        "CARTOLA_HIDDEN_UNITS": "16, 8", "CARTOLA_ENABLE_CACHE": "false",
        "CARTOLA_BEAM_ARGS": "--runner=DirectRunner --direct_num_workers 2",
        "CARTOLA_DATA_ROOT": "/srv/data"})
    assert config.min_ks == 0.45 and config.hidden_units == (16, 8)
    assert config.enable_cache is False
    assert config.beam_args == ("--runner=DirectRunner", "--direct_num_workers", "2")
    assert config.data_dir == Path("/srv/data")


def test_toml_file_then_environment(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('model_name = "other"\nmin_auc = 0.8\nnumeric_features = ["a", "b"]\n'
                    'label = "y"\n')
    config = load_config(path, environ={"CARTOLA_MIN_AUC": "0.75"})
    assert config.model_name == "other" and config.numeric_features == ("a", "b")
    assert config.min_auc == 0.75


def test_a_data_set_file_starts_from_neutral_defaults(tmp_path):
    """No Cartola column leaks into another data set's config."""
    path = tmp_path / "c.toml"
    path.write_text('label = "y"\nnumeric_features = ["a"]\n')
    config = load_config(path, environ={})
    assert (config.id_column, config.slice_feature, config.clip_features,
            config.log_features, config.segment_status_column) == ("", "", (), (), "")
    assert config.pipeline_name == "tabular" and config.report_title == ""


def test_default_is_the_bundled_cartola_file():
    config = load_config(environ={})
    assert config.label == "pro_target" and config.id_column == "id"
    assert config.clip_features == ("avg_3", "avg_4")
    assert config.segment_names == ("churn_risk", "conversion_target", "neither")


def test_extends_a_bundled_or_relative_base(tmp_path):
    (tmp_path / "child.toml").write_text('extends = "cartola"\nmin_ks = 0.5\n')
    config = load_config(tmp_path / "child.toml", environ={})
    assert config.label == "pro_target" and config.min_ks == 0.5
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "b.toml").write_text('label = "y"\nnumeric_features = ["a"]\n')
    (tmp_path / "c.toml").write_text('extends = "base/b.toml"\nmin_auc = 0.6\n')
    config = load_config(tmp_path / "c.toml", environ={})
    assert config.label == "y" and config.min_auc == 0.6
    (tmp_path / "loop.toml").write_text('extends = "loop.toml"\n')
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "loop.toml", environ={})


@pytest.mark.parametrize("text, message", [
    ('numeric_features = ["a"]\n', "no label configured"),
    ('label = "y"\n', "no model features"),
    ('label = "y"\nnumeric_features = ["a"]\nclip_features = ["b"]\n', "clip_features"),
    ('label = "y"\nnumeric_features = ["a"]\ncsv_delimiter = ";;"\n', "csv_delimiter"),
    ('label = "y"\nnumeric_features = ["a"]\ncsv_decimal = ","\n', "csv_decimal"),
    ('label = "y"\nnumeric_features = ["a"]\nmin_positive_rate = 0.9\n'
     'max_positive_rate = 0.1\n', "min_positive_rate"),
])
def test_data_set_file_errors_name_the_setting(tmp_path, text, message):
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path, environ={})


@pytest.mark.parametrize("environ, message", [
    ({"CARTOLA_MIN_KS": "high"}, "min_ks"),
    ({"CARTOLA_ENABLE_CACHE": "maybe"}, "enable_cache"),
    ({"CARTOLA_LOG_FEATURES": "nope"}, "log_features"),
    ({"CARTOLA_METADATA_URI": "oracle://x"}, "metadata_uri"),
    ({"CARTOLA_NUMERIC_FEATURES": "pro_target", "CARTOLA_LOG_FEATURES": "",
      "CARTOLA_CLIP_FEATURES": ""}, "pro_target"),
])
def test_bad_values_name_the_field(environ, message):
    with pytest.raises(ConfigError, match=message):
        load_config(environ=environ)


def test_unknown_toml_field_is_an_error(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("min_kss = 0.3\n")
    with pytest.raises(ConfigError, match="min_kss"):
        load_config(path, environ={})
