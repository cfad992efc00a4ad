"""The project's one typed configuration.

Every other module reads its paths, features, thresholds and connection settings from
:func:`load_config`. Precedence, lowest first: the neutral defaults below, a TOML file, then
``CARTOLA_<FIELD>`` environment variables (for example ``CARTOLA_DATA_ROOT=/data/cartola`` or
``CARTOLA_MIN_KS=0.45``), then explicit overrides. Tuple fields take comma-separated values
from the environment; ``beam_args`` is split like a shell command line.

The TOML file is the one passed in, else ``$CARTOLA_CONFIG``, else the bundled Cartola PRO
data set's file (``cartola/configs/cartola.toml``). A data set's file starts from the neutral
defaults (no id column, no clipping, no slice, no segments); ``extends = "cartola"`` (a bundled
name) or ``extends = "path/to/base.toml"`` (relative to the file) starts from another file.

This module must stay cheap to import: the Airflow DAG file imports it at parse time.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shlex
import sys
import typing
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

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


@dataclasses.dataclass(frozen=True)
class Config:  # pylint: disable=too-many-instance-attributes
    """All settings of the pipeline, its runners and its tools.

    Relative paths are resolved against ``project_home``.
    """

    project_home: Path = dataclasses.field(default_factory=default_project_home)
    pipeline_name: str = "tabular"
    model_name: str = "tabular"
    # Where examples come from: "csv" (data_root, span folders) or "postgresql"
    # (cartola.data.postgres: db_table, one span per snapshot_column date).
    source: str = "csv"
    # Data root: one folder per snapshot (span) matched by span_pattern, in TFX's syntax
    # ({YYYY}-{MM}-{DD} or {SPAN}), or a flat folder of *.csv files (one span).
    data_root: Path = Path("data")
    span_pattern: str = "snapshot={YYYY}-{MM}-{DD}/*.csv"
    # Spans the Trainer learns from: this run's and the train_spans - 1 before it that earlier
    # runs ingested (cartola.pipeline.baseline.SpanWindowStrategy).
    train_spans: int = 1
    # Curated schema imported by ImportSchemaGen (see README, "Updating the schema").
    schema_path: Path = Path("schema/schema.pbtxt")
    # Pipeline artifacts, ML Metadata, pushed models, Airflow home.
    pipeline_root: Path = Path("tfx_output/pipelines")
    # "sqlite:///<path>" (relative paths allowed), "mysql://user:password@host:port/db" or
    # "postgresql://user:password@host:port/db". Credentials belong in the environment.
    metadata_uri: str = "sqlite:///tfx_output/metadata/metadata.db"
    serving_dir: Path = Path("serving_model")
    airflow_home: Path = Path("airflow")

    # PostgreSQL source. The URI names host, port, user and database, never a password: the
    # password comes from $CARTOLA_DB_PASSWORD, else db_password_file (0600),
    # else libpq's own PGPASSWORD / ~/.pgpass. db_query (optional) replaces
    # "SELECT * FROM <table> WHERE <snapshot_column> = @span_yyyymmdd_utc"; spans are the
    # table's distinct snapshot_column dates either way, and snapshot_column is not a feature.
    db_uri: str = ""
    db_password_file: str = ""
    db_table: str = ""
    db_query: str = ""
    snapshot_column: str = "snapshot_date"

    # Data layout: a binary label; an optional id column kept out of the features.
    label: str = ""
    # A label exported as text (cartola.data.labels): the value read as 1, and the one read
    # as 0 (empty: any other value). Empty positive_label: the label is already 0/1.
    positive_label: str = ""
    negative_label: str = ""
    id_column: str = ""
    # CSV dialect of the input files: field delimiter, and the decimal mark of numbers
    # ("," for files exported by spreadsheets in Portuguese, German, ...).
    csv_delimiter: str = ","
    csv_decimal: str = "."
    # Raw numeric model features.
    numeric_features: Tuple[str, ...] = ()
    # Subsets of numeric_features: log1p per value (negatives become missing), clip at clip_max.
    log_features: Tuple[str, ...] = ()
    clip_features: Tuple[str, ...] = ()
    clip_max: float = 1.0
    # String features: vocabulary learned by Transform plus OOV buckets.
    categorical_features: Tuple[str, ...] = ()
    oov_buckets: int = 1
    # Raw feature the Evaluator slices metrics by (empty: overall only).
    slice_feature: str = ""
    # CsvExampleGen hash split, train:eval buckets.
    train_buckets: int = 3
    eval_buckets: int = 1
    # Share of positive labels each split must have (validation stops the run outside it);
    # a split with a single class always stops it.
    min_positive_rate: float = 0.0
    max_positive_rate: float = 1.0

    # Drift gate (cartola.validation.drift): Jensen-Shannon divergence of each model feature
    # between this span and the data the served model was trained on, and between this
    # run's train and eval splits (skew), for features whose schema sets no comparator. The
    # thresholds are floors: a small span's threshold is raised to what random samples of
    # its size reach. 0.02 is a normal feature moved by about a third of its standard
    # deviation. The label stops the run when the odds of its positive share move past
    # label_drift_odds_ratio, either way, beyond chance.
    # drift_action "stop" fails the run past a threshold; "warn" trains and reports it.
    drift_threshold: float = 0.02
    skew_threshold: float = 0.02
    label_drift_odds_ratio: float = 1.5
    drift_action: str = "stop"

    # Model (cartola.models): "linear" (logistic regression), "dnn" (hidden_units ReLU
    # layers; 64,32 when none are set), "gbt" (TF-DF gradient-boosted trees), or "auto":
    # train all three on the train split and keep the lowest eval-split log loss.
    model_family: str = "auto"
    hidden_units: Tuple[int, ...] = ()
    # Trees: at most this many boosting rounds (TF-DF stops earlier on its validation
    # share of the train split), trained on at most gbt_max_rows rows (a seeded sample
    # beyond that; 0: every row), since TF-DF holds its training set in memory.
    gbt_num_trees: int = 300
    gbt_max_rows: int = 250_000
    # auto also exports each candidate's SavedModel under the Trainer's model_run folder
    # (candidates/<family>), to compare them on other data (bench/model_quality.py does).
    keep_candidates: bool = False
    learning_rate: float = 0.05
    # 0: derived from the training rows (cartola.models.model.training_plan: 256 for the
    # sample, up to 8192 for millions of rows); > 0: that batch size.
    batch_size: int = 0
    max_epochs: int = 60
    early_stopping_patience: int = 5
    # The Trainer prints one line every epoch_log_every epochs (and the last), not one each.
    epoch_log_every: int = 10
    # TensorFlow threads in the Trainer, intra-op and inter-op (0: every core, TF's default).
    # Applied where the Trainer starts TensorFlow (an Airflow task); `cartola run` shares its
    # process, and TF's runtime, with Transform, so there TF_NUM_INTRAOP_THREADS and
    # TF_NUM_INTEROP_THREADS, set before the run, are what counts.
    trainer_threads: int = 0
    # The transformed train and eval splits stay in memory after the Trainer's first pass
    # (every later epoch and candidate reads them there) when they take at most this many
    # MB (8 bytes per value); 0: read from disk each epoch.
    trainer_cache_mb: float = 1024.0
    seed: int = 42

    # Blessing (the Evaluator). Always: eval log loss below the trivial model's (the eval
    # split's positive share for everyone), and eval AUC above 0.5 by more than
    # auc_noise_z standard errors (Hanley-McNeil); later models may lose at most
    # max_regression of AUC and KS against the served one. min_ks / min_auc are absolute
    # floors on top (0: none); the Cartola config sets KS >= 0.4, AUC >= 0.7.
    min_ks: float = 0.0
    min_auc: float = 0.0
    auc_noise_z: float = 1.96
    max_regression: float = 0.01

    # Report title (empty: "<pipeline_name> run report").
    report_title: str = ""
    # Scoring segments, off unless segment_status_column names a 0/1 column saying who is
    # positive today: positives below churn_threshold get segment_names[0], negatives above
    # conversion_threshold segment_names[1], everyone else segment_names[2].
    segment_status_column: str = ""
    segment_names: Tuple[str, ...] = ("positive_low", "negative_high", "neither")
    churn_threshold: float = 0.5
    conversion_threshold: float = 0.5

    # Orchestration.
    schedule: str = "@weekly"
    retries: int = 2
    # Beam (cartola.orchestration.beam): "auto" runs DirectRunner in memory on one worker
    # below beam_multi_processing_mb of span input and in multi-processing mode on
    # beam_workers processes (0: every core) from there; "in_memory" / "multi_processing"
    # force one. beam_args are added; naming --runner or a DirectRunner mode there wins.
    beam_mode: str = "auto"
    beam_workers: int = 0
    beam_multi_processing_mb: float = 32.0
    beam_args: Tuple[str, ...] = ()
    enable_cache: bool = True
    # Local Airflow (cartola.orchestration.airflow_local, docs/AIRFLOW.md): "sqlite" (embedded:
    # SQLite, LocalExecutor), "postgres" (Airflow's database and ML Metadata on PostgreSQL,
    # LocalExecutor) or "celery" (PostgreSQL, Redis broker, celery_workers Celery workers).
    airflow_profile: str = "sqlite"
    airflow_port: int = 8080
    # Task slots: LocalExecutor workers, or each Celery worker's concurrency.
    airflow_parallelism: int = 4
    celery_workers: int = 2
    # Import TFX once in the scheduler (LocalExecutor) or Celery worker, so tasks forked from
    # it start warm (cartola.orchestration.preload). False keeps those processes light.
    preload_tfx: bool = True

    # `cartola serve` (docs/SERVING.md, docs/RELIABILITY.md): serving_workers processes, each
    # with the model loaded (0: one per core); past serving_max_inflight requests running in a
    # worker, new ones get 503 with Retry-After (0: no limit). Beyond 127.0.0.1 clients need a
    # bearer token: $CARTOLA_SERVING_TOKEN, else the file serving_token_file (mode 600).
    serving_workers: int = 0
    serving_max_inflight: int = 16
    serving_token_file: str = ""
    # Serving observability (cartola.serving, docs/MONITORING.md): the server logs a sample of
    # the rows it scores (request_log_sample of them, 0 turns logging off) to TFRecord files of
    # tf.Examples under request_log_dir/<model_name>, a new file every request_log_rotate_minutes
    # or request_log_max_mb, deleted after request_log_retention_days.
    request_log_dir: Path = Path("request_logs")
    request_log_sample: float = 1.0
    request_log_rotate_minutes: float = 60.0
    request_log_max_mb: float = 64.0
    request_log_retention_days: float = 14.0
    # Monitoring (cartola.monitoring): `cartola monitor` and the monitoring DAG compare the last
    # monitor_window_hours of logged rows with the served version's training data. Feature skew
    # fails past monitor_skew_threshold (Jensen-Shannon; 0: skew_threshold), score drift past
    # monitor_psi_threshold (population stability index) or monitor_ks_threshold (KS statistic
    # against the scores of its eval split). monitor_retrain lets the DAG trigger a training run.
    monitor_dir: Path = Path("monitoring")
    monitor_window_hours: float = 24.0
    monitor_min_rows: int = 100
    monitor_skew_threshold: float = 0.0
    monitor_psi_threshold: float = 0.2
    monitor_ks_threshold: float = 0.1
    monitor_retrain: bool = True
    monitoring_schedule: str = "@daily"
    # Notifications (cartola.monitoring.notify): events in notify_on go to a Slack-compatible
    # webhook (URL from $CARTOLA_WEBHOOK_URL, else the Airflow connection notify_webhook_conn)
    # and, inside Airflow, by email to notify_email through Airflow's [smtp] settings.
    notify_on: Tuple[str, ...] = NOTIFY_EVENTS
    notify_webhook_conn: str = "cartola_webhook"
    notify_email: Tuple[str, ...] = ()
    notify_timeout_seconds: float = 5.0

    def path(self, value: Path) -> Path:
        """Resolve a configured path against the project home."""
        value = Path(value).expanduser()
        return value if value.is_absolute() else self.project_home / value

    def input_dir(self, data_root: Optional[os.PathLike] = None) -> Path:
        """The folder a run reads: ``data_root`` of one run (a CLI flag, a DAG run's conf),
        resolved like every configured path, else the configured :attr:`data_dir`."""
        return self.path(Path(data_root)) if data_root else self.data_dir

    @property
    def data_dir(self) -> Path:
        """Absolute folder of input CSV files."""
        return self.path(self.data_root)

    @property
    def pipeline_dir(self) -> Path:
        """Absolute pipeline root of this pipeline's artifacts."""
        return self.path(self.pipeline_root) / self.pipeline_name

    @property
    def model_serving_dir(self) -> Path:
        """Folder of integer model versions, as TF Serving reads it."""
        return self.path(self.serving_dir) / self.model_name

    @property
    def request_log_path(self) -> Path:
        """Folder of the served model's request logs."""
        return self.path(self.request_log_dir) / self.model_name

    @property
    def airflow_dir(self) -> Path:
        """AIRFLOW_HOME of the project's local Airflow."""
        return self.path(self.airflow_home)

    @property
    def all_features(self) -> Tuple[str, ...]:
        """Every raw model input, numeric first."""
        return tuple(self.numeric_features) + tuple(self.categorical_features)

    def sqlite_metadata_path(self) -> Optional[Path]:
        """Absolute path of the SQLite metadata DB, or None for a server database."""
        if not self.metadata_uri.startswith("sqlite:///"):
            return None
        return self.path(Path(self.metadata_uri[len("sqlite:///"):]))

    def validate(self) -> "Config":
        """Raise ConfigError naming the first inconsistent setting."""
        features = set(self.numeric_features)
        for name in ("log_features", "clip_features"):
            unknown = set(getattr(self, name)) - features
            if unknown:
                raise ConfigError(f"{name} lists {sorted(unknown)}, which are not numeric_features")
        overlap = features & set(self.categorical_features)
        if overlap:
            raise ConfigError(f"features both numeric and categorical: {sorted(overlap)}")
        if not self.label:
            raise ConfigError("no label configured: set label to the 0/1 column to predict")
        if not self.all_features:
            raise ConfigError("no model features configured: set numeric_features and/or "
                              "categorical_features (cartola init proposes them)")
        for name in (self.label, self.id_column):
            if name and (name in features or name in self.categorical_features):
                raise ConfigError(f"column {name!r} is the label or id and cannot be a feature")
        self._validate_data_settings()
        if self.train_buckets < 1 or self.eval_buckets < 1:
            raise ConfigError("train_buckets and eval_buckets must be >= 1")
        if self.airflow_profile not in AIRFLOW_PROFILES:
            raise ConfigError(f"airflow_profile {self.airflow_profile!r}: choose one of "
                              f"{list(AIRFLOW_PROFILES)}")
        if self.airflow_parallelism < 1 or self.celery_workers < 1:
            raise ConfigError("airflow_parallelism and celery_workers must be >= 1")
        if self.metadata_uri.split("://", maxsplit=1)[0] not in ("sqlite", "mysql", "postgresql"):
            raise ConfigError(f"metadata_uri scheme not supported: {self.metadata_uri!r}")
        return self

    def _validate_scale(self) -> None:
        """Beam mode and workers, Trainer batch, threads and progress lines."""
        if self.beam_mode not in BEAM_MODES:
            raise ConfigError(f"beam_mode must be one of {', '.join(BEAM_MODES)}, got "
                              f"{self.beam_mode!r}")
        if self.model_family not in MODEL_FAMILIES:
            raise ConfigError(f"model_family must be one of {', '.join(MODEL_FAMILIES)}, got "
                              f"{self.model_family!r}")
        if self.gbt_num_trees < 1 or self.gbt_max_rows < 0:
            raise ConfigError("gbt_num_trees must be >= 1 and gbt_max_rows >= 0 (0: every row)")
        if self.batch_size < 0:
            raise ConfigError(f"batch_size must be >= 0 (0: derived), got {self.batch_size}")
        if self.trainer_cache_mb < 0:
            raise ConfigError("trainer_cache_mb must be >= 0 (0: no cache)")
        for name in ("beam_workers", "trainer_threads", "serving_workers"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (0: every core), got "
                                  f"{getattr(self, name)}")
        if self.serving_max_inflight < 0:
            raise ConfigError("serving_max_inflight must be >= 0 (0: no limit), got "
                              f"{self.serving_max_inflight}")
        if self.epoch_log_every < 1:
            raise ConfigError(f"epoch_log_every must be >= 1, got {self.epoch_log_every}")

    def _validate_data_settings(self) -> None:
        """The CSV dialect, label share bounds and segment names."""
        if len(self.csv_delimiter) != 1 or self.csv_delimiter in ('"', "\n", "\r"):
            raise ConfigError(f"csv_delimiter must be one character, got {self.csv_delimiter!r}")
        if self.csv_decimal not in (".", ",") or self.csv_decimal == self.csv_delimiter:
            raise ConfigError(f"csv_decimal must be '.' or ',' (and not the delimiter), got "
                              f"{self.csv_decimal!r}")
        if self.negative_label and (not self.positive_label
                                    or self.negative_label == self.positive_label):
            raise ConfigError("negative_label needs a different positive_label")
        if not 0.0 <= self.min_positive_rate <= self.max_positive_rate <= 1.0:
            raise ConfigError("need 0 <= min_positive_rate <= max_positive_rate <= 1")
        if self.train_spans < 1:
            raise ConfigError("train_spans must be >= 1")
        self._validate_source()
        self._validate_scale()
        if self.drift_action not in ("stop", "warn"):
            raise ConfigError(f"drift_action must be 'stop' or 'warn', got {self.drift_action!r}")
        if self.label_drift_odds_ratio <= 1.0:
            raise ConfigError(f"label_drift_odds_ratio must be > 1, got "
                              f"{self.label_drift_odds_ratio}")
        if not 0.0 < self.drift_threshold <= 1.0 or not 0.0 < self.skew_threshold <= 1.0:
            raise ConfigError("drift_threshold and skew_threshold are Jensen-Shannon "
                              "divergences: choose values in (0, 1]")
        try:
            split_pattern(self.span_pattern)
        except ValueError as err:
            raise ConfigError(str(err)) from None
        self._validate_monitoring()
        if len(self.segment_names) != 3:
            raise ConfigError("segment_names needs three names: positive low, negative high, "
                              "neither")

    def _validate_monitoring(self) -> None:
        """Request logging, monitor thresholds and notification events."""
        if not 0.0 <= self.request_log_sample <= 1.0:
            raise ConfigError(f"request_log_sample is a share of rows in [0, 1], got "
                              f"{self.request_log_sample}")
        for name in ("request_log_rotate_minutes", "request_log_max_mb",
                     "request_log_retention_days", "monitor_window_hours",
                     "monitor_psi_threshold", "monitor_ks_threshold",
                     "notify_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 0.0 <= self.monitor_skew_threshold <= 1.0:
            raise ConfigError("monitor_skew_threshold is a Jensen-Shannon divergence in (0, 1] "
                              f"(0: skew_threshold), got {self.monitor_skew_threshold}")
        unknown = sorted(set(self.notify_on) - set(NOTIFY_EVENTS))
        if unknown:
            raise ConfigError(f"notify_on lists {unknown}; events are {list(NOTIFY_EVENTS)}")

    def _validate_source(self) -> None:
        """The data source and, for PostgreSQL, where to read (credentials stay outside)."""
        if self.source not in SOURCES:
            raise ConfigError(f"source must be one of {list(SOURCES)}, got {self.source!r}")
        if self.source != "postgresql":
            return
        if not self.db_uri.startswith(("postgresql://", "postgres://")):
            raise ConfigError("source = 'postgresql' needs db_uri = "
                              "'postgresql://user@host:port/database'")
        import urllib.parse  # pylint: disable=import-outside-toplevel
        if urllib.parse.urlsplit(self.db_uri).password is not None:
            raise ConfigError("db_uri must not hold a password: set "
                              "CARTOLA_DB_PASSWORD or db_password_file (0600)")
        if not self.db_table:
            raise ConfigError("source = 'postgresql' needs db_table (its "
                              "snapshot_column dates are the spans)")
        if self.db_query and "@span_yyyymmdd_utc" not in self.db_query:
            raise ConfigError("db_query must select one span with "
                              "'<column> = @span_yyyymmdd_utc'")
        # ML Metadata's PostgreSQL backend fails to store a string holding a backslash, and
        # the query reaches it JSON-encoded (a double quote becomes \"): measured with MLMD
        # 1.16, put_execution raises InternalError "syntax error at or near".
        if not self.metadata_uri.startswith("postgresql"):
            return
        # The default query quotes a name exactly when it is not plain (data/postgres.py).
        names = self.db_table.split(".") + [self.snapshot_column]
        quoted = not self.db_query and not all(PLAIN_SQL_NAME.fullmatch(n) for n in names)
        if quoted or '"' in self.db_query or "\\" in self.db_query:
            raise ConfigError("ML Metadata on PostgreSQL cannot record a query with double "
                              "quotes or backslashes: use lower-case names without quotes in "
                              "db_table / snapshot_column / db_query, or a view")

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (values parsed like environment values)."""
        fields = {f.name: f for f in dataclasses.fields(self)}
        parsed = {}
        for key, value in changes.items():
            if key not in fields:
                raise ConfigError(f"unknown config field {key!r}")
            parsed[key] = _coerce(fields[key], value)
        return dataclasses.replace(self, **parsed).validate()


def _field_types() -> Mapping[str, Any]:
    return typing.get_type_hints(Config, globalns=vars(sys.modules[__name__]))


def _coerce(field: dataclasses.Field, value: Any) -> Any:
    """Parse a value from TOML or the environment into the field's type."""
    kind = _field_types()[field.name]
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
            if field.name == "beam_args":
                value = shlex.split(value)
            else:
                value = [part.strip() for part in value.split(",") if part.strip()]
        return tuple(item(part) for part in value)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"config field {field.name}: cannot read {value!r} as {kind}") from err


def _read_toml(path: Path) -> Mapping[str, Any]:
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


def _file_values(path: Path, seen: Tuple[Path, ...] = ()) -> dict:
    """Typed values of a config file, after those of the file it ``extends``."""
    fields = {f.name: f for f in dataclasses.fields(Config)}
    if path.resolve() in seen:
        raise ConfigError(f"config file {path}: 'extends' loops back to itself")
    raw = dict(_read_toml(path))
    values: dict = {}
    base = raw.pop("extends", None)
    if base:
        base_path = (bundled_config(base) if "/" not in base and not base.endswith(".toml")
                     else path.parent / Path(base).expanduser())
        values.update(_file_values(base_path, seen + (path.resolve(),)))
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(f"config file {path}: unknown field {key!r}")
        values[key] = _coerce(fields[key], value)
    return values


def load_config(path: Optional[os.PathLike] = None,
                environ: Optional[Mapping[str, str]] = None,
                **overrides: Any) -> Config:
    """Defaults, then the TOML file (``path``, ``$CARTOLA_CONFIG`` or the bundled Cartola
    file), then the environment, then ``overrides``."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Config)}
    path = path or environ.get(CONFIG_ENV) or bundled_config(DEFAULT_DATASET)
    values = _file_values(Path(path))
    for name, field in fields.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ and env_name != CONFIG_ENV:
            values[name] = _coerce(field, environ[env_name])
    if "project_home" in values:
        values["project_home"] = Path(values["project_home"]).expanduser().resolve()
    config = Config(**values)
    return config.replace(**overrides) if overrides else config.validate()
