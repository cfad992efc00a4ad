"""The project's one way into ML Metadata: connection config and store from the config.

Light on purpose (ML Metadata's protos and client only, no TensorFlow or TFX), so the
Airflow helpers can prepare a store before any task runs.
"""
from __future__ import annotations

import time
import urllib.parse

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from cartola.config import Config, ConfigError

# Attempts at opening a store whose schema another process is creating at the same moment.
OPEN_ATTEMPTS = 5


def metadata_connection_config(config: Config) -> metadata_store_pb2.ConnectionConfig:
    """ML Metadata connection from ``config.metadata_uri`` (sqlite, mysql or postgresql)."""
    connection = metadata_store_pb2.ConnectionConfig()
    sqlite_path = config.sqlite_metadata_path()
    if sqlite_path is not None:
        sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        connection.sqlite.filename_uri = str(sqlite_path)
        connection.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE)
        return connection
    url = urllib.parse.urlparse(config.metadata_uri)
    database = url.path.lstrip("/")
    user = urllib.parse.unquote(url.username or "")
    password = urllib.parse.unquote(url.password or "")
    if url.scheme == "mysql":
        connection.mysql.host = url.hostname or "127.0.0.1"
        connection.mysql.port = url.port or 3306
        connection.mysql.database = database
        connection.mysql.user = user
        connection.mysql.password = password
        connection.mysql.create_if_missing = True  # pylint: disable=no-member
    elif url.scheme == "postgresql":
        connection.postgresql.host = url.hostname or "127.0.0.1"
        connection.postgresql.port = str(url.port or 5432)
        connection.postgresql.dbname = database
        connection.postgresql.user = user
        connection.postgresql.password = password
    else:
        raise ConfigError(f"metadata_uri scheme not supported: {config.metadata_uri!r}")
    return connection


def open_metadata_store(config: Config) -> metadata_store.MetadataStore:
    """The project's ML Metadata store, its schema created if missing (as TFX's runners do).

    Parallel tasks of the first run on an empty database all try to create the schema; the
    losers fail ("already exists", or ML Metadata's own "concurrent connection to the empty
    database ... retry") and simply open it a moment later.
    """
    connection = metadata_connection_config(config)
    for attempt in range(1, OPEN_ATTEMPTS + 1):
        try:
            return metadata_store.MetadataStore(connection)
        except RuntimeError as err:
            racing = "already exists" in str(err) or "concurrent connection" in str(err)
            if not racing or attempt == OPEN_ATTEMPTS:
                raise
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")
