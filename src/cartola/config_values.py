"""The values behind :mod:`cartola.config`: constants, TOML files and their ``extends``, the
conversion of TOML and environment values to field types, and the consistency checks.

Kept apart from the ``Config`` class so that its fields read as the one list of settings.
Like ``config``, cheap to import: the Airflow DAG file imports it at parse time.
"""
from __future__ import annotations

import os
import re
import shlex
import typing
from pathlib import Path
from typing import Any, Mapping, Tuple

ENV_PREFIX = "CARTOLA_"
CONFIG_ENV = "CARTOLA_CONFIG"
HOME_ENV = "CARTOLA_HOME"
AIRFLOW_PROFILES = ("sqlite", "postgres", "celery")
SOURCES = ("csv", "postgresql")
MODEL_FAMILIES = ("auto", "linear", "dnn", "gbt")
BEAM_MODES = ("auto", "in_memory", "multi_threading", "multi_processing")
# Events cartola.monitoring.notify can send (config notify_on).
NOTIFY_EVENTS = ("data_rejected", "drift_stop", "run_failed", "version_pushed", "monitor_alert")
BUNDLED_CONFIGS = Path(__file__).resolve().parent / "configs"
DEFAULT_DATASET = "cartola"


class ConfigError(ValueError):
    """A configuration value is missing, malformed or inconsistent."""


# Span specs of ``span_pattern``'s folder part: a date's parts, or a span number.
DATE_SPECS = ("{YYYY}", "{MM}", "{DD}")
SPAN_SPEC = "{SPAN}"
# An SQL name PostgreSQL reads unchanged, so the query needs no double quotes around it.
PLAIN_SQL_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def split_pattern(pattern: str) -> Tuple[str, str]:
    """(folder template, file glob) of a span pattern; ValueError when it has no span spec
    in its folder part or mixes date and number specs."""
    folder, _, files = pattern.rpartition("/")
    has_date = [spec in folder for spec in DATE_SPECS]
    if any(spec in files for spec in DATE_SPECS + (SPAN_SPEC,)):
        raise ValueError(f"span_pattern {pattern!r}: put the span spec in the folder part")
    if not folder or not files:
        raise ValueError(f"span_pattern {pattern!r}: expected <folder with a span spec>/<glob>")
    if SPAN_SPEC in folder and any(has_date):
        raise ValueError(f"span_pattern {pattern!r}: use {{SPAN}} or a date, not both")
    if SPAN_SPEC not in folder and not all(has_date):
        raise ValueError(f"span_pattern {pattern!r}: needs {{SPAN}} or all of "
                         "{YYYY}, {MM} and {DD}")
    return folder, files


def worker_count(configured: int) -> int:
    """Worker processes for a ``*_workers`` setting: the configured number, or every core (0)."""
    if configured > 0:
        return configured
    usable = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None  # Linux
    return max(len(usable) if usable else (os.cpu_count() or 1), 1)


def default_project_home() -> Path:
    """The checkout this package was installed from (editable install), else ``~/cartola-pro``."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser().resolve()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "src" / "cartola").is_dir():
        return checkout
    return Path.home() / "cartola-pro"


def coerce(name: str, kind: Any, value: Any) -> Any:
    """Parse a value from TOML or the environment into the field's type ``kind``.

    By hand, not with pydantic: its lax mode reads other values than the ones users have
    (bool "on", "t", "y"; int "3.0") and refuses some they rely on (TOML 2 as a bool, 3.7 as
    an int, numbers as strings)."""
    try:
        if kind is Path:
            return Path(value)
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("1", "true", "yes")
            return bool(value)
        if kind in (int, float, str):
            return kind(value)
        item = typing.get_args(kind)[0]  # Tuple[X, ...]
        if isinstance(value, str):
            if name == "beam_args":
                value = shlex.split(value)
            else:
                value = [part.strip() for part in value.split(",") if part.strip()]
        return tuple(item(part) for part in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config field {name}: cannot read {value!r} as {kind}") from err


def read_toml(path: Path) -> Mapping[str, Any]:
    """The raw table of a TOML file; ConfigError when it is missing or malformed."""
    try:
        import tomllib  # pylint: disable=import-outside-toplevel
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # pylint: disable=import-outside-toplevel
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError as err:
        raise ConfigError(f"config file not found: {path}") from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path}: {err}") from err


def bundled_config(name: str) -> Path:
    """Path of a data set's config shipped with the package (``cartola`` for Cartola PRO)."""
    return BUNDLED_CONFIGS / f"{name}.toml"


