"""A quiet console: the project's own lines on the terminal, library output in a log file.

TensorFlow, absl, Beam and TFMA write to the terminal from three places: C++ code writing to
file descriptors 1 and 2 (TensorFlow's CUDA factory lines appear at import, before Python
logging exists), Python logging and the ``warnings`` module. :func:`quiet_console` points
descriptors 1 and 2 at the log file (so C++ and child processes write there), sends logging
and warnings there too, and gives ``sys.stdout`` / ``sys.stderr`` back to the project on
copies of the original descriptors, so every ``print`` of the project still reaches the
terminal. Nothing here imports TensorFlow or the rest of the project.
"""
from __future__ import annotations

import contextlib
import datetime
import io
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Iterator, List, Optional, TextIO, Tuple

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
KEEP_LOGS = 20  # newest log files kept per folder
COMPONENT = "cartola_component"  # attribute naming the pipeline component an error stopped
USER_MISTAKE = 2  # the exit code of a user's mistake, which its one line explains
PROJECT_LOGGER = "cartola"  # records of this logger and its children are the project's lines
# The open quiet console's log, for child processes that split their own output.
CONSOLE_LOG_ENV = "CARTOLA_CONSOLE_LOG"
# The open quiet console's (log, its descriptor, the terminal's stdout and stderr copies).
_open: List[Tuple[Path, int, int, int]] = []


class Console:
    """Where an open quiet console writes: ``log_path`` (None with ``verbose``)."""

    def __init__(self, log_path: Optional[Path], verbose: bool):
        self.log_path, self.verbose = log_path, verbose

    def has_output(self) -> bool:
        """True when a library wrote anything to the log file."""
        return (self.log_path is not None and self.log_path.is_file()
                and self.log_path.stat().st_size > 0)


