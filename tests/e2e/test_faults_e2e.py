"""Faults under a real run, end to end: the PostgreSQL server stopped while PostgresExampleGen
reads, then a retry once it is back; the disk full while the Pusher copies a new version.

One PostgreSQL server (the production profile's, started on 127.0.0.1 for this module only:
stopping it must not upset an Airflow sharing it) and one project home serve both tests; the
successful retry of the first is the served version the second must leave unchanged. Each
run goes through ``cartola run`` (``cli.main``), as a user would start it.
"""
# pylint: disable=import-outside-toplevel
from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PG_DATABASE, make_config
from cartola.published.versions import model_versions

pytestmark = pytest.mark.e2e

EXAMPLE_GEN = "PostgresExampleGen"
# The span's rows, each after a 0.3 ms pause (OFFSET 0 keeps the pause out of the table scan
# and keeps the rows and columns those of the default query): reading 20,000 rows takes
# ~6 s, a window wide enough to stop the server in.
SLOW_QUERY = ("SELECT * FROM (SELECT * FROM cartola_users "
              "WHERE snapshot_date = @span_yyyymmdd_utc OFFSET 0) AS rows "
              "WHERE pg_sleep(0.0003) IS NOT NULL")
# Config fields the runs set through CARTOLA_* variables (cartola run reads the environment).
FIELDS = ("project_home", "data_root", "schema_path", "monitoring_schedule", "source",
          "db_uri", "db_password_file", "db_table", "db_query", "serving_dir")


@pytest.fixture(name="pg_project", scope="module")
def fixture_pg_project(tmp_path_factory):
    """(config, services): a project home reading table cartola_users (the shipped spans)
    from a PostgreSQL server of its own."""
    from cartola.data.postgres import load_spans
    from cartola.orchestration.services import LocalServices
    config = make_config(tmp_path_factory.mktemp("faults"))
    services = LocalServices(config.airflow_dir)
    try:
        uri, secret = services.data_location(PG_DATABASE)
        services.start_postgres()
        services.create_database(PG_DATABASE)
        config = config.replace(source="postgresql", db_uri=uri, db_password_file=str(secret),
                                db_table="cartola_users", db_query=SLOW_QUERY)
        load_spans(config, config.data_dir)
        yield config, services
    finally:
        services.stop()
        services.remove_data()


def cli_run(config, capsys, **changes) -> tuple:
    """``cartola run`` in this process with ``config`` (plus ``changes``) as its environment;
    (exit code, stdout, stderr, seconds)."""
    from cartola import cli
    values = {name: getattr(config, name) for name in FIELDS}
    values.update(changes)
    capsys.readouterr()
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        for name in [name for name in os.environ if name.startswith("CARTOLA_")]:
            patch.delenv(name)
        for name, value in values.items():
            patch.setenv(f"CARTOLA_{name.upper()}", str(value))
        code = cli.main(["run"])
    out, err = capsys.readouterr()
    return code, out, err, time.monotonic() - started


def cartola_lines(err: str) -> list:
    """The lines ``cartola`` itself wrote to stderr (not TFX's log or progress lines)."""
    return [line for line in err.splitlines() if line.startswith("cartola: ")]


def _postmaster(services):
    """The PostgreSQL server process (under ``runuser`` when the tests run as root)."""
    from cartola.orchestration import processes
    process = processes.find(services.pid_files(redis=False)["postgres"])
    assert process is not None, "PostgreSQL is not running"
    return process if process.name() == "postgres" else process.children()[0]


class StopDuringRead(threading.Thread):
    """Stops the server (fast shutdown, as ``pg_ctl stop -m fast`` and systemd do) once
    PostgresExampleGen's cursor has been fetching rows for ``after`` seconds."""

    def __init__(self, services, after: float = 1.0):
        super().__init__(daemon=True)
        self.services, self.after = services, after
        self.stopped_at = None
        self.error = None

    def run(self) -> None:
        import psycopg
        try:
            with psycopg.connect(self.services.postgres_uri() + "/postgres",
                                 autocommit=True) as conn:
                deadline = time.monotonic() + 600
                while time.monotonic() < deadline:
                    reading = conn.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
                        "AND state = 'active' AND query LIKE 'FETCH%cartola_example_gen%'"
                    ).fetchone()[0]
                    if reading:
                        break
                    time.sleep(0.05)
                else:
                    raise AssertionError("PostgresExampleGen never read")
            time.sleep(self.after)
            server = _postmaster(self.services)
            server.send_signal(signal.SIGINT)
            server.wait(60)
            self.stopped_at = time.monotonic()
        except Exception as err:  # pylint: disable=broad-except
            self.error = err


def _example_gen_files(config) -> list:
    """Data files under PostgresExampleGen's outputs (not TFX's own bookkeeping)."""
    root = config.pipeline_dir / EXAMPLE_GEN
    return sorted(p for p in root.rglob("*") if p.is_file() and ".system" not in p.parts)


