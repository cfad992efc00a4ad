"""Start, stop and inspect the project's local Airflow 3 in one of three profiles.

``python -m cartola.orchestration.airflow_local start|stop|status|trigger [--profile P]``
(``make airflow-up [PROFILE=P]`` / ``make airflow-down``).

Profiles (config ``airflow_profile``):

- ``sqlite``: the embedded default, nothing to install. Airflow's database is SQLite and
  ML Metadata stays on its SQLite file; LocalExecutor runs tasks in parallel.
- ``postgres``: Airflow's database and ML Metadata on PostgreSQL, LocalExecutor. With no
  ``CARTOLA_POSTGRES_URI`` a local server is started (:mod:`cartola.orchestration.services`).
- ``celery``: the ``postgres`` profile plus a Redis broker and ``celery_workers`` Celery
  workers (each named as a host of its own), the Celery result backend on PostgreSQL.

Every start rewrites ``<airflow home>/airflow.cfg`` (mode 0600) for the profile; the
generated secrets it holds (Fernet key, API secret, JWT secret) and the ``admin`` password
are made once and kept in ``<airflow home>/secrets/`` (0600). The admin is a user of the FAB
auth manager (hashed password in Airflow's database); the password is printed once, on the
first start. The API server listens on 127.0.0.1 only. Each process runs in a session of
its own with a pid record under ``run/``; ``stop`` ends exactly those and what they started.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import secrets
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from cartola.config import ENV_PREFIX, Config, ConfigError, load_config
from cartola.orchestration import processes
from cartola.orchestration.airflow_api import AirflowApi, AirflowApiError, quote
from cartola.orchestration.services import (LocalServices, ServiceError, kept_secret,
                                            write_private)

ADMIN_USER = "admin"
START_TIMEOUT = 300.0
STOP_TIMEOUT = 20.0
FAB_AUTH_MANAGER = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
LOCAL_EXECUTOR = "cartola.orchestration.executors.PreloadLocalExecutor"
CELERY_CONFIG = "cartola.orchestration.celery_workers.CELERY_CONFIG"
HOSTNAME_CALLABLE = "cartola.orchestration.celery_workers.worker_hostname"


class AirflowLocalError(RuntimeError):
    """The local Airflow could not be started or reached."""


def dag_source(module: str = "tfx_pipeline") -> Path:
    """A DAG file of the installed package (``src/<module>.py`` in a checkout)."""
    spec = importlib.util.find_spec(module)  # locates it without importing it
    if spec is None or not spec.origin:
        raise AirflowLocalError(f"module {module} not found: is the project installed?")
    return Path(spec.origin)


def dag_sources() -> List[Path]:
    """The package's DAG files: training, then monitoring."""
    return [dag_source("tfx_pipeline"), dag_source("tfx_monitoring")]


def venv_bin() -> Path:
    """The ``bin`` folder of this interpreter's environment (not resolved: a venv's python
    is a symlink to the base interpreter)."""
    return Path(sys.executable).parent


def config_env(config: Config) -> Dict[str, str]:
    """``CARTOLA_<FIELD>`` variables that make :func:`load_config` return ``config``."""
    env = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "beam_args":
            text = shlex.join(value)
        elif isinstance(value, tuple):
            text = ",".join(str(item) for item in value)
        elif isinstance(value, bool):
            text = "true" if value else "false"
        else:
            text = str(value)
        env[ENV_PREFIX + field.name.upper()] = text
    return env


