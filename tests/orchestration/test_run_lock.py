"""The project home's run lock, with real processes: a holder, a second `cartola run` that
waits or (``--no-wait``) exits 3 naming the holder, the kernel releasing the lock of a holder
killed by SIGKILL, and the lease an Airflow DAG run holds between its tasks."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from cartola.orchestration import run_lock

HOLDER = """
import sys, time
from cartola.orchestration import run_lock
with run_lock.hold(sys.argv[1], sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def _env(home: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(home), PYTHONPATH=str(REPO / "src"))
    return env


@pytest.fixture(name="holder")
def fixture_holder(tmp_path):
    """A process holding ``tmp_path``'s run lock as run ``run-A``; killed at the end."""
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path), "run-A"],
                          stdout=subprocess.PIPE, env=_env(tmp_path), text=True) as proc:
        assert proc.stdout.readline().strip() == "held"
        yield proc
        if proc.poll() is None:
            proc.kill()


def _cartola_run(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "cartola.cli", "run", *args], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env=_env(home), cwd=home)


def test_second_run_with_no_wait_exits_3_naming_the_holder(tmp_path, holder):
    proc = _cartola_run(tmp_path, "--no-wait")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"cartola: project home {tmp_path} is in use by run run-A (")
    assert f"pid {holder.pid} on " in lines[0] and "not waiting (--no-wait)" in lines[0]
    assert "Traceback" not in err


def test_second_run_waits_then_runs_when_the_holder_is_killed(tmp_path, holder):
    """SIGKILL leaves no chance to clean up: the kernel drops the flock with the process."""
    proc = _cartola_run(tmp_path, "--data-root", str(tmp_path / "missing"))
    first = proc.stderr.readline()
    assert "is in use by run run-A (" in first and "waiting for it to finish" in first, first
    time.sleep(1.5)
    assert proc.poll() is None  # still waiting
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    out, rest = proc.communicate(timeout=60)
    # It took the lock and went on to read its (missing) data: the user's mistake, exit 2.
    assert proc.returncode == 2, (out, rest)
    assert "missing" in rest and "in use by" not in rest, rest
    assert run_lock.RunLock(tmp_path).try_acquire(run_lock.holder_record("run-C")) is None


def test_holder_is_recorded_and_cleared(tmp_path):
    lock = run_lock.RunLock(tmp_path)
    with run_lock.hold(tmp_path, "run-B", say=print):
        record = lock.holder()
        assert record["run_id"] == "run-B" and record["pid"] == os.getpid()
        assert {"host", "command", "started"} <= set(record)
        other = run_lock.RunLock(tmp_path)  # another open file: flock excludes it too
        assert "run run-B (" in other.try_acquire(run_lock.holder_record("run-C"))
    assert lock.holder() == {}
    assert lock.try_acquire(run_lock.holder_record("run-C")) is None
    lock.release()


def test_dag_run_lease_spans_its_tasks(tmp_path):
    """Tasks of one DAG run share the lease; `cartola run` and other DAGs wait until the
    DAG run gives it back; a lease past its time, or of the same DAG, is stale."""
    lock = run_lock.RunLock(tmp_path)
    run_a = ("cartola_pro", "manual__1")
    task = run_lock.holder_record("manual__1", "airflow task cartola_pro.Trainer")
    assert lock.try_acquire(task, dag_run=run_a, lease_seconds=3600) is None
    assert lock.try_acquire(task, dag_run=run_a, lease_seconds=3600) is None  # next task
    busy = lock.try_acquire(run_lock.holder_record("run-L"))
    assert busy.startswith("Airflow DAG run cartola_pro/manual__1 (since "), busy
    assert lock.try_acquire(task, dag_run=("other_dag", "r1"), lease_seconds=60) == busy
    with pytest.raises(run_lock.RunLockBusy, match="in use by Airflow DAG run cartola_pro/"):
        lock.acquire(run_lock.holder_record("run-L"), wait=False)
    lines = []
    with pytest.raises(run_lock.RunLockBusy):  # waits, saying so, until told to stop
        lock.acquire(run_lock.holder_record("run-L"), say=_stop_after(lines, 2), poll=0.01,
                     every=0.0)
    assert len(lines) == 2 and "waiting for it to finish" in lines[0]
    # The same DAG runs one run at a time (max_active_runs=1): its next run takes over.
    assert lock.try_acquire(task, dag_run=("cartola_pro", "manual__2"), lease_seconds=60) is None
    assert lock.end_lease(("cartola_pro", "manual__2"))
    assert not lock.end_lease(("cartola_pro", "manual__2"))
    assert lock.try_acquire(run_lock.holder_record("run-L")) is None
    lock.release()
    # A lease left by a DAG run that died without its callbacks ends by itself.
    assert lock.try_acquire(task, dag_run=run_a, lease_seconds=0.2) is None
    assert lock.try_acquire(run_lock.holder_record("run-L")) is not None
    time.sleep(0.3)
    assert lock.try_acquire(run_lock.holder_record("run-L")) is None
    lock.release()


def _stop_after(lines: list, count: int):
    def say(line: str) -> None:
        lines.append(line)
        if len(lines) >= count:
            raise run_lock.RunLockBusy("stop")
    return say
