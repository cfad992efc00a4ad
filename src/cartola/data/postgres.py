"""The PostgreSQL source: connect without a password in config or logs, list a table's
snapshot dates (spans), check the span a run reads before TFX starts, load the sample.

Light to import (psycopg is imported when a connection is made): the Airflow DAG file's
tasks and ``cartola run`` resolve the span here, so a bad table, column, type, an empty
snapshot or NULL labels end in one line naming them, before Beam starts.
"""
from __future__ import annotations

import datetime as dt
import os
import stat
import urllib.parse
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from cartola.config import PLAIN_SQL_NAME
from cartola.data.checks import check_input_dir, compare_headers, file_header
from cartola.data.labels import LabelCoding
from cartola.data.spans import Span, date_to_span, list_spans, pick_span, span_to_date
from cartola.errors import InputDataError

PASSWORD_ENV = "CARTOLA_DB_PASSWORD"
# TFX's QueryBasedExampleGen placeholder: the driver fills in the span's date as 'YYYYMMDD'.
SPAN_TOKEN = "@span_yyyymmdd_utc"
DATE_PATTERN = "{YYYY}-{MM}-{DD}"  # spans are dates: requested spans parse as YYYY-MM-DD
# PostgreSQL type -> tf.Example value kind (the curated schema's names).
KINDS = {
    "int2": "INT", "int4": "INT", "int8": "INT", "bool": "INT",
    "float4": "FLOAT", "float8": "FLOAT", "numeric": "FLOAT",
    "text": "BYTES", "varchar": "BYTES", "bpchar": "BYTES", "date": "BYTES",
    "timestamp": "BYTES", "timestamptz": "BYTES", "uuid": "BYTES",
}
SQL_TYPES = {"INT": "bigint", "FLOAT": "double precision", "BYTES": "text"}
_SNAPSHOT_TYPES = ("date", "timestamp", "timestamptz")
# A span's size for the Beam runner choice: its rows as text, about a CSV line each.
_SIZE = "coalesce(sum(octet_length(q::text)), 0)"


def redact(uri: str) -> str:
    """``uri`` without a password (for messages and logs)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def database(uri: str) -> str:
    """The database a ``postgresql://`` URI names."""
    return urllib.parse.urlsplit(uri).path.lstrip("/") or "(default)"


def read_password(password_file: str) -> Optional[str]:
    """The password from $CARTOLA_DB_PASSWORD, else ``password_file`` (which must not
    be readable by group or others), else None (libpq's PGPASSWORD or ~/.pgpass apply)."""
    if os.environ.get(PASSWORD_ENV):
        return os.environ[PASSWORD_ENV]
    if not password_file:
        return None
    path = Path(password_file).expanduser()
    try:
        mode = path.stat().st_mode
    except OSError as err:
        raise InputDataError(f"db_password_file {path}: {err.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputDataError(f"db_password_file {path}: readable by others "
                             f"(mode {stat.S_IMODE(mode):o}); chmod 600 it")
    return path.read_text(encoding="utf-8").strip()


def connect(uri: str, password_file: str = ""):
    """A psycopg connection; InputDataError naming the server (never the password)."""
    import psycopg  # pylint: disable=import-outside-toplevel
    password = read_password(password_file)
    try:
        return psycopg.connect(uri, connect_timeout=10,
                               **({"password": password} if password else {}))
    except psycopg.Error as err:
        # libpq's message names host, port, user and database, never the password.
        reason = " ".join(str(err).split())
        raise InputDataError(f"cannot connect to PostgreSQL {redact(uri)}: {reason}") from None


def quote_column(name: str) -> str:
    """A name as an SQL identifier: as is when PostgreSQL would read it unchanged (lower
    case, letters, digits, _), quoted otherwise. Plain names keep the query free of double
    quotes, which ML Metadata's PostgreSQL backend fails to store (see config.py)."""
    if PLAIN_SQL_NAME.fullmatch(name):
        return name
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    return sql.Identifier(name).as_string(None)


