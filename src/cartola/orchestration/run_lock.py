"""One pipeline run per project home at a time: a kernel lock, and a lease for DAG runs.

Two runs on one home would share its ML Metadata store, pipeline root and serving folder: one
could push a version the other's Evaluator never compared with. So every run takes the home's
lock, ``<project_home>/.cartola/run.lock``:

- ``cartola run`` holds an exclusive ``fcntl.flock`` on it from start to report. The kernel
  drops the lock when the holder dies (kill -9, OOM), so a crash never leaves it stuck. The
  file records who holds it (pid, host, command, start time, run id) for the one line a
  waiting run prints.
- An Airflow DAG run spans many task processes, none alive from the first task to the last,
  so it holds a *lease* instead (``run.lease``, written under the flock): its first task takes
  it, later tasks of the same DAG run pass, and the last task or the DAG's end callbacks give
  it back. Tasks of one DAG run still run in parallel; a ``cartola run`` or another DAG run
  waits until the lease is given back, so nothing interleaves with a DAG run between its
  tasks either. A lease left by a DAG run that died without its callbacks ends by itself
  after ``lease_seconds`` (the DAG's ``dagrun_timeout``: Airflow has failed that run by then);
  a lease of the same DAG as the asking task is stale at once (the DAG runs one run at a time).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional, Tuple

LOCK_DIR = ".cartola"
# How often a waiting run retries, and how often it says again who it waits for.
SIBLING_WAIT_SECONDS = 2.0
POLL_SECONDS = 1.0
SAY_EVERY_SECONDS = 30.0


class RunLockBusy(RuntimeError):
    """Another run holds the project home; the message says which (one line)."""


def new_run_id() -> str:
    """A pipeline run id in the form TFX's LocalDagRunner uses (local ISO time)."""
    return dt.datetime.now().isoformat()


