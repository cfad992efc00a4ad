"""Local PostgreSQL and Redis servers for the production Airflow profiles.

Each server listens on 127.0.0.1 only, on a port chosen free at first start and kept, with a
password generated then and kept in a 0600 file; nothing has a default password. PostgreSQL
refuses to run as root, so under root it runs as the ``postgres`` user with its data in that
user's home (``/var/lib/postgresql/cartola/<id>``); otherwise under ``<state dir>/postgres``.

Users with servers of their own skip all this: ``CARTOLA_POSTGRES_URI`` (a server URI with
credentials, e.g. ``postgresql://airflow:secret@db:5432``) and ``CARTOLA_REDIS_URL`` in the
environment are used as they are.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path
from typing import Dict, Mapping, Optional

from cartola.orchestration import processes

POSTGRES_URI_ENV = "CARTOLA_POSTGRES_URI"
REDIS_URL_ENV = "CARTOLA_REDIS_URL"
PG_SUPERUSER = "cartola"
# Databases the profiles use on the server: Airflow's own and ML Metadata's.
DATABASES = ("airflow", "mlmd")
START_TIMEOUT = 60.0


class ServiceError(RuntimeError):
    """A server could not be set up, started or reached."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` with mode 0600 (created so, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _pg_bin(name: str) -> str:
    """Path of a PostgreSQL server program (Debian keeps them out of PATH)."""
    found = shutil.which(name) or next(iter(sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None)
    if not found:
        raise ServiceError(f"PostgreSQL's {name} not found: install the server (Debian: "
                           "apt-get install postgresql) or set CARTOLA_POSTGRES_URI")
    return found


@dataclasses.dataclass
class LocalServices:
    """PostgreSQL and Redis servers owned by one Airflow home (``state_dir``)."""

    state_dir: Path

    @property
    def _settings_file(self) -> Path:
        return self.state_dir / "services.json"

    def _settings(self) -> Dict[str, object]:
        """Ports and paths chosen at first start (kept, so URIs stay stable)."""
        if self._settings_file.is_file():
            return json.loads(self._settings_file.read_text(encoding="utf-8"))
        as_root = os.geteuid() == 0
        key = hashlib.sha256(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        pg_data = (Path(pwd.getpwnam("postgres").pw_dir) / "cartola" / key / "data" if as_root
                   else self.state_dir / "postgres" / "data")
        settings = {"pg_port": free_port(), "redis_port": free_port(),
                    "pg_data": str(pg_data), "pg_user": "postgres" if as_root else None}
        write_private(self._settings_file, json.dumps(settings, indent=2))
        return settings

    def _secret(self, name: str) -> str:
        """A generated password kept in ``<state dir>/secrets/<name>`` (0600)."""
        path = self.state_dir / "secrets" / name
        if not path.is_file():
            write_private(path, secrets.token_urlsafe(24) + "\n")
        return path.read_text(encoding="utf-8").strip()

    def pid_files(self, redis: bool) -> Dict[str, Path]:
        """Pid files of the servers this profile starts."""
        names = ["postgres"] + (["redis"] if redis else [])
        return {name: self.state_dir / "run" / f"{name}.pid" for name in names}

    # --- PostgreSQL -------------------------------------------------------------------------

    def postgres_uri(self) -> str:
        """Server URI with credentials (no database): the user's, or the local server's."""
        if os.environ.get(POSTGRES_URI_ENV):
            return os.environ[POSTGRES_URI_ENV].rstrip("/")
        settings = self._settings()
        password = urllib.parse.quote(self._secret("postgres_password"), safe="")
        return f"postgresql://{PG_SUPERUSER}:{password}@127.0.0.1:{settings['pg_port']}"

    def _init_postgres(self, settings: Mapping[str, object]) -> None:
        data = Path(str(settings["pg_data"]))
        if (data / "PG_VERSION").is_file():
            return
        user = settings["pg_user"]
        data.mkdir(parents=True, exist_ok=True)
        pwfile = data.parent / ".pwfile"
        write_private(pwfile, self._secret("postgres_password") + "\n")
        if user:
            shutil.chown(data.parent, str(user), str(user))
            shutil.chown(data, str(user), str(user))
            shutil.chown(pwfile, str(user), str(user))
        os.chmod(data, 0o700)
        command = [_pg_bin("initdb"), "-D", str(data), "-U", PG_SUPERUSER,
                   f"--pwfile={pwfile}", "--auth=scram-sha-256", "-E", "UTF8"]
        if user:
            command = ["runuser", "-u", str(user), "--", *command]
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=False)
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed: {result.stderr.strip()[-500:]}")

    def start_postgres(self) -> Optional[str]:
        """Start the local PostgreSQL (unless a URI is configured) and create the databases.
        Returns the pid file's name when this call started it."""
        started = None
        if not os.environ.get(POSTGRES_URI_ENV):
            settings = self._settings()
            pid_file = self.pid_files(redis=False)["postgres"]
            if processes.find(pid_file) is None:
                self._init_postgres(settings)
                data = str(settings["pg_data"])
                processes.spawn(pid_file, self.state_dir / "logs" / "postgres.log",
                                [_pg_bin("postgres"), "-D", data, "-p", str(settings["pg_port"]),
                                 "-c", "listen_addresses=127.0.0.1",
                                 "-c", f"unix_socket_directories={data}",
                                 "-c", "max_connections=200"],
                                env=os.environ, cwd=Path(data).parent,
                                user=settings["pg_user"] or None)
                started = "postgres"
        self._create_databases(self._wait_postgres())
        return started

    def _wait_postgres(self):
        import psycopg  # pylint: disable=import-outside-toplevel
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                return psycopg.connect(self.postgres_uri() + "/postgres", autocommit=True,
                                       connect_timeout=5)
            except psycopg.OperationalError as err:
                if time.monotonic() > deadline:
                    # psycopg's message names host and port, never the password.
                    raise ServiceError(f"PostgreSQL not reachable: {err}".strip()) from None
                time.sleep(0.5)

    @staticmethod
    def _create_databases(connection) -> None:
        with connection:
            existing = {row[0] for row in connection.execute("SELECT datname FROM pg_database")}
            for name in DATABASES:
                if name not in existing:
                    connection.execute(f'CREATE DATABASE "{name}"')

    def database_uri(self, database: str, driver: str = "") -> str:
        """URI of one database on the server; ``driver`` e.g. ``+psycopg2`` for SQLAlchemy."""
        base = self.postgres_uri()
        return base.replace("postgresql://", f"postgresql{driver}://", 1) + "/" + database

    # --- Redis ------------------------------------------------------------------------------

    def redis_url(self) -> str:
        """Broker URL with the password: the user's, or the local server's."""
        if os.environ.get(REDIS_URL_ENV):
            return os.environ[REDIS_URL_ENV]
        password = urllib.parse.quote(self._secret("redis_password"), safe="")
        return f"redis://:{password}@127.0.0.1:{self._settings()['redis_port']}/0"

    def start_redis(self) -> Optional[str]:
        """Start the local Redis (unless a URL is configured); its password is in a 0600
        config file, not on the command line."""
        if os.environ.get(REDIS_URL_ENV):
            return None
        pid_file = self.pid_files(redis=True)["redis"]
        if processes.find(pid_file) is not None:
            return None
        server = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(server).exists():
            raise ServiceError("redis-server not found: install it (Debian: apt-get install "
                               "redis-server) or set CARTOLA_REDIS_URL")
        settings = self._settings()
        folder = self.state_dir / "redis"
        folder.mkdir(parents=True, exist_ok=True)
        conf = folder / "redis.conf"
        write_private(conf, "\n".join([
            "bind 127.0.0.1", "protected-mode yes", f"port {settings['redis_port']}",
            f"requirepass {self._secret('redis_password')}", f"dir {folder}",
            "daemonize no", 'save ""', "appendonly no", ""]))
        processes.spawn(pid_file, self.state_dir / "logs" / "redis.log", [server, str(conf)],
                        env=os.environ, cwd=folder)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", int(settings["redis_port"]))) == 0:
                    return "redis"
            if time.monotonic() > deadline:
                raise ServiceError(f"Redis did not start; see {self.state_dir}/logs/redis.log")
            time.sleep(0.2)

    def stop(self, timeout: float = 30.0) -> list:
        """Stop the servers this object started; returns their names."""
        return [name for name, path in self.pid_files(redis=True).items()
                if processes.stop(path, timeout)]
