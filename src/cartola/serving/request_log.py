"""Request logs: a sample of the rows the server scores, written off the request path.

Format (``cartola monitor`` reads it; keep it stable):

* Folder ``config.request_log_path`` (``<request_log_dir>/<model_name>``).
* Uncompressed TFRecord files of serialized ``tf.Example`` protos. The file being written is
  ``requests-<UTC start %Y%m%dT%H%M%S%fZ>-<pid>.tfrecord.part``; it is renamed to ``.tfrecord``
  when it is rotated (age or size) or the server closes, so a reader only ever sees complete
  files. Closed files older than the retention are deleted at each rotation.
* Each record is the exact serialized example the model scored, with :data:`SCORE` (float),
  :data:`MODEL_VERSION` and :data:`LOGGED_AT` (int64, Unix milliseconds) appended as a second
  serialized ``Example``: protobuf merges a repeated message field, so the bytes parse as one
  example holding the raw features and these three.
* The start time in a file's name (whole milliseconds) is at or before its first record's
  ``LOGGED_AT``; its modification time, set when it is closed, is at or after its last one.

The request thread only samples rows and hands them to a bounded queue (``put_nowait``: a full
queue drops the batch and counts it, a request never waits); one daemon thread frames and
writes. TensorFlow's ``TFRecordWriter`` is imported by that thread at the first write (the
server has loaded TensorFlow by then); importing this module stays light.
"""
from __future__ import annotations

import logging
import os
import queue
import random
import re
import struct
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, List, Optional, Sequence

from cartola.codec.wire import entry, field, int64_feature, read_records, varint

LOG = logging.getLogger("cartola.serving.request_log")

SCORE = "__score__"
MODEL_VERSION = "__model_version__"
LOGGED_AT = "__logged_at__"

SUFFIX = ".tfrecord"
PART = ".part"
_TIME_FORMAT = "%Y%m%dT%H%M%S%fZ"
_NAME = re.compile(r"^requests-(?P<start>\d{8}T\d{12}Z)-(?P<pid>\d+)\.tfrecord$")
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_FRAME_BYTES = 16  # TFRecord: length (8) and two masked CRC32Cs (4 + 4) per record

# File start times handed out in this process (ms): two loggers or fast rotations never
# reuse a name.
_LAST_START = {"ms": 0}
_START_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------------
# Reading: plain Python, for `cartola monitor` and tests.

def _utc_us(moment: datetime) -> int:
    """Microseconds since the epoch, exactly; a naive datetime is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def file_start(path: Path) -> Optional[datetime]:
    """The UTC start time in a closed log file's name; None for any other file (``.part``)."""
    match = _NAME.match(Path(path).name)
    if match is None:
        return None
    return datetime.strptime(match["start"], _TIME_FORMAT).replace(tzinfo=timezone.utc)


