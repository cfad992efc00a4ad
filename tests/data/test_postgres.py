"""The PostgreSQL source against a real server on 127.0.0.1: load-sample, spans, the checks
that stop a run before TFX (one line naming the table, column or span), and the encoder."""
from __future__ import annotations

import datetime as dt
import decimal
import os
import stat
import subprocess
import sys

import pandas as pd
import pytest

from conftest import LATEST_SPAN, REPO, make_config
from cartola import cli
from cartola.data import postgres
from cartola.errors import InputDataError
from cartola.orchestration.services import LocalServices

DATABASE = "cartola_data"
SPANS = ("2026-11-02", "2026-11-09", "2026-11-16")


@pytest.fixture(scope="module", name="server")
def fixture_server(tmp_path_factory):
    """(services, URI without password, password file) of a PostgreSQL server started on
    127.0.0.1 with a generated password, stopped afterwards."""
    services = LocalServices(tmp_path_factory.mktemp("pg"))
    uri, secret = services.data_location(DATABASE)
    try:
        services.start_postgres()
        services.create_database(DATABASE)
        yield services, uri, secret
    finally:
        services.stop()
        services.remove_data()


@pytest.fixture(scope="module", name="loaded")
def fixture_loaded(server, tmp_path_factory):
    """The config of table cartola_users after ``cartola load-sample`` of the shipped spans."""
    _, uri, secret = server
    home = tmp_path_factory.mktemp("home")
    config = make_config(home, source="postgresql", db_uri=uri, db_password_file=str(secret),
                         db_table="cartola_users")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(home), CARTOLA_DATA_ROOT=str(REPO / "data"),
               CARTOLA_SCHEMA_PATH=str(REPO / "schema" / "schema.pbtxt"))
    done = subprocess.run([sys.executable, "-m", "cartola.cli", "load-sample", "--uri", uri],
                          env={**env, "CARTOLA_DB_PASSWORD_FILE": str(secret)},
                          capture_output=True, text=True, check=False, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "2026-11-16: 20,000 rows" in done.stdout
    assert "export CARTOLA_SOURCE=postgresql" in done.stdout
    return config


def _sql(config, statement: str, params=None):
    with postgres.connect(config.db_uri, config.db_password_file) as connection:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else None


def test_fill_span_matches_tfx():
    from tfx.components.example_gen import utils  # pylint: disable=import-outside-toplevel
    query = "SELECT * FROM t WHERE d = @span_yyyymmdd_utc"
    number = postgres.date_to_span(dt.date(2026, 11, 16))
    assert postgres.fill_span(query, number) == utils.get_query_for_span(query, number)
    assert postgres.fill_span(query, number).endswith("d = '20261116'")


def test_load_sample_types_rows_and_spans(loaded):
    config = loaded
    types = dict(_sql(config, "SELECT column_name, data_type FROM information_schema.columns "
                              "WHERE table_name = 'cartola_users'"))
    assert types["snapshot_date"] == "date"
    assert (types["anos_como_pro"], types["avg_3"], types["pixels"]) == (
        "bigint", "double precision", "text")
    counts = dict(_sql(config, "SELECT snapshot_date::text, count(*) FROM cartola_users "
                               "GROUP BY 1"))
    for day in SPANS:
        csv_rows = len(pd.read_csv(REPO / "data" / f"snapshot={day}" / "cartola_sample.csv"))
        assert counts[day] == csv_rows
    # Empty CSV cells became NULL, not 0 or '': the same missing values as the files.
    frame = pd.read_csv(LATEST_SPAN / "cartola_sample.csv")
    nulls = _sql(config, "SELECT count(*) - count(tempo_desperd) FROM cartola_users "
                         "WHERE snapshot_date = '2026-11-16'")[0][0]
    assert nulls == frame["tempo_desperd"].isna().sum() > 0
    with pytest.raises(InputDataError, match="span 2026-11-02 already holds 19600 rows"):
        postgres.load_csv_spans(config, [(dt.date(2026, 11, 2),
                                          [REPO / "data" / "snapshot=2026-11-02" /
                                           "cartola_sample.csv"])])


def test_load_refuses_an_empty_span_folder(loaded, tmp_path):
    (tmp_path / "snapshot=2026-11-30").mkdir()
    with pytest.raises(InputDataError, match="no \\*.csv file in input folder .*2026-11-30"):
        postgres.load_spans(loaded, tmp_path)


def test_resolve_latest_requested_and_interval(loaded):
    latest = postgres.resolve(loaded)
    assert (latest.date, latest.source) == (dt.date(2026, 11, 16),
                                            "postgresql table cartola_users (column "
                                            "snapshot_date)")
    assert latest.size > 1_000_000  # bytes of the span's rows, for the Beam runner choice
    assert postgres.resolve(loaded, "2026-11-09").date == dt.date(2026, 11, 9)
    week = (dt.datetime(2026, 11, 1), dt.datetime(2026, 11, 8))
    assert postgres.resolve(loaded, interval=week).date == dt.date(2026, 11, 2)
    with pytest.raises(InputDataError, match=r"span 2026-11-23 not found under postgresql "
                                             r"table cartola_users .*available: 3 spans"):
        postgres.resolve(loaded, "2026-11-23")


def _copy_table(config, name: str, change: str = "") -> None:
    _sql(config, f"DROP TABLE IF EXISTS {name}")
    _sql(config, f"CREATE TABLE {name} AS SELECT * FROM cartola_users")
    if change:
        _sql(config, change.format(table=name))


def _run(monkeypatch, capsys, config, **env) -> str:
    """``cartola run`` with ``config`` (plus ``env``) in the environment: its exit code must
    be 2 and its stderr one line, returned."""
    for key in [k for k in os.environ if k.startswith("CARTOLA_")]:
        monkeypatch.delenv(key)
    values = {"home": config.project_home, "data_root": config.data_dir,
              "schema_path": config.path(config.schema_path), "source": "postgresql",
              "db_uri": config.db_uri, "db_table": config.db_table,
              "db_password_file": config.db_password_file}
    values.update(env)
    for key, value in values.items():
        if key == "password":
            monkeypatch.setenv(postgres.PASSWORD_ENV, value)
        else:
            monkeypatch.setenv(f"CARTOLA_{key.upper()}", str(value))
    assert cli.main(["run"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_bad_inputs_stop_before_tfx_with_one_line(loaded, server, monkeypatch, capsys,
                                                  tmp_path):
    config = loaded
    real_password = server[2].read_text(encoding="utf-8").strip()
    err = _run(monkeypatch, capsys, config, password="not-the-password")
    assert "password authentication failed" in err and "not-the-password" not in err
    assert real_password not in err
    err = _run(monkeypatch, capsys, config, db_uri=config.db_uri.replace(
        config.db_uri.split(":")[-1].split("/")[0], "1"))
    assert "cannot connect to PostgreSQL postgresql://cartola@127.0.0.1:1/" in err
    assert "table 'missing_table' does not exist" in _run(monkeypatch, capsys, config,
                                                          db_table="missing_table")
    assert "column 'snap' does not exist in table 'cartola_users'" in _run(
        monkeypatch, capsys, config, snapshot_column="snap")

    _copy_table(config, "no_avg_3", "ALTER TABLE {table} DROP COLUMN avg_3")
    assert "column 'avg_3' missing" in _run(monkeypatch, capsys, config, db_table="no_avg_3")
    _copy_table(config, "retyped", "ALTER TABLE {table} ALTER COLUMN anos_como_pro TYPE text")
    assert ("column 'anos_como_pro' is text (BYTES) in the database, the schema expects INT"
            in _run(monkeypatch, capsys, config, db_table="retyped"))
    _copy_table(config, "null_labels", "UPDATE {table} SET pro_target = NULL WHERE id % 100 = 0 "
                                       "AND snapshot_date = '2026-11-16'")
    assert ("span 2026-11-16: column 'pro_target' (the label) is NULL in 200 of 20000 rows"
            in _run(monkeypatch, capsys, config, db_table="null_labels"))
    empty = ("SELECT * FROM cartola_users WHERE snapshot_date = @span_yyyymmdd_utc "
             "AND id < 0")
    assert "span 2026-11-16: empty, the query returns no row" in _run(
        monkeypatch, capsys, config, db_query=empty)

    readable = tmp_path / "password"
    readable.write_text(real_password, encoding="utf-8")
    readable.chmod(0o644)
    assert "readable by others (mode 644); chmod 600 it" in _run(
        monkeypatch, capsys, config, db_password_file=readable)
    assert stat.S_IMODE(server[2].stat().st_mode) == 0o600


def test_config_refuses_a_password_in_the_uri(tmp_path):
    from cartola.config import ConfigError  # pylint: disable=import-outside-toplevel
    with pytest.raises(ConfigError, match="db_uri must not hold a password"):
        make_config(tmp_path, source="postgresql", db_table="t",
                    db_uri="postgresql://cartola:secret@127.0.0.1:5432/db")
    with pytest.raises(ConfigError, match="needs db_table"):
        make_config(tmp_path, source="postgresql", db_table="",
                    db_uri="postgresql://u@127.0.0.1/db")
    assert postgres.redact("postgresql://u:secret@h:1/d") == "postgresql://u:***@h:1/d"


def test_encode_types_and_missing_values_like_csv_example_gen():
    import tensorflow as tf  # pylint: disable=import-outside-toplevel
    from cartola.data.postgres_example_gen import encode  # pylint: disable=import-outside-toplevel
    rows = [(3, decimal.Decimal("0.25"), "São Paulo", True, dt.date(2026, 11, 16)),
            (None, None, None, None, None)]
    names = ["anos", "avg", "city", "flag", "day"]
    first, second = map(tf.train.Example.FromString,
                        encode(rows, names, ["INT", "FLOAT", "BYTES", "INT", "BYTES"]))
    expected = tf.train.Example()
    features = expected.features.feature
    features["anos"].int64_list.value.append(3)
    features["avg"].float_list.value.append(0.25)
    features["city"].bytes_list.value.append("São Paulo".encode("utf-8"))
    features["flag"].int64_list.value.append(1)
    features["day"].bytes_list.value.append(b"2026-11-16")
    assert first == expected
    # NULL: the feature with an empty value list of its type, as CsvExampleGen writes an
    # empty cell (so a row hashes to the same split from either source).
    assert second.features.feature["anos"].HasField("int64_list")
    assert not second.features.feature["anos"].int64_list.value
    assert second.features.feature["avg"].HasField("float_list")
    assert not second.features.feature["city"].bytes_list.value


def test_queries_ml_metadata_on_postgresql_cannot_store_are_refused(tmp_path):
    from cartola.config import ConfigError  # pylint: disable=import-outside-toplevel
    settings = {"source": "postgresql", "db_uri": "postgresql://u@127.0.0.1/db",
                "metadata_uri": "postgresql://u@127.0.0.1/mlmd"}
    make_config(tmp_path, db_table="public.cartola_users", **settings)
    for bad in ({"db_table": "Users"}, {"snapshot_column": "snapshot date"},
                {"db_query": 'SELECT * FROM "T" WHERE d = @span_yyyymmdd_utc'}):
        with pytest.raises(ConfigError, match="ML Metadata on PostgreSQL cannot record"):
            make_config(tmp_path, **{"db_table": "t", **settings, **bad})
    # SQLite ML Metadata stores any query; the names are quoted in SQL as needed.
    config = make_config(tmp_path, **{**settings, "metadata_uri": "sqlite:///m.db",
                                      "db_table": "Users"})
    assert postgres.PostgresSource(config).query == (
        'SELECT * FROM "Users" WHERE snapshot_date = @span_yyyymmdd_utc')


def test_load_names_the_file_and_column_a_value_does_not_fit(loaded, tmp_path):
    folder = tmp_path / "snapshot=2026-11-30"
    folder.mkdir()
    lines = (LATEST_SPAN / "cartola_sample.csv").read_text(encoding="utf-8").splitlines()[:3]
    header = lines[0].split(",")
    row = lines[2].split(",")
    row[header.index("anos_como_pro")] = "3.5"  # a float in a bigint column
    (folder / "part.csv").write_text("\n".join([lines[0], lines[1], ",".join(row)]) + "\n",
                                     encoding="utf-8")
    with pytest.raises(InputDataError, match=r"part\.csv: .*bigint.*\"3\.5\".*line 3, "
                                             r"column anos_como_pro"):
        postgres.load_spans(loaded, tmp_path)
    assert _sql(loaded, "SELECT count(*) FROM cartola_users WHERE snapshot_date = "
                        "'2026-11-30'")[0][0] == 0  # the transaction rolled back


def test_example_gen_writes_the_csv_example_gens_examples_and_splits(loaded, tmp_path):
    """The same rows from the table and from the span's CSV file: the same examples in the
    same splits, without Beam and through TFX's Beam path."""
    # pylint: disable=import-outside-toplevel
    from tfx.proto import example_gen_pb2
    from tfx.types import standard_component_specs as specs
    from tfx.utils import proto_utils
    from cartola.data import csv_example_gen, postgres_example_gen
    from test_csv_example_gen import written
    output = example_gen_pb2.Output()
    output.split_config.splits.add(name="train", hash_buckets=3)
    output.split_config.splits.add(name="eval", hash_buckets=1)
    source = postgres.PostgresSource(loaded)

    def props(pattern, custom):
        return {specs.INPUT_CONFIG_KEY: proto_utils.proto_to_json(example_gen_pb2.Input(
                    splits=[example_gen_pb2.Input.Split(name="single_split", pattern=pattern)])),
                specs.OUTPUT_CONFIG_KEY: proto_utils.proto_to_json(output),
                specs.OUTPUT_DATA_FORMAT_KEY: example_gen_pb2.FORMAT_TF_EXAMPLE,
                specs.CUSTOM_CONFIG_KEY: proto_utils.proto_to_json(custom),
                specs.INPUT_BASE_KEY: str(LATEST_SPAN)}

    query = postgres.fill_span(source.query, postgres.date_to_span(dt.date(2026, 11, 16)))
    table = props(query, postgres_example_gen.source_config(
        loaded.db_uri, loaded.db_password_file, [loaded.snapshot_column]))
    ours, artifact = written(postgres_example_gen.Executor(), table, str(tmp_path / "pg"), False)
    through_beam, _ = written(postgres_example_gen.Executor(), table, str(tmp_path / "b"), True)
    from_csv, _ = written(csv_example_gen.Executor(),
                          props("*.csv", csv_example_gen.dialect_config(",", ".")),
                          str(tmp_path / "csv"), False)
    assert ours == through_beam == from_csv
    assert artifact.get_int_custom_property("row_count") == 20_000
    assert artifact.get_string_custom_property("query") == query
    assert 0.7 < len(ours["train"]) / 20_000 < 0.8
