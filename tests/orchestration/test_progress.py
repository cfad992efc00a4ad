"""Component progress lines: fed by the records TFX's LocalDagRunner logs, printed as they
come, and no extra log noise let through."""
from __future__ import annotations

import io
import logging

from cartola.orchestration import progress


def test_lines_as_components_start_finish_and_skip():
    ticks = iter([0.0, 2.0, 46.5, 47.0, 130.0, 3700.0])
    stream = io.StringIO()
    watcher = progress.ComponentProgress(3, stream, logging.WARNING, now=lambda: next(ticks))
    watcher.event(progress.STARTED, "CsvExampleGen")
    watcher.event(progress.FINISHED, "CsvExampleGen")
    watcher.event(progress.SKIPPED, "Transform")
    watcher.event(progress.STARTED, "Trainer")
    watcher.event(progress.FINISHED, "Trainer")
    assert stream.getvalue().splitlines() == [
        "[0:02] CsvExampleGen started (0/3 done)",
        "[0:46] CsvExampleGen finished in 44.5 s (1/3 done)",
        "[0:47] Transform skipped (2/3 done)",
        "[2:10] Trainer started (2/3 done)",
        "[1:01:40] Trainer finished in 3570.0 s (3/3 done)"]


def test_each_finished_component_is_handed_on_after_its_line():
    stream, seen = io.StringIO(), []
    watcher = progress.ComponentProgress(
        2, stream, logging.WARNING, now=lambda: 1.0,
        on_finished=lambda node: seen.append((node, stream.getvalue().count("\n"))))
    watcher.event(progress.STARTED, "Transform")
    watcher.event(progress.SKIPPED, "StatisticsGen")
    watcher.event(progress.FINISHED, "Transform")
    assert seen == [("Transform", 3)]  # finished only, once its line is out


def test_logger_records_drive_the_lines_and_info_noise_stays_hidden():
    logger = logging.getLogger("cartola-test-absl")
    logger.setLevel(logging.WARNING)
    seen = []

    class Keep(logging.Handler):
        """Records that reach handlers."""

        def emit(self, record):
            seen.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    stream = io.StringIO()
    try:
        with progress.component_progress(2, stream, logger_name=logger.name):
            logger.info(progress.STARTED, "StatisticsGen")
            logger.info("Using deployment config: ...")
            logger.warning("ArtifactQuery.property_predicate is not supported.")
            logger.info(progress.FINISHED, "StatisticsGen")
        logger.info(progress.STARTED, "Trainer")  # after the block: not watched
    finally:
        logger.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert [line.split("] ", 1)[1].split(" in ")[0] for line in lines] == [
        "StatisticsGen started (0/2 done)", "StatisticsGen finished"]
    assert seen == ["ArtifactQuery.property_predicate is not supported."]
    assert logger.level == logging.WARNING and not logger.filters


def test_lines_survive_tensorflow_silencing_absl_while_it_saves_a_model():
    from absl import logging as absl_logging  # pylint: disable=import-outside-toplevel
    stream = io.StringIO()
    before = absl_logging.get_verbosity()
    with progress.component_progress(2, stream):
        # What TensorFlow does around each SavedModel save (trackable children).
        saved = absl_logging.get_verbosity()
        absl_logging.set_verbosity(absl_logging.FATAL)
        absl_logging.set_verbosity(saved)
        absl_logging.info(progress.STARTED, "Trainer")
        absl_logging.info(progress.FINISHED, "Trainer")
    assert [line.split("] ", 1)[1] for line in stream.getvalue().splitlines()] == [
        "Trainer started (0/2 done)", "Trainer finished in 0.0 s (1/2 done)"]
    assert absl_logging.get_verbosity() == before