def quote_table(name: str) -> str:
    """``schema.table`` or ``table`` as SQL identifiers."""
    return ".".join(quote_column(part) for part in name.split("."))


def default_query(table: str, snapshot_column: str) -> str:
    """The query of one span of ``table`` when ``db_query`` is not set."""
    return (f"SELECT * FROM {quote_table(table)} "
            f"WHERE {quote_column(snapshot_column)} = {SPAN_TOKEN}")


def fill_span(query: str, number: int) -> str:
    """``query`` with the span's date in place of @span_yyyymmdd_utc, as TFX's
    ``example_gen.utils.get_query_for_span`` writes it (tests check they agree)."""
    return query.replace(SPAN_TOKEN, span_to_date(number).strftime("'%Y%m%d'"))


class PostgresSource:
    """Where a config's PostgreSQL rows are, and the checks on one span of them."""

    def __init__(self, config):
        self.config = config
        self.uri = config.db_uri
        self.table = config.db_table
        self.snapshot_column = config.snapshot_column
        self.password_file = (str(config.path(Path(config.db_password_file)))
                              if config.db_password_file else "")
        self.query = config.db_query or default_query(self.table, self.snapshot_column)
        self.where = f"postgresql table {self.table} (column {self.snapshot_column})"

    def connect(self):
        """A connection to the configured database."""
        return connect(self.uri, self.password_file)

    def error(self, problem: str) -> InputDataError:
        """An InputDataError naming the table, its snapshot column and the server."""
        return InputDataError(f"{self.where} at {redact(self.uri)}: {problem}")

    def spans(self, connection) -> List[Span]:
        """The table's snapshot dates as spans, oldest first."""
        import psycopg  # pylint: disable=import-outside-toplevel
        column = quote_column(self.snapshot_column)
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT {column} FROM {quote_table(self.table)} LIMIT 0")
                kind = type_name(connection, cursor.description[0].type_code)
                if kind not in _SNAPSHOT_TYPES:
                    raise self.error(f"snapshot column {self.snapshot_column!r} is {kind}; "
                                     f"spans need a date or timestamp column")
                cursor.execute(f"SELECT DISTINCT {column}::date FROM {quote_table(self.table)} "
                               f"WHERE {column} IS NOT NULL ORDER BY 1")
                days = [row[0] for row in cursor.fetchall()]
        except psycopg.errors.UndefinedTable:
            raise self.error(f"table {self.table!r} does not exist") from None
        except psycopg.errors.UndefinedColumn:
            raise self.error(f"column {self.snapshot_column!r} does not exist in table "
                             f"{self.table!r}") from None
        except psycopg.Error as err:
            raise self.error(" ".join(str(err).split())) from None
        return [self.span(date_to_span(day)) for day in days]

    def span(self, number: int, size: Optional[int] = None) -> Span:
        """The Span record of span ``number`` (no database access). ``size``: the bytes of
        its rows as text (``octet_length(row::text)``, about a CSV line each), so
        ``beam_multi_processing_mb`` means the same for both sources."""
        return Span(number, Path(), span_to_date(number), source=self.where, size=size)

    def columns(self, connection, number: int) -> Dict[str, str]:
        """{column: PostgreSQL type} of the span's query, snapshot column left out."""
        import psycopg  # pylint: disable=import-outside-toplevel
        try:
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT * FROM ({fill_span(self.query, number)}) AS q LIMIT 0")
                found = {col.name: type_name(connection, col.type_code)
                         for col in cursor.description}
        except psycopg.Error as err:
            raise self.error(f"query {self.query!r}: {' '.join(str(err).split())}") from None
        found.pop(self.snapshot_column, None)
        return found

    def check(self, connection, number: int, expected: Dict[str, str], label: str) -> Span:
        """Check span ``number`` against the columns and kinds the schema expects; return it
        with its size. Raises InputDataError naming the column, type or span."""
        found = self.columns(connection, number)
        coding = LabelCoding.from_config(self.config)
        if coding.active:
            expected = {name: kind for name, kind in expected.items() if name != label}
        for name, kind in expected.items():
            if name not in found:
                raise self.error(f"column {name!r} missing (the config and schema use it; "
                                 f"the query gives {sorted(found)})")
            have = KINDS.get(found[name])
            if have is None:
                raise self.error(f"column {name!r} has type {found[name]}, which the "
                                 f"PostgreSQL ExampleGen cannot read; cast it in db_query")
            if have != kind:
                raise self.error(f"column {name!r} is {found[name]} ({have}) in the database, "
                                 f"the schema expects {kind}; fix the column or the schema")
        day = span_to_date(number).isoformat()
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT count(*), count(*) FILTER (WHERE {quote_column(label)} IS NULL), "
                f"{_SIZE} FROM ({fill_span(self.query, number)}) AS q")
            rows, null_labels, size = cursor.fetchone()
        if rows == 0:
            raise self.error(f"span {day}: empty, the query returns no row; nothing to "
                             f"train on")
        if null_labels:
            raise self.error(f"span {day}: column {label!r} (the label) is NULL in "
                             f"{null_labels} of {rows} rows")
        if coding.active and coding.negative:
            self._check_label_values(connection, number, coding)
        return self.span(number, int(size))

    def _check_label_values(self, connection, number: int, coding: LabelCoding) -> None:
        column = quote_column(coding.column)
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {column}::text, count(*) FROM ({fill_span(self.query, number)}) AS q "
                f"WHERE {column}::text NOT IN (%s, %s) GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
                (coding.positive, coding.negative))
            other = cursor.fetchone()
        if other is not None:
            raise self.error(f"span {span_to_date(number).isoformat()}: "
                             f"{coding.problem(other[0])} in {other[1]} rows")