def _now_text(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(record: Dict[str, Any]) -> str:
    """Who holds the home, for one line: the run, what it is, where, since when."""
    if not record:
        return "another run (no holder recorded yet)"
    since = _now_text(record["started"]) if "started" in record else "?"
    if record.get("dag_id"):
        return (f"Airflow DAG run {record['dag_id']}/{record.get('run_id')} "
                f"(since {since}, until its last task ends)")
    return (f"run {record.get('run_id') or '?'} ({record.get('command') or '?'}, pid "
            f"{record.get('pid')} on {record.get('host')}, since {since})")


class RunLock:
    """The project home's run lock; see the module docstring."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self.path = self.home / LOCK_DIR / "run.lock"
        self.lease_path = self.home / LOCK_DIR / "run.lease"
        self._fd: Optional[int] = None

    # --- the kernel lock --------------------------------------------------------------------

    def _try_flock(self) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.EWOULDBLOCK, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def _write_holder(self, record: Dict[str, Any]) -> None:
        data = json.dumps(record).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)
        os.fsync(self._fd)

    def _unflock(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the last descriptor releases the flock
            self._fd = None

    def holder(self) -> Dict[str, Any]:
        """The recorded holder of the kernel lock ({} when none or being written)."""
        try:
            return json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    # --- the DAG-run lease ------------------------------------------------------------------

    def lease(self) -> Dict[str, Any]:
        """The lease file's content ({} when none)."""
        try:
            return json.loads(self.lease_path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}

    def _write_lease(self, lease: Dict[str, Any]) -> None:
        tmp = self.lease_path.with_name(f".run.lease.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(lease), encoding="utf-8")
        os.replace(tmp, self.lease_path)

    @staticmethod
    def _active_owner(lease: Dict[str, Any], dag_run: Optional[Tuple[str, str]]
                      ) -> Optional[Dict[str, Any]]:
        """The lease's owner if it still excludes ``dag_run`` (None: a ``cartola run``)."""
        owner = lease.get("owner")
        if not owner or owner.get("expires", 0) < time.time():
            return None
        if dag_run is not None:
            if (owner["dag_id"], owner["run_id"]) == dag_run:
                return None  # our own DAG run
            if owner["dag_id"] == dag_run[0]:
                return None  # the DAG runs one run at a time: that one has ended
        return owner

    # --- acquire / release ------------------------------------------------------------------

    def try_acquire(self, record: Dict[str, Any], dag_run: Optional[Tuple[str, str]] = None,
                    lease_seconds: float = 0.0) -> Optional[str]:
        """Take the home for ``record``'s run; None on success, else who holds it.

        With ``dag_run`` (dag id, run id), take or renew that DAG run's lease and let go of
        the kernel lock at once; without, keep the kernel lock until :meth:`release`.
        """
        if not self._try_flock() and not self._sibling_done(dag_run):
            return describe(self.holder())
        record = {**record, "started": time.time()}
        try:
            lease = self.lease()
            owner = self._active_owner(lease, dag_run)
            if owner is not None:
                self._unflock()
                return describe(owner)
            if dag_run is not None:
                self._write_holder({**record, "dag_id": dag_run[0], "run_id": dag_run[1]})
                mine = lease.get("owner") or {}
                started = (mine.get("started") if (mine.get("dag_id"), mine.get("run_id"))
                           == dag_run else None) or record["started"]
                self._write_lease({"owner": {**record, "dag_id": dag_run[0],
                                             "run_id": dag_run[1], "started": started,
                                             "expires": started + lease_seconds}})
                self._unflock()
                return None
            self._write_holder(record)
            return None
        except BaseException:
            self._unflock()
            raise

    def _sibling_done(self, dag_run: Optional[Tuple[str, str]]) -> bool:
        """Whether the kernel lock, held by another task of ``dag_run`` renewing the lease
        (for milliseconds), came to this one within a moment; parallel tasks of one DAG run
        then start together instead of a poll interval apart."""
        if dag_run is None:
            return False
        holder = self.holder()
        if (holder.get("dag_id"), holder.get("run_id")) != tuple(dag_run):
            return False
        deadline = time.monotonic() + SIBLING_WAIT_SECONDS
        while time.monotonic() < deadline:
            time.sleep(0.01)
            if self._try_flock():
                return True
        return False

    def acquire(self, record: Dict[str, Any], wait: bool = True,
                say: Callable[[str], None] = print,
                dag_run: Optional[Tuple[str, str]] = None, lease_seconds: float = 0.0,
                poll: float = POLL_SECONDS, every: float = SAY_EVERY_SECONDS) -> None:
        """:meth:`try_acquire` until it succeeds, saying who holds the home at once and
        every ``every`` seconds; with ``wait=False`` raise :class:`RunLockBusy` instead."""
        said = None
        while True:
            holder = self.try_acquire(record, dag_run, lease_seconds)
            if holder is None:
                return
            line = f"project home {self.home} is in use by {holder}"
            if not wait:
                raise RunLockBusy(line + "; not waiting (--no-wait)")
            if said is None or time.monotonic() - said >= every:
                say(line + "; waiting for it to finish")
                said = time.monotonic()
            time.sleep(poll)

    def _owns(self, dag_run: Tuple[str, str]) -> bool:
        owner = self.lease().get("owner") or {}
        return (owner.get("dag_id"), owner.get("run_id")) == tuple(dag_run)

    def release(self) -> None:
        """Let go of the kernel lock (a no-op when not held)."""
        self._unflock()

    def end_lease(self, dag_run: Tuple[str, str]) -> bool:
        """Give back ``dag_run``'s lease; True if it held it (False: nothing to do).

        Read first without the kernel lock: a ``cartola run`` may hold that for hours, but
        only while no DAG run holds the lease, so a lease that is not ours needs no wait."""
        if not self._owns(dag_run):
            return False
        while not self._try_flock():
            time.sleep(POLL_SECONDS)
        try:
            held = self._owns(dag_run)
            if held:
                self._write_lease({"owner": None})
            return held
        finally:
            self._unflock()


def holder_record(run_id: str, command: Optional[str] = None) -> Dict[str, Any]:
    """Who is asking: pid, host, command line, start time and run id."""
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "command": command or shlex.join([Path(sys.argv[0]).name] + sys.argv[1:]),
            "started": time.time(), "run_id": run_id}


@contextlib.contextmanager
def hold(home: Path, run_id: str, wait: bool = True,
         say: Callable[[str], None] = print) -> Iterator[RunLock]:
    """Hold ``home`` for a whole in-process run (``cartola run``)."""
    lock = RunLock(home)
    lock.acquire(holder_record(run_id), wait=wait, say=say)
    try:
        yield lock
    finally:
        lock.release()
