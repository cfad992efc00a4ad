"""Progress lines for in-process runs: one timed line as each pipeline component starts,
finishes or is skipped, printed as it happens rather than at the end."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Callable, Iterator, Optional, TextIO

from absl import logging as absl_logging

# The messages TFX's LocalDagRunner logs around each node (absl, INFO level).
STARTED = "Component %s is running."
FINISHED = "Component %s is finished."
SKIPPED = "Skipping component %s."


def clock(seconds: float) -> str:
    """``m:ss`` (or ``h:mm:ss``) for an elapsed time."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ComponentProgress(logging.Filter):  # pylint: disable=too-many-instance-attributes
    """A filter on TFX's logger that prints a line per component event it sees and lets
    through only the records the logger would have let through before it was opened up to
    INFO (so the run is no noisier than without it)."""

    def __init__(self, total: int, stream: TextIO, floor: int,
                 now: Callable[[], float] = time.monotonic,
                 on_finished: Optional[Callable[[str], object]] = None):
        super().__init__()
        self.total, self.stream, self.floor, self.now = total, stream, floor, now
        self.on_finished = on_finished
        self.begun = now()
        self.started: dict = {}  # the components running now, by start time
        self.done = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in (STARTED, FINISHED, SKIPPED) and record.args:
            self.event(record.msg, str(record.args[0]))
        return record.levelno >= self.floor

    @property
    def running(self) -> Optional[str]:
        """The component started last and not finished: the one an error stopped."""
        return list(self.started)[-1] if self.started else None

    def event(self, message: str, node: str) -> None:
        """Print one progress line for ``node``."""
        at = self.now()
        if message == STARTED:
            self.started[node] = at
            what = "started"
        else:
            self.done += 1
            what = (f"finished in {at - self.started.pop(node, at):.1f} s"
                    if message == FINISHED else "skipped")
        self.stream.write(f"[{clock(at - self.begun)}] {node} {what} "
                          f"({self.done}/{self.total} done)\n")
        self.stream.flush()
        if message == FINISHED and self.on_finished is not None:
            self.on_finished(node)


@contextlib.contextmanager
def component_progress(total: int, stream: Optional[TextIO] = None,
                       logger_name: str = "absl",
                       on_finished: Optional[Callable[[str], object]] = None
                       ) -> Iterator[ComponentProgress]:
    """Print component progress lines to ``stream`` (stderr) while the block runs, and call
    ``on_finished(component)`` after each component's last line."""
    logger = logging.getLogger(logger_name)
    level, floor = logger.level, logger.getEffectiveLevel()
    verbosity = absl_logging.get_verbosity()
    progress = ComponentProgress(total, stream or sys.stderr, floor,
                                 on_finished=on_finished)
    logger.addFilter(progress)
    logger.setLevel(min(floor, logging.INFO))
    if logger_name == "absl":
        # Through absl's verbosity flag too: TensorFlow silences absl while it saves a model
        # and then restores the flag's value, which would otherwise drop INFO, and with it
        # every progress line after Transform's first SavedModel.
        absl_logging.set_verbosity(max(verbosity, absl_logging.INFO))
    try:
        yield progress
    finally:
        if logger_name == "absl":
            absl_logging.set_verbosity(verbosity)
        logger.setLevel(level)
        logger.removeFilter(progress)