def type_name(connection, oid: int) -> str:
    """PostgreSQL's name of a column type (``int8``, ``text``...)."""
    info = connection.adapters.types.get(oid)
    return info.name if info is not None else f"type oid {oid}"


def expected_columns(config) -> Dict[str, str]:
    """{column: schema kind} the pipeline reads: id, features and label, typed by the
    curated schema (a column the schema does not type is not checked for kind)."""
    kinds = schema_kinds(config.path(config.schema_path))
    names = ([config.id_column] if config.id_column else []) + list(config.all_features) + [
        config.label]
    return {name: kinds[name] for name in names if name in kinds}


def schema_kinds(path: Path) -> Dict[str, str]:
    """{feature: INT | FLOAT | BYTES} of a curated schema file."""
    # pylint: disable=import-outside-toplevel
    from google.protobuf import text_format
    from tensorflow_metadata.proto.v0 import schema_pb2
    try:
        schema = text_format.Parse(path.read_text(encoding="utf-8"), schema_pb2.Schema())
    except (OSError, text_format.ParseError) as err:
        raise InputDataError(f"curated schema {path}: {err}") from None
    return {feature.name: schema_pb2.FeatureType.Name(feature.type)
            for feature in schema.feature}


def resolve(config, requested=None,
            interval: Optional[Tuple[dt.datetime, dt.datetime]] = None) -> Span:
    """The span a run reads from PostgreSQL (same rules as the file source: requested, else
    the latest dated in ``interval``, else the latest), checked."""
    source = PostgresSource(config)
    with source.connect() as connection:
        spans = source.spans(connection)
        if not spans:
            raise source.error("no snapshot in the table; nothing to train on")
        span = pick_span(spans, f"{source.where} at {redact(source.uri)}", DATE_PATTERN,
                         requested, interval)
        return source.check(connection, span.number, expected_columns(config), config.label)


def find(config, number: int) -> Span:
    """Span ``number`` with its size (for nodes after ExampleGen: no checks)."""
    source = PostgresSource(config)
    with source.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"SELECT {_SIZE} FROM ({fill_span(source.query, number)}) AS q")
        return source.span(number, int(cursor.fetchone()[0]))


