"""The project's one typed configuration.

Every other module reads its paths, features, thresholds and connection settings from
:func:`load_config`. Precedence, lowest first: the defaults below, a TOML file named by
``CARTOLA_CONFIG`` (or passed explicitly), then ``CARTOLA_<FIELD>`` environment variables
(for example ``CARTOLA_DATA_ROOT=/data/cartola`` or ``CARTOLA_MIN_KS=0.45``). Tuple fields take
comma-separated values from the environment; ``beam_args`` is split like a shell command line.

This module must stay cheap to import: the Airflow DAG file imports it at parse time.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import typing
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

ENV_PREFIX = "CARTOLA_"
CONFIG_ENV = "CARTOLA_CONFIG"
HOME_ENV = "CARTOLA_HOME"
AIRFLOW_PROFILES = ("sqlite", "postgres", "celery")


class ConfigError(ValueError):
    """A configuration value is missing, malformed or inconsistent."""


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
    pipeline_name: str = "cartola_pro"
    model_name: str = "cartola_pro"
    # Folder of CSV files CsvExampleGen reads (every *.csv in it).
    data_root: Path = Path("data")
    # Curated schema imported by ImportSchemaGen (see README, "Updating the schema").
    schema_path: Path = Path("schema/schema.pbtxt")
    # Pipeline artifacts, ML Metadata, pushed models, Airflow home.
    pipeline_root: Path = Path("tfx_output/pipelines")
    # "sqlite:///<path>" (relative paths allowed), "mysql://user:password@host:port/db" or
    # "postgresql://user:password@host:port/db". Credentials belong in the environment.
    metadata_uri: str = "sqlite:///tfx_output/metadata/metadata.db"
    serving_dir: Path = Path("serving_model")
    airflow_home: Path = Path("airflow")

    # Data layout.
    label: str = "pro_target"
    id_column: str = "id"
    # Raw numeric model features; the defaults are the baseline's 6 final features.
    numeric_features: Tuple[str, ...] = (
        "anos_como_pro", "avg_3", "avg_4", "escalacoes", "norm_escalacao", "tempo_desperd")
    # Subsets of numeric_features: log1p per value (negatives become missing), clip at clip_max.
    log_features: Tuple[str, ...] = ("tempo_desperd",)
    clip_features: Tuple[str, ...] = ("avg_3", "avg_4")
    clip_max: float = 1.0
    # String features: vocabulary learned by Transform plus OOV buckets.
    categorical_features: Tuple[str, ...] = ()
    oov_buckets: int = 1
    # Raw feature the Evaluator slices metrics by (empty: overall only).
    slice_feature: str = "anos_como_pro"
    # CsvExampleGen hash split, train:eval buckets.
    train_buckets: int = 3
    eval_buckets: int = 1

    # Model.
    hidden_units: Tuple[int, ...] = ()
    learning_rate: float = 0.05
    batch_size: int = 256
    max_epochs: int = 60
    early_stopping_patience: int = 5
    seed: int = 42

    # Blessing: absolute floors and allowed regression against the last blessed model.
    min_ks: float = 0.4
    min_auc: float = 0.7
    max_regression: float = 0.01

    # Scoring segments (issue 5): PRO users below churn_threshold are churn risk,
    # non-PRO users above conversion_threshold are conversion targets.
    churn_threshold: float = 0.5
    conversion_threshold: float = 0.5

    # Orchestration.
    schedule: str = "@weekly"
    retries: int = 2
    beam_args: Tuple[str, ...] = ("--direct_running_mode=in_memory", "--direct_num_workers=1")
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

    def path(self, value: Path) -> Path:
        """Resolve a configured path against the project home."""
        value = Path(value).expanduser()
        return value if value.is_absolute() else self.project_home / value

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
        if not self.all_features:
            raise ConfigError("no model features configured")
        for name in (self.label, self.id_column):
            if name in features or name in self.categorical_features:
                raise ConfigError(f"column {name!r} is the label or id and cannot be a feature")
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


def load_config(path: Optional[os.PathLike] = None,
                environ: Optional[Mapping[str, str]] = None,
                **overrides: Any) -> Config:
    """Defaults, then the TOML file (``path`` or ``$CARTOLA_CONFIG``), then the environment,
    then ``overrides``."""
    environ = os.environ if environ is None else environ
    fields = {f.name: f for f in dataclasses.fields(Config)}
    values: dict = {}
    path = path or environ.get(CONFIG_ENV)
    if path:
        for key, value in _read_toml(Path(path)).items():
            if key not in fields:
                raise ConfigError(f"config file {path}: unknown field {key!r}")
            values[key] = _coerce(fields[key], value)
    for name, field in fields.items():
        env_name = ENV_PREFIX + name.upper()
        if env_name in environ and env_name != CONFIG_ENV:
            values[name] = _coerce(field, environ[env_name])
    if "project_home" in values:
        values["project_home"] = Path(values["project_home"]).expanduser().resolve()
    config = Config(**values)
    return config.replace(**overrides) if overrides else config.validate()