def log_path_for(folder: Path, command: str) -> Path:
    """A new timestamped log file name in ``folder`` for ``command``."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    return folder / f"{command}-{stamp}.log"


def _prune(folder: Path) -> None:
    for old in sorted(folder.glob("*.log"))[:-KEEP_LOGS]:
        with contextlib.suppress(OSError):
            old.unlink()


def _console_stream(stream: TextIO, fd: int, saved: int) -> TextIO:
    """``stream`` itself when it is not on ``fd`` (a test's capture), else a line-buffered
    text stream on ``saved``, the copy of the terminal's descriptor."""
    try:
        on_fd = stream.fileno() == fd
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        on_fd = False
    if not on_fd:
        return stream
    return open(saved, "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                errors="backslashreplace", closefd=False)


def _is_project(record: logging.LogRecord) -> bool:
    return record.name == PROJECT_LOGGER or record.name.startswith(PROJECT_LOGGER + ".")


@contextlib.contextmanager
def _logging_to(log: TextIO, terminal: TextIO) -> Iterator[None]:
    """Route the root logger (and with it absl, TensorFlow, Beam) and warnings into ``log``;
    the project's own loggers (``cartola.*``) reach ``terminal`` too.

    The handlers put on the root logger also keep absl's ``basicConfig()`` and TensorFlow's
    own stderr handler from being installed while the block runs."""
    root = logging.getLogger()
    terminals = (sys.__stdout__, sys.__stderr__, sys.stdout, sys.stderr, terminal)
    saved: List[logging.Handler] = [  # what writes to the terminal; a test's capture stays
        handler for handler in root.handlers
        if getattr(handler, "stream", None) in terminals
        or type(handler).__name__ == "ABSLHandler"]
    to_log = logging.StreamHandler(log)
    to_log.setFormatter(logging.Formatter(LOG_FORMAT))
    to_terminal = logging.StreamHandler(terminal)
    to_terminal.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    to_terminal.addFilter(_is_project)
    for old in saved:
        root.removeHandler(old)
    root.addHandler(to_log)
    root.addHandler(to_terminal)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(to_log)
        root.removeHandler(to_terminal)
        for old in saved:
            root.addHandler(old)


@contextlib.contextmanager
def quiet_console(log_path: Optional[Path], verbose: bool = False) -> Iterator[Console]:
    """While the block runs, library output goes to ``log_path`` and the project's lines to
    the terminal; with ``verbose`` (or no ``log_path``) nothing is redirected."""
    if verbose or log_path is None:
        yield Console(None, verbose)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    _prune(log_path.parent)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    old_out, old_err = sys.stdout, sys.stderr
    with open(log_path, "a", buffering=1, encoding="utf-8", errors="backslashreplace") as log:
        saved_out, saved_err = os.dup(1), os.dup(2)
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        sys.stdout = _console_stream(old_out, 1, saved_out)
        sys.stderr = _console_stream(old_err, 2, saved_err)
        _open.append((log_path, log.fileno(), saved_out, saved_err))
        try:
            with _logging_to(log, sys.stderr):
                yield Console(log_path, verbose)
        finally:
            _open.pop()
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            log.flush()
            if sys.stdout is not old_out:
                sys.stdout.close()
            if sys.stderr is not old_err:
                sys.stderr.close()
            sys.stdout, sys.stderr = old_out, old_err
            os.dup2(saved_out, 1)
            os.dup2(saved_err, 2)
            os.close(saved_out)
            os.close(saved_err)


@contextlib.contextmanager
def terminal_for_children() -> Iterator[None]:
    """Processes started in the block get the terminal as descriptors 1 and 2, and
    ``$CARTOLA_CONSOLE_LOG`` names the log, so a long-lived child (a server's worker) splits
    its own output with :func:`quiet_console` on that log: a fork or spawn cannot inherit the
    console's copies of the terminal's descriptors. Nothing changes without a quiet console.
    While the block runs, this process's own descriptor-level writes reach the terminal too:
    use it only around a process that loads no noisy library itself."""
    if not _open:
        yield
        return
    log_path, log_fd, saved_out, saved_err = _open[-1]
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved_env = os.environ.get(CONSOLE_LOG_ENV)
    os.environ[CONSOLE_LOG_ENV] = str(log_path)
    os.dup2(saved_out, 1)
    os.dup2(saved_err, 2)
    try:
        yield
    finally:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        if saved_env is None:
            os.environ.pop(CONSOLE_LOG_ENV, None)
        else:
            os.environ[CONSOLE_LOG_ENV] = saved_env


def one_line(command: str, err: BaseException) -> str:
    """``cartola: run failed in Trainer: Type: first line of the message``."""
    component = getattr(err, COMPONENT, None)
    message = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {message[0]}" if message else type(err).__name__
    return f"cartola: {command} failed{f' in {component}' if component else ''}: {text}"


def run_quietly(command, args, log_path: Optional[Path], verbose: bool) -> int:
    """Run ``command(args)`` under :func:`quiet_console`. A library error that escapes it is
    written in full to the log and shown as one line naming the component; the log's path
    is printed at the end whenever a library wrote to it."""
    with quiet_console(log_path, verbose) as console:
        if console.log_path is None:
            return command(args)
        try:
            code = command(args)
        except Exception as err:  # pylint: disable=broad-except
            logging.getLogger("traceback").error("%s", "".join(
                traceback.format_exception(type(err), err, err.__traceback__)))
            print(f"{one_line(args.command, err)}\nfull log: {console.log_path}",
                  file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"cartola: interrupted; full log: {console.log_path}", file=sys.stderr)
            return 130
        if code != USER_MISTAKE and console.has_output():  # a mistake stays one line
            print(f"full log: {console.log_path}", file=sys.stderr)
        return code


def fail(message: str) -> int:
    """Print ``cartola: message`` on stderr; the exit code of a user's mistake (2)."""
    print(f"cartola: {message}", file=sys.stderr)
    return 2


def quiet_google_warnings() -> None:
    """TFX's Google client libraries warn at import that Python 3.10 is old; TFX 1.16 needs it."""
    import warnings  # pylint: disable=import-outside-toplevel
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"google\.")