def load_csv_spans(config, folders: Sequence[Tuple[dt.date, Iterable[Path]]],
                   replace: bool = False) -> List[Tuple[str, int]]:
    """Create ``db_table`` (typed by the curated schema plus the snapshot column) and
    COPY each span's CSV files into it; returns [(date, rows)]. ``replace`` drops the table
    first; otherwise a span already in the table is an error (nothing is loaded twice)."""
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    if config.csv_decimal != ".":
        raise InputDataError("load-sample reads CSV files with '.' decimals (PostgreSQL's "
                             "COPY), but csv_decimal is ','")
    source = PostgresSource(config)
    kinds = schema_kinds(config.path(config.schema_path))
    loaded = []
    with source.connect() as connection:
        header = file_header(next(iter(folders[0][1])), config.csv_delimiter)
        unknown = [name for name in header if name not in kinds]
        if unknown:
            raise InputDataError(f"columns {unknown} are not in the curated schema "
                                 f"{config.schema_path}: cannot type them")
        table = sql.SQL(quote_table(source.table))
        snapshot = sql.Identifier(source.snapshot_column)
        with connection.transaction():
            if replace:
                connection.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            columns = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(SQL_TYPES[kinds[name]]))
                for name in header)
            connection.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({} date NOT NULL, {})")
                               .format(table, snapshot, columns))
            for day, files in folders:
                present = connection.execute(
                    sql.SQL("SELECT count(*) FROM {} WHERE {} = %s").format(table, snapshot),
                    (day,)).fetchone()[0]
                if present:
                    raise source.error(f"span {day} already holds {present} rows; use "
                                       f"--replace to reload the table")
                connection.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} SET DEFAULT {}")
                                   .format(table, snapshot, sql.Literal(day)))
                rows = sum(_copy(connection, table, header, path, config.csv_delimiter)
                           for path in files)
                loaded.append((day.isoformat(), rows))
            connection.execute(sql.SQL("ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT")
                               .format(table, snapshot))
            connection.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} ({})").format(
                sql.Identifier(f"{source.table.split('.')[-1]}_{source.snapshot_column}_idx"),
                table, snapshot))
    return loaded


def load_spans(config, data_dir: Path, replace: bool = False) -> List[Tuple[str, int]]:
    """Load every span folder under ``data_dir`` (``span_pattern``) as one snapshot date
    each (what ``cartola load-sample`` does); returns [(date, rows)]."""
    spans = list_spans(data_dir, config.span_pattern) if data_dir.is_dir() else []
    if not spans or spans[0].date is None:
        raise InputDataError(f"no dated span folders matching {config.span_pattern!r} under "
                             f"{data_dir}: each folder becomes one snapshot date")
    # The checks `cartola run` applies to span folders (file:line: problem), and one header
    # across spans, before anything is written to the database.
    folders = [(span.date, check_input_dir(span.folder, config.csv_delimiter,
                                           config.csv_decimal)) for span in spans]
    first = folders[0][1][0]
    for _, files in folders[1:]:
        problem = compare_headers(first, file_header(first, config.csv_delimiter), files[0],
                                  file_header(files[0], config.csv_delimiter))
        if problem:
            raise InputDataError(problem)
    return load_csv_spans(config, folders, replace)


def _copy(connection, table, header: List[str], path: Path, delimiter: str) -> int:
    """COPY one checked CSV file into ``table``; a value the column type refuses ends in
    InputDataError naming the file with PostgreSQL's line and column."""
    import psycopg  # pylint: disable=import-outside-toplevel
    from psycopg import sql  # pylint: disable=import-outside-toplevel
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, HEADER true, "
                        "DELIMITER {})").format(
        table, sql.SQL(", ").join(sql.Identifier(name) for name in header),
        sql.Literal(delimiter))
    try:
        with connection.cursor() as cursor:
            with cursor.copy(statement) as copy, open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    copy.write(chunk)
            return cursor.rowcount
    except psycopg.Error as err:
        raise InputDataError(f"{path}: {' '.join(str(err).split())}") from None
