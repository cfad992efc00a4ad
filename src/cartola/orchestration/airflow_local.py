"""Start, stop and inspect a local Airflow (webserver + scheduler) for this project.

``python -m cartola.orchestration.airflow_local start|stop|status|trigger`` (``make airflow-up`` /
``make airflow-down``).

``AIRFLOW_HOME`` is ``config.airflow_dir`` (``<project home>/airflow`` by default). Its
``dags/`` folder holds a symlink to the package's DAG file (``tfx_pipeline.py``). The first
start writes ``airflow.cfg`` (SQLite, SequentialExecutor, webserver on 127.0.0.1, REST API
with basic auth, generated secret and Fernet keys; mode 0600), migrates the database and
creates the ``admin`` user with a generated password: printed once and kept in
``<airflow home>/admin_password`` (0600). Each server runs in its own session; its process
id goes to ``<airflow home>/run/<name>.pid`` and ``stop`` ends exactly those process groups
and their descendants' groups.
"""
from __future__ import annotations

import argparse
import base64
import dataclasses
import importlib.metadata
import importlib.util
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from cartola.config import ENV_PREFIX, Config, load_config

ADMIN_USER = "admin"
DEFAULT_PORT = 8080
SERVERS = ("scheduler", "webserver")
START_TIMEOUT = 180.0
STOP_TIMEOUT = 15.0


class AirflowLocalError(RuntimeError):
    """The local Airflow could not be started or reached."""


