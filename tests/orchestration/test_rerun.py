"""Whether a run would change nothing: the key moves with data, config, schema and the
serving folder, and a database source or caching off always runs."""
from __future__ import annotations

import os
import shutil

from conftest import LATEST_SPAN, SCHEMA, make_config

from cartola.data.spans import resolve_span
from cartola.orchestration import rerun


def _project(tmp_path, **overrides):
    data = tmp_path / "data" / LATEST_SPAN.name
    data.mkdir(parents=True)
    shutil.copy(next(LATEST_SPAN.glob("*.csv")), data)
    config = make_config(tmp_path, data_root=str(tmp_path / "data"), **overrides)
    span = resolve_span(config.data_dir, config.span_pattern)
    metadata = config.sqlite_metadata_path()  # a run leaves ML Metadata behind
    metadata.parent.mkdir(parents=True)
    metadata.touch()
    return config, span


def _key(config, span):
    return rerun.fingerprint(config, span, config.data_dir)


def test_same_inputs_and_serving_folder_are_unchanged(tmp_path):
    config, span = _project(tmp_path)
    (config.model_serving_dir / "1").mkdir(parents=True)
    key = _key(config, span)
    assert rerun.unchanged(config, key) is None  # no run recorded yet
    rerun.record(config, key, span)
    assert rerun.unchanged(config, _key(config, span))["serving"]["served"] == 1
    metadata = config.sqlite_metadata_path()
    metadata.unlink()  # its metadata gone: run again
    assert rerun.unchanged(config, key) is None
    metadata.touch()
    rerun.forget(config)
    assert rerun.unchanged(config, key) is None


def test_data_config_schema_and_serving_changes_each_run_again(tmp_path):
    config, span = _project(tmp_path)
    key = _key(config, span)
    rerun.record(config, key, span)
    assert _key(config.replace(max_epochs=config.max_epochs + 1), span) != key

    csv = next(span.folder.glob("*.csv"))
    stat = csv.stat()
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert _key(config, span) != key
    os.utime(csv, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _key(config, span) == key

    schema = tmp_path / "schema.pbtxt"
    schema.write_text(SCHEMA.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert _key(config.replace(schema_path=schema), span) != key

    (config.model_serving_dir / "1").mkdir(parents=True)  # a version appeared (or a rollback)
    assert rerun.unchanged(config, key) is None


def test_database_source_and_cache_off_always_run(tmp_path):
    config, span = _project(tmp_path, enable_cache=False)
    key = _key(config, span)
    rerun.record(config, key, span)
    assert rerun.unchanged(config, key) is None
    assert not rerun.applies(config.replace(enable_cache=True, source="postgresql",
                                            db_uri="postgresql://u@127.0.0.1:5432/d"))
