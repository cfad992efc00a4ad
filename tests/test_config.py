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
                    'log_features = []\nclip_features = []\n')
    config = load_config(path, environ={"CARTOLA_MIN_AUC": "0.75"})
    assert config.model_name == "other" and config.numeric_features == ("a", "b")
    assert config.min_auc == 0.75


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
