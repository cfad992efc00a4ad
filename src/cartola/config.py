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

The constants, the file and environment conversions and the checks live in
:mod:`cartola.config_values`; the names other modules use are re-exported here.

This module must stay cheap to import: the Airflow DAG file imports it at parse time.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import typing
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

from cartola.config_values import (AIRFLOW_PROFILES, BEAM_MODES, BUNDLED_CONFIGS, CONFIG_ENV,
                                   DATE_SPECS, DEFAULT_DATASET, ENV_PREFIX, HOME_ENV,
                                   MODEL_FAMILIES, NOTIFY_EVENTS, PLAIN_SQL_NAME, SOURCES,
                                   SPAN_SPEC, ConfigError, bundled_config, check, coerce,
                                   default_project_home, file_values, split_pattern,
                                   worker_count)

__all__ = ["Config", "load_config", "AIRFLOW_PROFILES", "BEAM_MODES", "BUNDLED_CONFIGS",
           "CONFIG_ENV", "DATE_SPECS", "DEFAULT_DATASET", "ENV_PREFIX", "HOME_ENV",
           "MODEL_FAMILIES", "NOTIFY_EVENTS", "PLAIN_SQL_NAME", "SOURCES", "SPAN_SPEC",
           "ConfigError", "bundled_config", "default_project_home", "split_pattern",
           "worker_count"]


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
    # Transform's own TFDV statistics of its input and output (TFX's pre- and post-transform
    # statistics, schema and anomalies artifacts), for those who browse them. Nothing here
    # reads them: StatisticsGen and the gates already check the input. Off, Transform reads
    # its data once less and its Beam workers hold no statistics (docs/SCALE.md).
    transform_statistics: bool = False
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
    # Where "auto" picks multi-processing, the components named in beam_in_memory (for
    # example "Transform,Evaluator", where memory binds) still run in memory in the run's own
    # process: each worker process holds its own TensorFlow, ~0.8 GB before it reads a row
    # (1M rows: peak 2.66 GB against 3.26, 1.5x the pipeline time; docs/SCALE.md). Those in
    # beam_threaded (for example "StatisticsGen") run multi-threaded on as many threads,
    # off by default: Beam's multi-threaded mode with several workers has a known flake
    # (apache/beam#21104) that failed one Transform in four here. Never the Evaluator:
    # multi-threaded, its runner held 24 GB at 1M rows.
    beam_mode: str = "auto"
    beam_workers: int = 0
    beam_multi_processing_mb: float = 32.0
    beam_in_memory: Tuple[str, ...] = ()
    beam_threaded: Tuple[str, ...] = ()
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
    # Each worker runs TensorFlow on serving_threads intra-op and inter-op threads (0: the
    # cores shared out, cores // workers, at least 1), so N workers do not oversubscribe.
    serving_workers: int = 0
    serving_threads: int = 0
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
        """Raise ConfigError naming the first inconsistent setting; else this config."""
        check(self)
        return self

    def replace(self, **changes: Any) -> "Config":
        """A copy with some fields changed (values parsed like environment values)."""
        kinds = _field_types()
        parsed = {}
        for key, value in changes.items():
            if key not in kinds:
                raise ConfigError(f"unknown config field {key!r}")
            parsed[key] = coerce(key, kinds[key], value)
        return dataclasses.replace(self, **parsed).validate()


def _field_types() -> Mapping[str, Any]:
    """Each field's type (the annotations are strings under ``from __future__``)."""
    return typing.get_type_hints(Config, globalns=vars(sys.modules[__name__]))


def load_config(path: Optional[os.PathLike] = None,
                environ: Optional[Mapping[str, str]] = None,
                **overrides: Any) -> Config:
    """Defaults, then the TOML file (``path``, ``$CARTOLA_CONFIG`` or the bundled Cartola
    file), then the environment, then ``overrides``."""
    environ = os.environ if environ is None else environ
    kinds = _field_types()
    path = path or environ.get(CONFIG_ENV) or bundled_config(DEFAULT_DATASET)
    values = file_values(Path(path), kinds)
    for name, kind in kinds.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ and env_name != CONFIG_ENV:
            values[name] = coerce(name, kind, environ[env_name])
    if "project_home" in values:
        values["project_home"] = Path(values["project_home"]).expanduser().resolve()
    config = Config(**values)
    return config.replace(**overrides) if overrides else config.validate()
