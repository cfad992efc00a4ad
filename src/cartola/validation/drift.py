"""Drift and skew gate: Jensen-Shannon divergence of each model feature, measured by TFDV.

Drift compares this span's train split with the train split the served model learned from;
skew compares this run's train split with its eval split. TFDV's ``validate_statistics`` does
the comparing (``previous_statistics`` and ``serving_statistics``, with a
``jensen_shannon_divergence`` comparator per feature: L-infinity is always 0 for numeric
features); numeric features are then measured on their quantiles histograms
(:mod:`cartola.validation.divergence`). A comparator already in the curated schema wins; other
model features get the config's thresholds. The gate writes every measurement to
``drift.json`` (the run report draws it), then fails the run past a threshold, or only warns
when ``drift_action = "warn"``.
"""

import json
import os
from typing import Dict, List, Optional

from absl import logging
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts
from tfx.utils import io_utils

from cartola.data.spans import span_label
from cartola.errors import DRIFT_GATE, DataValidationError
from cartola.registry.baseline import artifact_span
from cartola.validation.divergence import comparator_schema, measure

DRIFT_FILE = "drift.json"


class DriftReport(types.Artifact):
    """Drift and skew measurements of one run (``drift.json``)."""

    TYPE_NAME = "DriftReport"


def describe(result: Dict) -> List[str]:
    """One line per measurement past its threshold."""
    lines = []
    for row in result["measurements"]:
        if not row["failed"]:
            continue
        against = (f"span {result['span']} against span {result['baseline_span']}, the served "
                   "model's training data" if row["kind"] == "drift"
                   else f"train against eval split of span {result['span']}")
        lines.append(f"[{row['kind']}] feature {row['feature']!r}: Jensen-Shannon divergence "
                     f"{row['value']:.4f} is above the threshold {row['threshold']:g} "
                     f"({against})")
    return lines


def check(statistics: Dict, schema: schema_pb2.Schema, settings: Dict, span: str,
          baseline_span: Optional[str] = None) -> Dict:
    """The gate's verdict: ``statistics`` holds "train", "eval" and "baseline" (None on a first
    run) DatasetFeatureStatisticsLists; ``settings`` the features, both thresholds and the
    action ("stop" or "warn"). Returns what ``drift.json`` records."""
    checked = comparator_schema(schema, settings["features"], settings["drift_threshold"],
                                settings["skew_threshold"])
    result = {"span": span, "baseline_span": baseline_span, "action": settings["action"],
              "measurements": measure(statistics["train"], statistics["eval"], checked,
                                      statistics["baseline"])}
    result["problems"] = describe(result)
    result["status"] = ("failed" if result["problems"] and settings["action"] == "stop"
                        else "warned" if result["problems"] else "passed")
    return result


def stopped_dir(uri: str) -> str:
    """Where a stopping gate keeps its ``drift.json``: ``<node>/stopped/<execution id>``
    beside its output ``<node>/drift/<execution id>``."""
    key_dir = os.path.dirname(uri.rstrip("/"))
    return os.path.join(os.path.dirname(key_dir), "stopped", os.path.basename(uri.rstrip("/")))


def load_result(uri: str) -> Optional[Dict]:
    """The gate's ``drift.json`` under an output ``uri``, or None."""
    path = os.path.join(uri, DRIFT_FILE)
    return json.loads(io_utils.read_string_file(path)) if os.path.isfile(path) else None


def _train_eval(statistics: types.Artifact):
    return [stats_artifact_utils.load_statistics(statistics, split).proto()
            for split in ("train", "eval")]


@component
def DriftGate(  # pylint: disable=invalid-name,too-many-arguments,too-many-positional-arguments
        statistics: InputArtifact[standard_artifacts.ExampleStatistics],
        schema: InputArtifact[standard_artifacts.Schema],
        examples: InputArtifact[standard_artifacts.Examples],
        drift: OutputArtifact[DriftReport],
        features: Parameter[str], drift_threshold: Parameter[float],
        skew_threshold: Parameter[float], action: Parameter[str], span_pattern: Parameter[str],
        baseline_statistics: InputArtifact[standard_artifacts.ExampleStatistics] = None,
        baseline_examples: InputArtifact[standard_artifacts.Examples] = None,
) -> None:
    """Measure drift against the served model's data and train/eval skew; fail the run past
    a threshold unless ``action`` is "warn". A first run (no served model) measures skew only,
    and says so."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    train, eval_split = _train_eval(statistics)
    has_baseline = baseline_statistics is not None and baseline_examples is not None
    result = check(
        {"train": train, "eval": eval_split,
         "baseline": _train_eval(baseline_statistics)[0] if has_baseline else None},
        tfdv.load_schema_text(os.path.join(schema.uri, "schema.pbtxt")),
        {"features": [name for name in features.split(",") if name],
         "drift_threshold": drift_threshold, "skew_threshold": skew_threshold,
         "action": action},
        span_label(artifact_span(examples), span_pattern),
        span_label(artifact_span(baseline_examples), span_pattern) if has_baseline else None)
    result["statistics"] = statistics.uri
    result["baseline_statistics"] = baseline_statistics.uri if has_baseline else None
    problems = result["problems"]
    text = json.dumps(result, indent=1)
    io_utils.write_string_file(os.path.join(drift.uri, DRIFT_FILE), text)
    drift.set_string_custom_property("status", result["status"])
    if baseline_statistics is None:
        logging.info("Drift: no served model yet, so no baseline to compare with (first run); "
                     "train/eval skew checked.")
    if problems and action == "stop":
        # TFX deletes a failed execution's outputs; keep the verdict for the run report.
        io_utils.write_string_file(os.path.join(stopped_dir(drift.uri), DRIFT_FILE), text)
        raise DataValidationError(
            f"drift gate stopped the run with {len(problems)} problem"
            f"{'' if len(problems) == 1 else 's'} (drift_action = \"warn\" would train anyway; "
            f"details in {drift.uri}):\n  " + "\n  ".join(problems), kind=DRIFT_GATE)
    for line in problems:
        logging.warning("Drift (warning only, drift_action = \"warn\"): %s", line)
    logging.info("Drift gate %s: %d measurements.", result["status"], len(result["measurements"]))