@pytest.mark.timeout(1500)
def test_postgres_stopped_during_example_gen_then_retry(pg_project, capsys):
    """The run stops with one line naming the database, registers no Examples and writes
    no rows; the same command succeeds once the server is back."""
    from cartola.metadata import open_metadata_store
    from cartola.registry.history import report_path
    from cartola.registry.runs import load_run
    config, services = pg_project
    stopper = StopDuringRead(services)
    stopper.start()
    code, out, err, seconds = cli_run(config, capsys)
    stopper.join(60)
    assert stopper.error is None and stopper.stopped_at is not None, stopper.error
    print(f"fault run: {seconds:.1f} s")
    assert code == 1, (out, err[-3000:])
    (line,) = cartola_lines(err)
    assert line.startswith("cartola: run failed: PostgresExampleGen: lost PostgreSQL database "
                           f"{PG_DATABASE} at {config.db_uri} while reading the span: "
                           "terminating connection due to administrator command;"), line
    assert "run again once the server is back" in line and "Traceback" not in err
    failed = load_run(config)
    assert dict((n, s) for n, s, _ in failed.nodes).get(EXAMPLE_GEN) == "FAILED", failed.nodes
    store = open_metadata_store(config)
    ours = str(config.pipeline_dir / EXAMPLE_GEN)
    live = [a for a in store.get_artifacts_by_type("Examples")
            if a.uri.startswith(ours) and a.state == a.LIVE]
    assert live == [], "a failed ExampleGen registered Examples as good"
    assert _example_gen_files(config) == []  # the rows never left the scratch files
    assert model_versions(config.model_serving_dir) == []

    services.start_postgres()
    code, out, err, seconds = cli_run(config, capsys)
    print(f"retry run: {seconds:.1f} s")
    assert code == 0, (out, err[-3000:])
    assert "pushed model: " in out
    retry = load_run(config)
    assert retry.run_id != failed.run_id
    states = dict((n, s) for n, s, _ in retry.nodes)
    assert states[EXAMPLE_GEN] == "COMPLETE" and set(states.values()) <= {"COMPLETE", "CACHED"}
    (good,) = [a for a in store.get_artifacts_by_type("Examples")
               if a.uri == retry.output_uri(EXAMPLE_GEN, "examples")]
    assert good.state == good.LIVE and good.custom_properties["row_count"].int_value == 20000
    assert model_versions(config.model_serving_dir) == [1]
    # The report of this run, in a folder of its own.
    assert f"run report: {report_path(config, retry.run_id)}" in out


def _tree(base: Path) -> dict:
    """{relative path: sha256} of every file under ``base`` (hidden ones included)."""
    return {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(base.rglob("*")) if p.is_file()}


@pytest.fixture(name="small_disk")
def fixture_small_disk(tmp_path):
    """A mount point for a tmpfs the test sizes; unmounted at the end."""
    point = tmp_path / "small_disk"
    point.mkdir()
    yield point
    subprocess.run(["umount", str(point)], check=False, capture_output=True)


@pytest.mark.timeout(1500)
def test_disk_full_during_push_leaves_the_served_version(pg_project, small_disk, capsys):
    """serving_dir on a tmpfs with room for the served version and half another: the Pusher
    fails with one line, no partial version is visible, the served version is unchanged."""
    from cartola.registry.runs import load_run
    from cartola.published.served import served_version
    config, _ = pg_project
    if model_versions(config.model_serving_dir) != [1]:  # the retry above did not run
        assert cli_run(config, capsys)[0] == 0
    served = config.model_serving_dir
    used = int(subprocess.run(["du", "-s", "-B1", str(served)], capture_output=True, text=True,
                              check=True).stdout.split()[0])
    size = (used * 3 // 2) // 4096 * 4096
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs",
                            str(small_disk)], capture_output=True, text=True, check=False)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mount.stderr.strip() or 'not root'}): "
                    "the disk-full fault needs a small file system of its own")
    shutil.copytree(served, small_disk / config.model_name)
    before = _tree(small_disk)
    free_before = shutil.disk_usage(small_disk).free
    # Another seed trains another model (Transform and Trainer rerun, ExampleGen is cached);
    # max_regression=1 blesses it whatever its metrics, so the Pusher has to copy it.
    code, out, err, seconds = cli_run(config, capsys, serving_dir=small_disk, seed=43,
                                      max_regression=1.0)
    print(f"disk-full run: {seconds:.1f} s, tmpfs {size / 2**20:.1f} MiB, served version "
          f"{used / 2**20:.1f} MiB")
    assert code == 1, (out, err[-3000:])
    (line,) = cartola_lines(err)
    assert line.startswith(f"cartola: run failed: Pusher: cannot copy the model into "
                           f"{small_disk / config.model_name}: No space left on device "
                           "(the model takes "), line
    assert line.endswith("the partial copy was removed and the served version is unchanged "
                         "(version 1)"), line
    assert "Traceback" not in err
    assert dict((n, s) for n, s, _ in load_run(config).nodes)["Pusher"] == "FAILED"
    assert _tree(small_disk) == before  # no partial version, hidden or not; pins untouched
    assert model_versions(small_disk / config.model_name) == [1]
    assert served_version(small_disk / config.model_name) == 1
    assert shutil.disk_usage(small_disk).free == free_before