def dag_source() -> Path:
    """The DAG file of the installed package (``src/tfx_pipeline.py`` in a checkout)."""
    spec = importlib.util.find_spec("tfx_pipeline")  # locates it without importing it
    if spec is None or not spec.origin:
        raise AirflowLocalError("module tfx_pipeline not found: is the project installed?")
    return Path(spec.origin)


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
class LocalAirflow:
    """A local Airflow rooted at ``home``."""

    home: Path
    port: int = DEFAULT_PORT
    # Extra environment for every Airflow process (e.g. CARTOLA_* of an explicit config).
    env_extra: Mapping[str, str] = dataclasses.field(default_factory=dict)
    # DAG files linked into the dags folder (default: the package's tfx_pipeline.py).
    dag_files: Sequence[Path] = ()

    @property
    def dags_dir(self) -> Path:
        """Airflow's dags folder."""
        return self.home / "dags"

    @property
    def url(self) -> str:
        """Webserver address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def password_file(self) -> Path:
        """Where the generated admin password is kept (mode 0600)."""
        return self.home / "admin_password"

    def admin_password(self) -> str:
        """The admin password (after the first start)."""
        return self.password_file.read_text(encoding="utf-8").strip()

    def env(self) -> Dict[str, str]:
        """Environment of every Airflow process started here."""
        env = dict(os.environ)
        env.update(self.env_extra)
        env.update({
            "AIRFLOW_HOME": str(self.home),
            "AIRFLOW_CONFIG": str(self.home / "airflow.cfg"),
            # The executor starts each task as `airflow ...` looked up on PATH.
            "PATH": os.pathsep.join([str(venv_bin()), env.get("PATH", "")]),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_dir),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__WEBSERVER__WEB_SERVER_HOST": "127.0.0.1",
            "AIRFLOW__WEBSERVER__WEB_SERVER_PORT": str(self.port),
            "AIRFLOW__WEBSERVER__BASE_URL": self.url,
            "AIRFLOW__API__AUTH_BACKENDS": ("airflow.api.auth.backend.basic_auth,"
                                            "airflow.api.auth.backend.session"),
            "TF_USE_LEGACY_KERAS": "1",
            "PYTHONUNBUFFERED": "1",
        })
        return env

    def airflow(self, *args: str, check: bool = True,
                timeout: float = 300) -> subprocess.CompletedProcess:
        """Run an ``airflow`` CLI command in this home; output captured."""
        result = subprocess.run([str(venv_bin() / "airflow"), *args], env=self.env(),
                                cwd=self.home, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AirflowLocalError(f"airflow {' '.join(args[:2])} failed "
                                    f"({result.returncode}):\n{result.stdout}{result.stderr}")
        return result

    # --- setup ------------------------------------------------------------------------------

    def _write_config(self) -> None:
        """First start only: a minimal airflow.cfg (Airflow's defaults fill in the rest)."""
        path = self.home / "airflow.cfg"
        if path.exists():
            return
        self.home.mkdir(parents=True, exist_ok=True)
        from cryptography.fernet import Fernet  # pylint: disable=import-outside-toplevel
        text = f"""# Written by cartola.orchestration.airflow_local for a local, single-machine Airflow.
# SQLite allows only the SequentialExecutor; see docs/AIRFLOW.md for LocalExecutor/Postgres.
[core]
dags_folder = {self.dags_dir}
executor = SequentialExecutor
load_examples = False
# Local convenience: a new DAG is active at once (its schedule starts running).
dags_are_paused_at_creation = False
fernet_key = {Fernet.generate_key().decode()}

[database]
sql_alchemy_conn = sqlite:///{self.home / 'airflow.db'}

[logging]
base_log_folder = {self.home / 'logs'}

[scheduler]
# Notice new DAG files within 30 s (default 5 min).
dag_dir_list_interval = 30

[webserver]
web_server_host = 127.0.0.1
web_server_port = {self.port}
base_url = {self.url}
secret_key = {secrets.token_urlsafe(32)}
workers = 2
warn_deployment_exposure = False
# The trigger button opens a form with the run's conf JSON (e.g. {{"data_root": "..."}}).
show_trigger_form_if_no_params = True

[api]
auth_backends = airflow.api.auth.backend.basic_auth,airflow.api.auth.backend.session
"""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)

    def _link_dags(self) -> None:
        self.dags_dir.mkdir(parents=True, exist_ok=True)
        for source in self.dag_files or [dag_source()]:
            source = Path(source).resolve()
            link = self.dags_dir / source.name
            if link.is_symlink() and Path(os.readlink(link)) == source:
                continue
            if link.exists() and not link.is_symlink():
                raise AirflowLocalError(f"{link} exists and is not a link; move it away")
            link.unlink(missing_ok=True)
            link.symlink_to(source)

    def _migrate(self) -> None:
        """``airflow db migrate`` when the database is new or Airflow's version changed."""
        # Not `import airflow`: that would set Airflow up in this process (and ~/airflow).
        version = importlib.metadata.version("apache-airflow")
        marker = self.home / ".db_migrated"
        if marker.is_file() and marker.read_text(encoding="utf-8") == version:
            return
        print("airflow db migrate ...", flush=True)
        self.airflow("db", "migrate", timeout=600)
        marker.write_text(version, encoding="utf-8")

    def _create_admin(self) -> Optional[str]:
        """Create the admin user with a generated password; return it (first start only)."""
        if self.password_file.is_file():
            return None
        password = secrets.token_urlsafe(18)
        # A user left by a deleted password file is replaced, so the file stays the truth.
        self.airflow("users", "delete", "--username", ADMIN_USER, check=False)
        self.airflow("users", "create", "--username", ADMIN_USER, "--password", password,
                     "--role", "Admin", "--email", "admin@localhost",
                     "--firstname", "Cartola", "--lastname", "Admin")
        fd = os.open(self.password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(password + "\n")
        return password

    def prepare(self, create_admin: bool = True) -> Optional[str]:
        """Config, DAG link, database and admin user, without starting servers (enough for
        ``airflow dags test``). Returns the admin password when it was just created."""
        self.home.mkdir(parents=True, exist_ok=True)
        self._write_config()
        self._link_dags()
        self._migrate()
        return self._create_admin() if create_admin else None

    # --- processes --------------------------------------------------------------------------

    def _pid_file(self, name: str) -> Path:
        return self.home / "run" / f"{name}.pid"

    def _process(self, name: str):
        """psutil.Process of a server we started and that still runs, else None."""
        import psutil  # pylint: disable=import-outside-toplevel
        path = self._pid_file(name)
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            process = psutil.Process(record["pid"])
            # A recycled pid belongs to another process: its start time differs.
            if abs(process.create_time() - record["create_time"]) > 1e-3:
                return None
            return process if process.status() != psutil.STATUS_ZOMBIE else None
        except (FileNotFoundError, ValueError, KeyError, psutil.Error):
            return None

    def running(self) -> Dict[str, bool]:
        """Which servers are up."""
        return {name: self._process(name) is not None for name in SERVERS}

    def _spawn(self, name: str, args: List[str]) -> None:
        import psutil  # pylint: disable=import-outside-toplevel
        log_dir = self.home / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        self._pid_file(name).parent.mkdir(parents=True, exist_ok=True)
        with open(log_dir / f"{name}.log", "ab") as log_file:
            process = subprocess.Popen(  # pylint: disable=consider-using-with
                [str(venv_bin() / "airflow"), name, *args], env=self.env(), cwd=self.home,
                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True)  # own process group, for stop()
        record = {"pid": process.pid, "create_time": psutil.Process(process.pid).create_time()}
        self._pid_file(name).write_text(json.dumps(record), encoding="utf-8")

    def health(self) -> Optional[dict]:
        """The webserver's /health answer, or None when it does not answer."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        health = None
        while time.monotonic() < deadline:
            health = self.health()
            if health and all(health.get(part, {}).get("status") == "healthy"
                              for part in ("metadatabase", "scheduler")):
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
        password = self.prepare()
        if not up["webserver"]:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    raise AirflowLocalError(f"port {self.port} is in use; choose another "
                                            "with --port")
        # --skip-serve-logs: task logs are local files the webserver reads; the scheduler's
        # log server would listen on all interfaces (port 8793) for nothing.
        for name, args in (("scheduler", ["--skip-serve-logs"]),
                           ("webserver", ["--hostname", "127.0.0.1", "--port", str(self.port)])):
            if not up[name]:
                self._spawn(name, args)
        if wait:
            try:
                self._wait_healthy(timeout)
            except AirflowLocalError:
                self.stop()
                raise
        return {"already_running": False, "password": password, **self.status()}

    def stop(self, timeout: float = STOP_TIMEOUT) -> List[str]:
        """End the servers we started, with every process they started; returns the names
        stopped.

        Task runners and the DAG processor live in process groups of their own, and a
        SequentialExecutor scheduler that gets SIGTERM runs its queued task before it exits,
        so the process tree is re-read while waiting: SIGTERM to each new member, then
        SIGKILL to whatever is left after ``timeout``.
        """
        stopped = []
        for name in SERVERS:  # scheduler first: no new task starts while we stop
            process = self._process(name)
            if process is not None:
                _end_tree(process, timeout)
                stopped.append(name)
            self._pid_file(name).unlink(missing_ok=True)
        return stopped

    # --- REST API ---------------------------------------------------------------------------

    def api(self, method: str, path: str, payload: Optional[dict] = None) -> dict:
        """Call the stable REST API (``/api/v1`` + ``path``) as the admin user."""
        token = base64.b64encode(f"{ADMIN_USER}:{self.admin_password()}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/api/v1{path}", method=method,
            data=None if payload is None else json.dumps(payload).encode(),
            headers={"Authorization": f"Basic {token}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as err:
            raise AirflowLocalError(f"{method} {path}: HTTP {err.code} "
                                    f"{err.read().decode(errors='replace')}") from err

    def trigger(self, dag_id: str, conf: Optional[dict] = None) -> str:
        """Create a DAG run (like the UI's trigger button); returns its run_id."""
        return self.api("POST", f"/dags/{dag_id}/dagRuns", {"conf": conf or {}})["dag_run_id"]

    def run_state(self, dag_id: str, run_id: str) -> str:
        """queued, running, success or failed."""
        return self.api("GET", f"/dags/{dag_id}/dagRuns/{_quote(run_id)}")["state"]

    def wait_run(self, dag_id: str, run_id: str, timeout: float, poll: float = 2.0) -> str:
        """Wait until the run finishes; returns its final state."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(poll)
        raise AirflowLocalError(f"run {run_id} not finished after {timeout:.0f} s")

    def task_instances(self, dag_id: str, run_id: str) -> Dict[str, dict]:
        """Task id -> task instance (state, try_number, pid, start/end dates, duration)."""
        answer = self.api("GET", f"/dags/{dag_id}/dagRuns/{_quote(run_id)}/taskInstances")
        return {ti["task_id"]: ti for ti in answer["task_instances"]}

    def task_log(self, dag_id: str, run_id: str, task_id: str, attempt: int = 1) -> str:
        """Text of a task attempt's local log file ('' before it exists)."""
        path = (self.home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
                / f"task_id={task_id}" / f"attempt={attempt}.log")
        return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""

    def status(self) -> Dict[str, object]:
        """Servers up, URL, health, where the password is."""
        return {"airflow_home": str(self.home), "url": self.url, "running": self.running(),
                "health": self.health(), "user": ADMIN_USER,
                "password_file": str(self.password_file)}


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _end_tree(root, timeout: float) -> None:
    """SIGTERM ``root``'s process groups and descendants (watching for new ones), then
    SIGKILL the survivors."""
    import psutil  # pylint: disable=import-outside-toplevel
    seen: Dict[int, object] = {}
    signalled: set = set()
    deadline = time.monotonic() + timeout
    while True:
        try:
            for member in [root] + root.children(recursive=True):
                seen.setdefault(member.pid, member)
        except psutil.Error:
            pass  # root is gone; keep ending what we saw
        fresh = [member for pid, member in seen.items() if pid not in signalled]
        _signal(fresh, signal.SIGTERM)
        signalled.update(member.pid for member in fresh)
        alive = [member for member in seen.values() if _alive(member)]
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    _signal(alive, signal.SIGKILL)
    psutil.wait_procs(alive, timeout=10)


def _alive(member) -> bool:
    import psutil  # pylint: disable=import-outside-toplevel
    try:
        return member.is_running() and member.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _signal(members: Iterable, sig: int) -> None:
    """Signal each process and its process group (never ours or init's)."""
    import psutil  # pylint: disable=import-outside-toplevel
    own = os.getpgid(0)
    for member in members:
        try:
            group = os.getpgid(member.pid)
            if group not in (0, 1, own):
                os.killpg(group, sig)
            member.send_signal(sig)
        except (ProcessLookupError, PermissionError, psutil.Error):
            pass


def local_airflow(config: Optional[Config] = None, port: int = DEFAULT_PORT,
                  export_config: bool = False, **kwargs) -> LocalAirflow:
    """The project's local Airflow. With ``export_config``, every Airflow process gets
    ``config`` as ``CARTOLA_*`` variables (tests, benchmarks); otherwise they read the
    caller's environment (``CARTOLA_CONFIG`` ...) themselves."""
    config = config or load_config()
    env_extra = dict(kwargs.pop("env_extra", {}))
    if export_config:
        env_extra = {**config_env(config), **env_extra}
    return LocalAirflow(home=config.airflow_dir, port=port, env_extra=env_extra, **kwargs)


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m cartola.orchestration.airflow_local start|stop|status|trigger``."""
    parser = argparse.ArgumentParser(prog="python -m cartola.orchestration.airflow_local",
                                     description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("command", choices=("start", "stop", "status", "trigger"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT",
                                                                       DEFAULT_PORT)),
                        help="webserver port on 127.0.0.1 (default 8080, or $AIRFLOW_PORT)")
    parser.add_argument("--config", help="TOML config file (default: $CARTOLA_CONFIG)")
    parser.add_argument("--data-root", help="trigger: folder of CSV files for this run")
    args = parser.parse_args(argv)
    config = load_config(args.config)
    env_extra = {"CARTOLA_CONFIG": str(Path(args.config).resolve())} if args.config else {}
    local = local_airflow(config, port=args.port, env_extra=env_extra)
    try:
        if args.command == "start":
            result = local.start()
            if result["already_running"]:
                print(f"Airflow is already running: {local.url} (AIRFLOW_HOME={local.home})")
                return 0
            print(f"Airflow is up: {local.url}  (AIRFLOW_HOME={local.home})")
            print(f"DAG folder: {local.dags_dir} -> {dag_source()}")
            if result["password"]:
                print(f"Log in as {ADMIN_USER} with password: {result['password']}\n"
                      f"(shown once; kept in {local.password_file}, mode 0600)")
            else:
                print(f"Log in as {ADMIN_USER}; password in {local.password_file}")
            print("Stop with: python -m cartola.orchestration.airflow_local stop")
        elif args.command == "stop":
            stopped = local.stop()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif args.command == "trigger":
            conf = {"data_root": str(Path(args.data_root).resolve())} if args.data_root else {}
            run_id = local.trigger(config.pipeline_name, conf)
            print(f"triggered {run_id}\n{local.url}/dags/{config.pipeline_name}/grid"
                  f"?dag_run_id={_quote(run_id)}")
        else:
            print(json.dumps(local.status(), indent=2))
            return 0 if all(local.running().values()) else 3
    except AirflowLocalError as err:
        print(f"airflow_local: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