def file_values(path: Path, kinds: Mapping[str, Any], seen: Tuple[Path, ...] = ()) -> dict:
    """Typed values of a config file, after those of the file it ``extends``; ``kinds`` maps
    each config field to its type."""
    if path.resolve() in seen:
        raise ConfigError(f"config file {path}: 'extends' loops back to itself")
    raw = dict(read_toml(path))
    values: dict = {}
    base = raw.pop("extends", None)
    if base:
        base_path = (bundled_config(base) if "/" not in base and not base.endswith(".toml")
                     else path.parent / Path(base).expanduser())
        values.update(file_values(base_path, kinds, seen + (path.resolve(),)))
    for key, value in raw.items():
        if key not in kinds:
            raise ConfigError(f"config file {path}: unknown field {key!r}")
        values[key] = coerce(key, kinds[key], value)
    return values


# --------------------------------------------------------------------------------------------
# Checks: the first inconsistent setting, named.

def check(config) -> None:
    """Raise ConfigError naming the first inconsistent setting of ``config``."""
    features = set(config.numeric_features)
    for name in ("log_features", "clip_features"):
        unknown = set(getattr(config, name)) - features
        if unknown:
            raise ConfigError(f"{name} lists {sorted(unknown)}, which are not numeric_features")
    overlap = features & set(config.categorical_features)
    if overlap:
        raise ConfigError(f"features both numeric and categorical: {sorted(overlap)}")
    if not config.label:
        raise ConfigError("no label configured: set label to the 0/1 column to predict")
    if not config.all_features:
        raise ConfigError("no model features configured: set numeric_features and/or "
                          "categorical_features (cartola init proposes them)")
    for name in (config.label, config.id_column):
        if name and (name in features or name in config.categorical_features):
            raise ConfigError(f"column {name!r} is the label or id and cannot be a feature")
    _check_data_settings(config)
    if config.train_buckets < 1 or config.eval_buckets < 1:
        raise ConfigError("train_buckets and eval_buckets must be >= 1")
    if config.airflow_profile not in AIRFLOW_PROFILES:
        raise ConfigError(f"airflow_profile {config.airflow_profile!r}: choose one of "
                          f"{list(AIRFLOW_PROFILES)}")
    if config.airflow_parallelism < 1 or config.celery_workers < 1:
        raise ConfigError("airflow_parallelism and celery_workers must be >= 1")
    if config.metadata_uri.split("://", maxsplit=1)[0] not in ("sqlite", "mysql", "postgresql"):
        raise ConfigError(f"metadata_uri scheme not supported: {config.metadata_uri!r}")

def _check_scale(config) -> None:
    """Beam mode and workers, Trainer batch, threads and progress lines."""
    if config.beam_mode not in BEAM_MODES:
        raise ConfigError(f"beam_mode must be one of {', '.join(BEAM_MODES)}, got "
                          f"{config.beam_mode!r}")
    if config.model_family not in MODEL_FAMILIES:
        raise ConfigError(f"model_family must be one of {', '.join(MODEL_FAMILIES)}, got "
                          f"{config.model_family!r}")
    if config.gbt_num_trees < 1 or config.gbt_max_rows < 0:
        raise ConfigError("gbt_num_trees must be >= 1 and gbt_max_rows >= 0 (0: every row)")
    if config.batch_size < 0:
        raise ConfigError(f"batch_size must be >= 0 (0: derived), got {config.batch_size}")
    if config.trainer_cache_mb < 0:
        raise ConfigError("trainer_cache_mb must be >= 0 (0: no cache)")
    for name in ("beam_workers", "trainer_threads", "serving_workers", "serving_threads"):
        if getattr(config, name) < 0:
            raise ConfigError(f"{name} must be >= 0 (0: from the cores), got "
                              f"{getattr(config, name)}")
    if config.serving_max_inflight < 0:
        raise ConfigError("serving_max_inflight must be >= 0 (0: no limit), got "
                          f"{config.serving_max_inflight}")
    if config.epoch_log_every < 1:
        raise ConfigError(f"epoch_log_every must be >= 1, got {config.epoch_log_every}")

