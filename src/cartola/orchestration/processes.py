"""Background servers started by the project: spawn with a pid record, find, and stop exactly
what was started (with everything it started in turn)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence


def spawn(pid_file: Path, log_file: Path, args: Sequence[str], env: Mapping[str, str],
          cwd: Path, user: Optional[str] = None) -> int:
    """Start ``args`` in a session of its own (a process group for :func:`stop`), output to
    ``log_file``; record its pid and start time in ``pid_file``. ``user``: run as that user
    (``runuser``; PostgreSQL refuses to run as root)."""
    import psutil  # pylint: disable=import-outside-toplevel
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    command = list(args) if user is None else ["runuser", "-u", user, "--", *args]
    with open(log_file, "ab") as log:
        process = subprocess.Popen(  # pylint: disable=consider-using-with
            command, env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True)
    record = {"pid": process.pid, "create_time": psutil.Process(process.pid).create_time(),
              "args": list(args)}
    pid_file.write_text(json.dumps(record), encoding="utf-8")
    return process.pid


def find(pid_file: Path):
    """psutil.Process recorded in ``pid_file`` if it still runs (not a recycled pid), else
    None."""
    import psutil  # pylint: disable=import-outside-toplevel
    try:
        record = json.loads(pid_file.read_text(encoding="utf-8"))
        process = psutil.Process(record["pid"])
        if abs(process.create_time() - record["create_time"]) > 1e-3:
            return None
        return process if process.status() != psutil.STATUS_ZOMBIE else None
    except (FileNotFoundError, ValueError, KeyError, psutil.Error):
        return None


def stop(pid_file: Path, timeout: float) -> bool:
    """End the process recorded in ``pid_file`` and its descendants; True if it was running."""
    process = find(pid_file)
    if process is not None:
        end_tree(process, timeout)
    pid_file.unlink(missing_ok=True)
    return process is not None


def running(pid_files: Mapping[str, Path]) -> Dict[str, bool]:
    """{name: running} for each pid file."""
    return {name: find(path) is not None for name, path in pid_files.items()}


def end_tree(root, timeout: float) -> None:
    """SIGTERM ``root``'s process groups and descendants (watching for new ones: task
    supervisors and DAG-file processors start while we wait), then SIGKILL the survivors."""
    import psutil  # pylint: disable=import-outside-toplevel
    seen: Dict[int, object] = {}
    signalled: set = set()
    deadline = time.monotonic() + timeout
    alive: List = []
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
