"""Drift and skew gate: each model feature, and the label, compared between two TFDV
statistics.

Drift compares this span's train split with the train split the served model learned from;
skew compares this run's train split with its eval split. Features are compared by
Jensen-Shannon divergence on common cells, against the larger of a floor (a comparator in the
curated schema wins over the config's thresholds) and the divergence random halves of that
size reach (:mod:`cartola.validation.divergence`); the label by the odds ratio of its
positive share. The gate writes every measurement to ``drift.json`` (the run report draws
it), then fails the run past a threshold, or only warns when ``drift_action = "warn"``.
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
from cartola.data.spans import artifact_span
from cartola.validation.divergence import NOISE_P, comparator_schema, label_shift, measure

DRIFT_FILE = "drift.json"
LABEL_ODDS_RATIO = 1.5  # when the settings name none


class DriftReport(types.Artifact):
    """Drift and skew measurements of one run (``drift.json``)."""

    TYPE_NAME = "DriftReport"


def threshold_note(row: Dict) -> str:
    """How a measurement's threshold was set, in words."""
    if row.get("measure") == "odds ratio":
        return (f"odds ratio past {row['threshold']:g} either way, and beyond chance "
                f"(z {row['z']:.1f})")
    sizes = " and ".join(f"{n:,}" for n in row.get("examples", []))
    if row.get("threshold_from") == "noise":
        return (f"random samples of {sizes} examples reach {row['noise']:.4f} once in "
                f"{1 / NOISE_P:,.0f}; floor {row['floor']:g}")
    return f"floor {row.get('floor', row['threshold']):g}; noise at {sizes} examples " \
           f"{row.get('noise', 0.0):.4f}"


def describe(result: Dict) -> List[str]:
    """One line per measurement past its threshold."""
    lines = []
    for row in result["measurements"]:
        if not row["failed"]:
            continue
        against = (f"span {result['span']} against span {result['baseline_span']}, the served "
                   "model's training data" if row["kind"] == "drift"
                   else f"train against eval split of span {result['span']}")
        if row.get("measure") == "odds ratio":
            lines.append(f"[{row['kind']}] label {row['feature']!r}: positive share "
                         f"{row['share']:.4f} against {row['reference_share']:.4f}, odds ratio "
                         f"{row['value']:.2f} is past the threshold {row['threshold']:g} "
                         f"({against})")
            continue
        lines.append(f"[{row['kind']}] feature {row['feature']!r}: Jensen-Shannon divergence "
                     f"{row['value']:.4f} is above the threshold {row['threshold']:.4g} "
                     f"({against}; {threshold_note(row)})")
    return lines


def label_rows(statistics: Dict, label: str, max_odds_ratio: float) -> List[Dict]:
    """The label's drift and skew measurements (odds ratio of the positive share)."""
    rows = []
    for kind, reference, current in (("drift", statistics["baseline"], statistics["train"]),
                                     ("skew", statistics["train"], statistics["eval"])):
        if not label or reference is None or current is None:
            continue
        found = label_shift(reference, current, label, max_odds_ratio)
        if found is not None:
            rows.append({"feature": label, "kind": kind, "measure": "odds ratio",
                         "value": found.pop("odds_ratio"), "threshold": max_odds_ratio,
                         "threshold_from": "floor", **found})
    return rows


def check(statistics: Dict, schema: schema_pb2.Schema, settings: Dict, span: str,
          baseline_span: Optional[str] = None) -> Dict:
    """The gate's verdict: ``statistics`` holds "train", "eval" and "baseline" (None on a first
    run) DatasetFeatureStatisticsLists; ``settings`` the features, both thresholds and the
    action ("stop" or "warn"), and optionally the label and its largest odds ratio. Returns
    what ``drift.json`` records."""
    checked = comparator_schema(schema, settings["features"], settings["drift_threshold"],
                                settings["skew_threshold"])
    rows = [{"measure": "Jensen-Shannon", **row} for row in measure(
        statistics["train"], statistics["eval"], checked, statistics["baseline"])]
    rows += label_rows(statistics, settings.get("label", ""),
                       settings.get("label_odds_ratio", 0.0) or LABEL_ODDS_RATIO)
    result = {"span": span, "baseline_span": baseline_span, "action": settings["action"],
              "measurements": sorted(rows, key=lambda row: (row["kind"], row["feature"]))}
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
def DriftGate(  # pylint: disable=invalid-name,too-many-arguments,too-many-positional-arguments,too-many-locals
        statistics: InputArtifact[standard_artifacts.ExampleStatistics],
        schema: InputArtifact[standard_artifacts.Schema],
        examples: InputArtifact[standard_artifacts.Examples],
        drift: OutputArtifact[DriftReport],
        features: Parameter[str], drift_threshold: Parameter[float],
        skew_threshold: Parameter[float], action: Parameter[str], span_pattern: Parameter[str],
        label: Parameter[str], label_odds_ratio: Parameter[float],
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
         "action": action, "label": label, "label_odds_ratio": label_odds_ratio},
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
