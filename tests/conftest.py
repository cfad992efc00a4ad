"""Shared fixtures. End-to-end fixtures run the real pipeline once per session in a
temporary project home (the repo's data and schema, everything else under tmp)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cartola.config import Config, load_config  # pylint: disable=wrong-import-position

REPO = Path(__file__).resolve().parents[1]
# The shipped sample: weekly snapshot folders; the latest holds the 20,000 users the baseline
# and most tests read.
LATEST_SPAN = REPO / "data" / "snapshot=2026-11-16"
SAMPLE_CSV = LATEST_SPAN / "cartola_sample.csv"
SCHEMA = REPO / "schema" / "schema.pbtxt"
PG_DATABASE = "cartola_data"  # the training data's database in PostgreSQL e2e tests
ASSETS = REPO / "assets"  # the README's screenshots, saved by the browser tests
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Without these, Chromium keeps trying to reach Google's hosts on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def make_config(home: Path, **overrides) -> Config:
    """A config rooted at ``home`` that ignores the caller's CARTOLA_* environment."""
    # No daily monitoring runs in tests' local Airflows: tests trigger what they check.
    # One model family: each candidate adds a training; auto's selection has its own tests
    # (test_models, test_gbt_e2e).
    values = {"project_home": str(home), "data_root": str(REPO / "data"),
              "schema_path": str(SCHEMA), "monitoring_schedule": "none",
              "model_family": "linear"}
    values.update(overrides)
    return load_config(environ={}, **values)


@pytest.fixture(scope="module")
def chromium():
    """Path of the system Chromium; missing is a failure in CI, a skip elsewhere."""
    if CHROMIUM is None:
        message = "chromium not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return CHROMIUM


@pytest.fixture(scope="session")
def pushed_project(tmp_path_factory):
    """(config, result) after one real LocalDagRunner run on the sample data."""
    from cartola.orchestration.local import run_local  # pylint: disable=import-outside-toplevel
    config = make_config(tmp_path_factory.mktemp("project"))
    result = run_local(config)
    assert result["pushed_version"] == 1, result
    return config, result


def profile_config(home: Path, profile: str, **overrides) -> Config:
    """A config for a local Airflow in ``profile`` under ``home`` (manual runs only)."""
    from cartola.orchestration.services import free_port  # pylint: disable=import-outside-toplevel
    values = {"schedule": "none", "airflow_profile": profile, "airflow_port": free_port()}
    return make_config(home, **{**values, **overrides})


@pytest.fixture(scope="session")
def postgres_airflow(tmp_path_factory):
    """(config, local Airflow) of the production profile, started once: Airflow's database,
    ML Metadata and the training data (source = postgresql: the shipped spans loaded into
    table cartola_users as ``cartola load-sample --local`` does) on a PostgreSQL server the
    profile starts on 127.0.0.1, LocalExecutor with TFX preloaded. ``config.metadata_uri``
    points at that server's ML Metadata."""
    # pylint: disable=import-outside-toplevel
    from cartola.data.postgres import load_spans
    from cartola.orchestration.airflow_local import local_airflow
    from cartola.orchestration.services import LocalServices
    config = profile_config(tmp_path_factory.mktemp("postgres_project"), "postgres")
    uri, secret = LocalServices(config.airflow_dir).data_location(PG_DATABASE)
    config = config.replace(source="postgresql", db_uri=uri, db_password_file=str(secret),
                            db_table="cartola_users")
    local = local_airflow(config, export_config=True)
    try:
        local.start()
        local.services.create_database(PG_DATABASE)
        load_spans(config, config.data_dir)
        yield config.replace(metadata_uri=local.metadata_uri()), local
    finally:
        local.stop()
        local.services.remove_data()