def logged_files(folder: Path, start: Optional[datetime] = None,
                 end: Optional[datetime] = None) -> List[Path]:
    """Closed log files in ``folder`` whose records may fall in [start, end), oldest first.

    A file covers [start time in its name, modification time]; naive datetimes are UTC. Files
    being written (``.part``) are left out. Records are not read: filter them on
    :data:`LOGGED_AT` for an exact window.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    low = None if start is None else _utc_us(start)
    high = None if end is None else _utc_us(end)
    found = []
    for path in folder.iterdir():
        began = file_start(path)
        if began is None:
            continue
        try:
            ended = -(-path.stat().st_mtime_ns // 1000)  # ceiling, in microseconds
        except FileNotFoundError:  # removed by a rotation meanwhile
            continue
        if (high is not None and _utc_us(began) >= high) or (low is not None and ended < low):
            continue
        found.append((began, path.name, path))
    return [path for _, _, path in sorted(found)]


def read_logged(files: Iterable[Path]) -> Iterator[bytes]:
    """The logged records of ``files``, in order (no TensorFlow needed)."""
    return read_records(files)


# --------------------------------------------------------------------------------------------
# Encoding the appended features (protobuf wire format).

def suffix_parts(version: int, logged_at_ms: int) -> tuple:
    """(head, tail): a row's appended bytes are ``head + float32 score (little endian) +
    tail``, a serialized Example whose features are SCORE, MODEL_VERSION and LOGGED_AT. Only
    the score varies within a batch, so the rest is built once."""
    score_head = field(0x0A, SCORE.encode()) + b"\x12\x08\x12\x06\x0a\x04"  # 4-byte float
    rest = entry(MODEL_VERSION, int64_feature(version)) + entry(LOGGED_AT,
                                                                   int64_feature(logged_at_ms))
    entry_head = b"\x0a" + varint(len(score_head) + 4) + score_head
    features_len = len(entry_head) + 4 + len(rest)
    return b"\x0a" + varint(features_len) + entry_head, rest


# --------------------------------------------------------------------------------------------
# Writing.

_STOP = object()


class RequestLogger:  # pylint: disable=too-many-instance-attributes
    """Samples scored rows on the request thread and writes them from one daemon thread.

    ``observer`` (optional) gets ``logged_rows(n)`` and ``dropped_rows(n)``, as
    :class:`cartola.serving.metrics.ServingMetrics` provides. The queue is bounded twice: in
    batches (``max_queue``) and in rows (``max_pending_rows``, about 30 MB of typical rows),
    so a stalled disk costs dropped log rows, never memory or request latency.
    """

    def __init__(self, folder: Path,  # pylint: disable=too-many-arguments
                 sample: float = 1.0, rotate_minutes: float = 60.0, max_mb: float = 64.0,
                 retention_days: float = 14.0, observer: Any = None, *, max_queue: int = 1024,
                 max_pending_rows: int = 100_000, seed: Optional[int] = None):
        if not 0.0 <= sample <= 1.0:
            raise ValueError(f"sample is a share of rows in [0, 1], got {sample}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)  # an unwritable folder fails at start
        self.sample = sample
        self.rotate_seconds = rotate_minutes * 60.0
        self.max_bytes = max(1, int(max_mb * 1024 * 1024))
        self.retention_seconds = retention_days * 86400.0
        self.observer = observer
        self.max_pending_rows = max_pending_rows
        self._random = random.Random(seed)
        self._queue: "queue.Queue" = queue.Queue(maxsize=max_queue)
        self._pending = 0
        self._lock = threading.Lock()
        self._closed = False
        self._file: Optional[dict] = None  # writer, part path, start, bytes, last logged ms
        self._thread = threading.Thread(target=self._run, name="request-log-writer",
                                        daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, config, model_name: Optional[str] = None,
                    sample: Optional[float] = None, log_dir: Optional[str] = None,
                    observer: Any = None) -> Optional["RequestLogger"]:
        """The logger a server of ``model_name`` runs with: ``sample`` and ``log_dir``
        (a command line's, relative to the working directory) override the config's
        ``request_log_sample`` and ``request_log_dir``. None when the sample is 0 (off)."""
        sample = config.request_log_sample if sample is None else sample
        if not sample:
            return None
        model_name = model_name or config.model_name
        base = Path(log_dir).expanduser().resolve() if log_dir else config.path(
            config.request_log_dir)
        return cls(base / model_name, sample, config.request_log_rotate_minutes,
                   config.request_log_max_mb, config.request_log_retention_days, observer)

    # Request threads.
    def log(self, serialized: Sequence[bytes], scores: Sequence[float], version: int) -> int:
        """Queue a sample of one request's rows (examples as scored, their scores); never
        blocks or raises. Returns how many rows were queued."""
        if self._closed or not self.sample:
            return 0
        if self.sample >= 1.0:
            rows, values = list(serialized), scores
        else:
            chosen = [i for i in range(len(serialized)) if self._random.random() < self.sample]
            rows = [serialized[i] for i in chosen]
            values = [scores[i] for i in chosen]
        count = len(rows)
        if not count:
            return 0
        with self._lock:
            accepted = self._pending + count <= self.max_pending_rows
            if accepted:
                self._pending += count
        if accepted:
            try:
                self._queue.put_nowait((rows, values, int(version)))
                return count
            except queue.Full:
                with self._lock:
                    self._pending -= count
        self._count("dropped_rows", count)
        return 0

    def close(self, timeout: float = 60.0) -> None:
        """Write what is queued, close and rename the open file; later rows are ignored."""
        if self._closed:
            return
        self._closed = True
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            LOG.error("request log: writer stuck; %s left as .part", self.folder)
            return
        self._thread.join(timeout)

    @property
    def current_file(self) -> Optional[Path]:
        """The ``.part`` file being written, if any."""
        current = self._file
        return None if current is None else current["path"]

    # The writer thread.
    def _count(self, event: str, rows: int) -> None:
        if self.observer is not None and rows:
            try:
                getattr(self.observer, event)(rows)
            except Exception:  # pylint: disable=broad-except
                LOG.exception("request log: observer failed")

    def _run(self) -> None:
        self._expire()
        tick = min(1.0, max(0.01, self.rotate_seconds / 4))
        stopping = False
        while True:
            try:  # after the stop, rows a request still running queued behind it go in too
                item = self._queue.get_nowait() if stopping else self._queue.get(timeout=tick)
            except queue.Empty:
                if stopping:
                    break
                item = None
            if item is _STOP:
                stopping = True
                continue
            try:
                if self._file and time.time() - self._file["opened"] >= self.rotate_seconds:
                    self._rotate()
                if item is not None:
                    self._write(*item)
            except Exception:  # pylint: disable=broad-except
                LOG.exception("request log: cannot write to %s; rows dropped", self.folder)
                self._abandon()
            finally:
                if item is not None:
                    with self._lock:
                        self._pending -= len(item[0])
        try:
            self._rotate()
        except Exception:  # pylint: disable=broad-except
            LOG.exception("request log: cannot close %s", self.current_file)

    def _write(self, rows: List[bytes], scores, version: int) -> None:
        written = 0
        try:
            for example, score in zip(rows, scores):
                if self._file is None:
                    self._open()
                current = self._file
                stamp = max(int(time.time() * 1000), current["start_ms"])
                if current["parts"][0] != (version, stamp):
                    current["parts"] = ((version, stamp), suffix_parts(version, stamp))
                head, tail = current["parts"][1]
                record = example + head + struct.pack("<f", score) + tail
                current["writer"].write(record)
                current["bytes"] += len(record) + _FRAME_BYTES
                current["last_ms"] = stamp
                written += 1
                if current["bytes"] >= self.max_bytes:
                    self._rotate()
        except Exception:
            self._count("dropped_rows", len(rows) - written)
            raise
        finally:
            self._count("logged_rows", written)

    def _open(self) -> None:
        from tensorflow import io as tf_io  # pylint: disable=import-outside-toplevel
        now = time.time()
        with _START_LOCK:
            start_ms = max(int(now * 1000), _LAST_START["ms"] + 1)
            _LAST_START["ms"] = start_ms
        started = datetime.fromtimestamp(start_ms / 1000, timezone.utc)
        path = self.folder / f"requests-{started.strftime(_TIME_FORMAT)}-{os.getpid()}{SUFFIX}"
        part = path.with_name(path.name + PART)
        self._file = {"writer": tf_io.TFRecordWriter(str(part)), "path": part, "opened": now,
                      "start_ms": start_ms, "last_ms": start_ms, "bytes": 0,
                      "parts": (None, None)}

    def _rotate(self) -> None:
        """Close and publish the open file (if any), then apply the retention."""
        current, self._file = self._file, None
        if current is not None:
            current["writer"].close()
            part = current["path"]
            # The modification time bounds the records' LOGGED_AT from above, to the
            # nanosecond (a file system's coarse clock could otherwise stamp it earlier).
            ended = max(time.time_ns(), current["last_ms"] * 1_000_000)
            os.utime(part, ns=(ended, ended))
            os.replace(part, part.with_name(part.name[:-len(PART)]))
        self._expire()

    def _abandon(self) -> None:
        """After a write error: drop the open file's writer; the next row opens a new file."""
        current, self._file = self._file, None
        if current is not None:
            try:
                current["writer"].close()
            except Exception:  # pylint: disable=broad-except
                pass

    def _expire(self) -> None:
        """Delete log files (closed, or ``.part`` left by a crashed server) last written
        before the retention."""
        limit = time.time() - self.retention_seconds
        current = self.current_file
        try:
            paths = list(self.folder.glob("requests-*.tfrecord*"))
        except OSError:
            return
        for path in paths:
            if path == current or not path.name.endswith((SUFFIX, SUFFIX + PART)):
                continue
            try:
                if path.stat().st_mtime < limit:
                    path.unlink()
                    LOG.info("request log: deleted %s (older than the retention)", path.name)
            except FileNotFoundError:
                continue