@dataclasses.dataclass
class LocalAirflow:  # pylint: disable=too-many-instance-attributes,too-many-public-methods
    """A local Airflow rooted at ``home`` in one profile."""

    home: Path
    port: int = 8080
    profile: str = "sqlite"
    parallelism: int = 4
    celery_workers: int = 2
    # Extra environment for every Airflow process (e.g. CARTOLA_* of an explicit config).
    env_extra: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # DAG files linked into the dags folder (default: the package's, dag_sources()).
    dag_files: Sequence[Path] = ()

    def __post_init__(self) -> None:
        self.services = LocalServices(self.home)
        self._api: Optional[AirflowApi] = None

    @property
    def dags_dir(self) -> Path:
        """Airflow's dags folder."""
        return self.home / "dags"

    @property
    def url(self) -> str:
        """API server (UI and REST API) address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        """Where the generated admin password is kept (mode 0600)."""
        return self.home / "secrets" / "admin_password"

    def admin_password(self) -> str:
        """The admin password (after the first start)."""
        return self.password_file.read_text(encoding="utf-8").strip()

    @property
    def uses_postgres(self) -> bool:
        """Whether this profile keeps Airflow's database and ML Metadata on PostgreSQL."""
        return self.profile in ("postgres", "celery")

    def metadata_uri(self) -> Optional[str]:
        """ML Metadata's URI in this profile (None: the config's own, SQLite by default)."""
        return self.services.database_uri("mlmd") if self.uses_postgres else None

    def _secret(self, name: str, make) -> str:
        return kept_secret(self.home / "secrets" / name, make)

    def env(self) -> Dict[str, str]:
        """Environment of every Airflow process started here."""
        env = dict(os.environ)
        env.update(self.env_extra)
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW_CONFIG": str(self.home / "airflow.cfg"),
            # Task processes and the CLI look up `airflow` on PATH.
            "PATH": os.pathsep.join([str(venv_bin()), env.get("PATH", "")]),
            "TF_USE_LEGACY_KERAS": "1",
            "GRPC_ENABLE_FORK_SUPPORT": "false",
            # ML Metadata logs every connection at INFO from C++; warnings and errors stay.
            "GLOG_minloglevel": "1",
            "PYTHONUNBUFFERED": "1",
        })
        if self.uses_postgres:
            env[ENV_PREFIX + "METADATA_URI"] = self.metadata_uri()
        return env

    def airflow(self, *args: str, check: bool = True, timeout: float = 300,
                env: Optional[Mapping[str, str]] = None) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command in this home; output captured."""
        result = subprocess.run([str(venv_bin() / "airflow"), *args],
                                env=dict(env or self.env()),
                                cwd=self.home, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AirflowLocalError(f"airflow {' '.join(args[:2])} failed "
                                    f"({result.returncode}):\n{result.stdout[-3000:]}"
                                    f"{result.stderr[-3000:]}")
        return result

    # --- setup ------------------------------------------------------------------------------

    def _database_uri(self) -> str:
        if self.uses_postgres:
            return self.services.database_uri("airflow", "+psycopg2")
        return f"sqlite:///{self.home / 'airflow.db'}"

    def _write_config(self) -> None:
        """airflow.cfg for the profile (Airflow's defaults fill in the rest)."""
        self.home.mkdir(parents=True, exist_ok=True)
        from cryptography.fernet import Fernet  # pylint: disable=import-outside-toplevel
        fernet = self._secret("fernet_key", lambda: Fernet.generate_key().decode())
        executor = "CeleryExecutor" if self.profile == "celery" else LOCAL_EXECUTOR
        celery = ""
        if self.profile == "celery":
            celery = f"""
[celery]
broker_url = {self.services.redis_url()}
result_backend = db+{self.services.database_uri('airflow')}
celery_config_options = {CELERY_CONFIG}
worker_concurrency = {self.parallelism}
"""
        text = f"""# Written by cartola.orchestration.airflow_local at every start \
(profile {self.profile}).
# Edit the project config instead; secrets live in {self.home / 'secrets'}.
[core]
dags_folder = {self.dags_dir}
executor = {executor}
parallelism = {self.parallelism * (self.celery_workers if self.profile == 'celery' else 1)}
load_examples = False
# Local convenience: a new DAG is active at once (its schedule starts running).
dags_are_paused_at_creation = False
fernet_key = {fernet}
auth_manager = {FAB_AUTH_MANAGER}
execution_api_server_url = {self.url}/execution/
hostname_callable = {HOSTNAME_CALLABLE}

[database]
sql_alchemy_conn = {self._database_uri()}

[logging]
base_log_folder = {self.home / 'logs'}

[api]
host = 127.0.0.1
port = {self.port}
base_url = {self.url}
workers = 1
secret_key = {self._secret('api_secret_key', lambda: secrets.token_urlsafe(32))}

[api_auth]
jwt_secret = {self._secret('jwt_secret', lambda: secrets.token_urlsafe(64))}

[dag_processor]
# Notice new DAG files within 30 s.
refresh_interval = 30

[scheduler]
# Airflow's own "standalone" health check needs the scheduler's heartbeat only.
enable_health_check = False
{celery}"""
        write_private(self.home / "airflow.cfg", text)

    def _link_dags(self) -> None:
        self.dags_dir.mkdir(parents=True, exist_ok=True)
        for source in self.dag_files or dag_sources():
            source = Path(source).resolve()
            link = self.dags_dir / source.name
            if link.is_symlink() and Path(os.readlink(link)) == source:
                continue
            if link.exists() and not link.is_symlink():
                raise AirflowLocalError(f"{link} exists and is not a link; move it away")
            link.unlink(missing_ok=True)
            link.symlink_to(source)

    def _migrate(self) -> Optional[str]:
        """``airflow db migrate`` and the admin user, when this profile's database is new or
        Airflow's version changed. Returns the admin password when it was just generated."""
        # Not `import airflow`: that would set Airflow up in this process (and ~/airflow).
        version = importlib.metadata.version("apache-airflow")
        marker = self.home / f".db_migrated-{self.profile}"
        generated = not self.password_file.is_file()
        password = self._secret("admin_password", lambda: secrets.token_urlsafe(18))
        if marker.is_file() and marker.read_text(encoding="utf-8") == version:
            return None
        print(f"airflow db migrate ({self.profile}) ...", flush=True)
        self.airflow("db", "migrate", timeout=900)
        # The user lives in this profile's database; the password file stays the truth.
        self.airflow("users", "delete", "--username", ADMIN_USER, check=False)
        # "--password=...": a generated password may begin with "-" (1 in 64), which argparse
        # would read as an option.
        self.airflow("users", "create", "--username", ADMIN_USER, f"--password={password}",
                     "--role", "Admin", "--email", "admin@localhost",
                     "--firstname", "Cartola", "--lastname", "Admin")
        marker.write_text(version, encoding="utf-8")
        return password if generated else None

    def prepare(self) -> Optional[str]:
        """Services, config, DAG link, database and admin user, without starting Airflow's
        servers (enough for ``airflow dags test``). Returns the admin password when it was
        just created."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "profile").write_text(self.profile, encoding="utf-8")
        try:
            if self.uses_postgres:
                self.services.start_postgres()
            if self.profile == "celery":
                self.services.start_redis()
        except ServiceError as err:
            raise AirflowLocalError(str(err)) from None
        self._write_config()
        self._link_dags()
        if self.uses_postgres:
            # Create ML Metadata's schema now, not in the first run's parallel tasks.
            from cartola.metadata import open_metadata_store  # pylint: disable=import-outside-toplevel
            open_metadata_store(load_config(environ={}, metadata_uri=self.metadata_uri()))
        return self._migrate()

    # --- processes --------------------------------------------------------------------------

    def servers(self) -> Dict[str, List[str]]:
        """Airflow processes of this profile: name -> ``airflow`` arguments."""
        # --skip-serve-logs: task logs are local files the API server reads; a log server
        # would listen on all interfaces (port 8793) for nothing.
        found = {"scheduler": ["scheduler", "--skip-serve-logs"],
                 "dag-processor": ["dag-processor"],
                 "api-server": ["api-server", "--host", "127.0.0.1", "--port", str(self.port)]}
        if self.profile == "celery":
            for index in range(self.celery_workers):
                name = f"worker-{chr(ord('a') + index)}"
                found[f"celery-{name}"] = ["celery", "worker", "--skip-serve-logs",
                                           "--celery-hostname", f"{name}@%h",
                                           "--concurrency", str(self.parallelism)]
        return found

    def _pid_file(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def running(self) -> Dict[str, bool]:
        """Which Airflow processes and services are up."""
        files = {name: self._pid_file(name) for name in self.servers()}
        files.update(self.services.pid_files(redis=self.profile == "celery")
                     if self.uses_postgres else {})
        return processes.running(files)

    def _spawn(self, name: str, args: List[str]) -> None:
        env = self.env()
        if name.startswith("celery-"):
            env["CARTOLA_WORKER_HOSTNAME"] = name[len("celery-"):]
        processes.spawn(self._pid_file(name), self.home / "logs" / f"{name}.log",
                        [str(venv_bin() / "airflow"), *args], env, self.home)

    def health(self) -> Optional[dict]:
        """The API server's ``/api/v2/monitor/health`` answer, or None."""
        try:
            with urllib.request.urlopen(self.url + "/api/v2/monitor/health",
                                        timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = None
        while time.monotonic() < deadline:
            health = self.health()
            if health and all((health.get(part) or {}).get("status") == "healthy"
                              for part in ("metadatabase", "scheduler", "dag_processor")):
                return
            for name, up in self.running().items():
                if not up:
                    raise AirflowLocalError(f"the {name} exited; see {self.home}/logs/{name}.log")
            time.sleep(1)
        raise AirflowLocalError(f"Airflow not healthy after {timeout:.0f} s: {health}; "
                                f"see {self.home}/logs/")

    def start(self, wait: bool = True, timeout: float = START_TIMEOUT) -> Dict[str, object]:
        """Start what is not running; idempotent. Returns a status dict (with the password on
        the first start only)."""
        up = self.running()
        if all(up.values()):
            self._link_dags()
            return {"already_running": True, **self.status()}
        if not up.get("api-server"):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    raise AirflowLocalError(f"port {self.port} is in use; choose another "
                                            "with --port")
        try:
            password = self.prepare()
            for name, args in self.servers().items():
                if not up.get(name):
                    self._spawn(name, args)
            if wait:
                self._wait_healthy(timeout)
        except (AirflowLocalError, KeyboardInterrupt):
            self.stop()
            raise
        return {"already_running": False, "password": password, **self.status()}

    def preloaded(self) -> bool:
        """Whether every process that preloads TFX (the scheduler, or each Celery worker)
        has finished doing so, per its log."""
        names = ([n for n in self.servers() if n.startswith("celery-")]
                 if self.profile == "celery" else ["scheduler"])
        logs = [self.home / "logs" / f"{name}.log" for name in names]
        return all(path.is_file() and "TFX preloaded in" in path.read_text(errors="replace")
                   for path in logs)

    def stop(self, timeout: float = STOP_TIMEOUT) -> List[str]:
        """End the processes we started (the scheduler first, so no new task starts), with
        everything they started; then the services. Returns the names stopped."""
        stopped = [name for name in self.servers()
                   if processes.stop(self._pid_file(name), timeout)]
        return stopped + self.services.stop()

    # --- REST API ---------------------------------------------------------------------------

    @property
    def api(self) -> AirflowApi:
        """REST API v2 client logged in as the admin."""
        if self._api is None:
            self._api = AirflowApi(self.url, ADMIN_USER, self.admin_password())
        return self._api

    def trigger(self, dag_id: str, conf: Optional[dict] = None) -> str:
        """Create a DAG run through the REST API; returns its run_id."""
        return self.api.trigger(dag_id, conf)

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait for a DAG run to finish; its final state."""
        return self.api.wait_run(dag_id, run_id, timeout)

    def task_instances(self, dag_id: str, run_id: str) -> Dict[str, dict]:
        """Task id -> task instance of one DAG run."""
        return self.api.task_instances(dag_id, run_id)

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int = 1) -> str:
        """Text of a task attempt's local log file ('' before it exists)."""
        path = (self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
                / f"task_id={task_id}" / f"attempt={attempt}.log")
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def status(self) -> Dict[str, object]:
        """Processes up, URL, health, where the password is."""
        return {"airflow_home": str(self.home), "profile": self.profile, "url": self.url,
                "running": self.running(), "health": self.health(), "user": ADMIN_USER,
                "password_file": str(self.password_file)}


def local_airflow(config: Optional[Config] = None, export_config: bool = False,
                  **kwargs) -> LocalAirflow:
    """The project's local Airflow for ``config`` (profile, port, parallelism, workers).
    With ``export_config``, every Airflow process gets ``config`` as ``CARTOLA_*``
    variables (tests, benchmarks); otherwise they read the caller's environment."""
    config = config or load_config()
    env_extra = dict(kwargs.pop("env_extra", {}))
    if export_config:
        env_extra = {**config_env(config), **env_extra}
    settings = {"port": config.airflow_port, "profile": config.airflow_profile,
                "parallelism": config.airflow_parallelism,
                "celery_workers": config.celery_workers}
    settings.update(kwargs)
    return LocalAirflow(home=config.airflow_dir, env_extra=env_extra, **settings)


def _print_started(local: LocalAirflow, result: Dict[str, object]) -> None:
    if result["already_running"]:
        print(f"Airflow is already running: {local.url} (AIRFLOW_HOME={local.home})")
        return
    print(f"Airflow ({local.profile}) is up: {local.url}  (AIRFLOW_HOME={local.home})")
    print(f"DAG folder: {local.dags_dir} -> "
          + ", ".join(str(path) for path in local.dag_files or dag_sources()))
    if result["password"]:
        print(f"Log in as {ADMIN_USER} with password: {result['password']}\n"
              f"(shown once; kept in {local.password_file}, mode 0600)")
    else:
        print(f"Log in as {ADMIN_USER}; password in {local.password_file}")
    print("Stop with: make airflow-down")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m cartola.orchestration.airflow_local start|stop|status|trigger``."""
    parser = argparse.ArgumentParser(prog="python -m cartola.orchestration.airflow_local",
                                     description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("command", choices=("start", "stop", "status", "trigger"))
    parser.add_argument("--profile", help="sqlite, postgres or celery (default: config "
                                          "airflow_profile; stop/status: the last started)")
    parser.add_argument("--port", type=int, help="API server port on 127.0.0.1 "
                                                 "(default: config airflow_port, 8080)")
    parser.add_argument("--config", help="TOML config file (default: $CARTOLA_CONFIG)")
    parser.add_argument("--data-root", help="trigger: data root for this run")
    parser.add_argument("--span", help="trigger: the span to train on (default: the latest)")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        overrides = {}
        last = config.airflow_dir / "profile"
        if args.profile:
            overrides["airflow_profile"] = args.profile
        elif args.command != "start" and last.is_file():
            overrides["airflow_profile"] = last.read_text(encoding="utf-8").strip()
        if args.port:
            overrides["airflow_port"] = args.port
        config = config.replace(**overrides) if overrides else config
    except ConfigError as err:
        print(f"airflow_local: {err}", file=sys.stderr)
        return 2
    env_extra = {"CARTOLA_CONFIG": str(Path(args.config).resolve())} if args.config else {}
    local = local_airflow(config, env_extra=env_extra)
    try:
        if args.command == "start":
            _print_started(local, local.start())
        elif args.command == "stop":
            stopped = local.stop()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif args.command == "trigger":
            conf = {"data_root": str(Path(args.data_root).resolve())} if args.data_root else {}
            if args.span:
                conf["span"] = args.span
            run_id = local.trigger(config.pipeline_name, conf)
            print(f"triggered {run_id}\n{local.url}/dags/{config.pipeline_name}/runs/"
                  f"{quote(run_id)}")
        else:
            print(json.dumps(local.status(), indent=2))
            return 0 if all(local.running().values()) else 3
    except (AirflowLocalError, AirflowApiError) as err:
        print(f"airflow_local: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