def _check_data_settings(config) -> None:
    """The CSV dialect, label share bounds and segment names."""
    if len(config.csv_delimiter) != 1 or config.csv_delimiter in ('"', "\n", "\r"):
        raise ConfigError(f"csv_delimiter must be one character, got {config.csv_delimiter!r}")
    if config.csv_decimal not in (".", ",") or config.csv_decimal == config.csv_delimiter:
        raise ConfigError(f"csv_decimal must be '.' or ',' (and not the delimiter), got "
                          f"{config.csv_decimal!r}")
    if config.negative_label and (not config.positive_label
                                or config.negative_label == config.positive_label):
        raise ConfigError("negative_label needs a different positive_label")
    if not 0.0 <= config.min_positive_rate <= config.max_positive_rate <= 1.0:
        raise ConfigError("need 0 <= min_positive_rate <= max_positive_rate <= 1")
    if config.train_spans < 1:
        raise ConfigError("train_spans must be >= 1")
    _check_source(config)
    _check_scale(config)
    if config.drift_action not in ("stop", "warn"):
        raise ConfigError(f"drift_action must be 'stop' or 'warn', got {config.drift_action!r}")
    if config.label_drift_odds_ratio <= 1.0:
        raise ConfigError(f"label_drift_odds_ratio must be > 1, got "
                          f"{config.label_drift_odds_ratio}")
    if not 0.0 < config.drift_threshold <= 1.0 or not 0.0 < config.skew_threshold <= 1.0:
        raise ConfigError("drift_threshold and skew_threshold are Jensen-Shannon "
                          "divergences: choose values in (0, 1]")
    try:
        split_pattern(config.span_pattern)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    _check_monitoring(config)
    if len(config.segment_names) != 3:
        raise ConfigError("segment_names needs three names: positive low, negative high, "
                          "neither")

def _check_monitoring(config) -> None:
    """Request logging, monitor thresholds and notification events."""
    if not 0.0 <= config.request_log_sample <= 1.0:
        raise ConfigError(f"request_log_sample is a share of rows in [0, 1], got "
                          f"{config.request_log_sample}")
    for name in ("request_log_rotate_minutes", "request_log_max_mb",
                 "request_log_retention_days", "monitor_window_hours",
                 "monitor_psi_threshold", "monitor_ks_threshold",
                 "notify_timeout_seconds"):
        if getattr(config, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(config, name)}")
    if not 0.0 <= config.monitor_skew_threshold <= 1.0:
        raise ConfigError("monitor_skew_threshold is a Jensen-Shannon divergence in (0, 1] "
                          f"(0: skew_threshold), got {config.monitor_skew_threshold}")
    unknown = sorted(set(config.notify_on) - set(NOTIFY_EVENTS))
    if unknown:
        raise ConfigError(f"notify_on lists {unknown}; events are {list(NOTIFY_EVENTS)}")

def _check_source(config) -> None:
    """The data source and, for PostgreSQL, where to read (credentials stay outside)."""
    if config.source not in SOURCES:
        raise ConfigError(f"source must be one of {list(SOURCES)}, got {config.source!r}")
    if config.source != "postgresql":
        return
    if not config.db_uri.startswith(("postgresql://", "postgres://")):
        raise ConfigError("source = 'postgresql' needs db_uri = "
                          "'postgresql://user@host:port/database'")
    import urllib.parse  # pylint: disable=import-outside-toplevel
    if urllib.parse.urlsplit(config.db_uri).password is not None:
        raise ConfigError("db_uri must not hold a password: set "
                          "CARTOLA_DB_PASSWORD or db_password_file (0600)")
    if not config.db_table:
        raise ConfigError("source = 'postgresql' needs db_table (its "
                          "snapshot_column dates are the spans)")
    if config.db_query and "@span_yyyymmdd_utc" not in config.db_query:
        raise ConfigError("db_query must select one span with "
                          "'<column> = @span_yyyymmdd_utc'")
    # ML Metadata's PostgreSQL backend fails to store a string holding a backslash, and
    # the query reaches it JSON-encoded (a double quote becomes \"): measured with MLMD
    # 1.16, put_execution raises InternalError "syntax error at or near".
    if not config.metadata_uri.startswith("postgresql"):
        return
    # The default query quotes a name exactly when it is not plain (data/postgres.py).
    names = config.db_table.split(".") + [config.snapshot_column]
    quoted = not config.db_query and not all(PLAIN_SQL_NAME.fullmatch(n) for n in names)
    if quoted or '"' in config.db_query or "\\" in config.db_query:
        raise ConfigError("ML Metadata on PostgreSQL cannot record a query with double "
                          "quotes or backslashes: use lower-case names without quotes in "
                          "db_table / snapshot_column / db_query, or a view")
