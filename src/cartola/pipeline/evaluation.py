"""The Evaluator's output read back: metrics per model and overall or per slice, the diff
against the baseline, the thresholds of the run's eval config and the failed ones."""
from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional

_CLASS_TO_METRIC = {"AUC": "auc", "KolmogorovSmirnov": "ks", "ExampleCount": "example_count"}


def _double(metrics: dict, name: str) -> Optional[float]:
    value = metrics.get(name)
    if isinstance(value, dict) and "doubleValue" in value:
        number = float(value["doubleValue"])
        return int(number) if name == "example_count" else number
    return None


def _flat(slice_metrics: dict) -> dict:
    """{output: {sub_key: {metric: value}}} -> {metric: value} (single output, no sub key)."""
    return slice_metrics.get("", {}).get("", {})


def _slice_name(slice_key) -> str:
    if isinstance(slice_key, tuple):
        return "overall" if not slice_key else ", ".join(f"{k} = {v}" for k, v in slice_key)
    parts = []
    for key in slice_key.single_slice_keys:
        value = getattr(key, key.WhichOneof("kind")) if key.WhichOneof("kind") else ""
        parts.append(f"{key.column} = {value.decode() if isinstance(value, bytes) else value}")
    return ", ".join(parts) or "overall"


def _thresholds(eval_config: dict) -> Dict[str, Dict[str, float]]:
    """metric -> {"lower_bound": x, "change": y} from the run's eval config."""
    result = {}
    for spec in eval_config.get("metricsSpecs", []):
        for metric in spec.get("metrics", []):
            class_name = metric.get("className", "")
            name = _CLASS_TO_METRIC.get(class_name) or re.sub(
                r"(?<!^)(?=[A-Z])", "_", class_name).lower()
            thresholds = [t.get("threshold", {}) for t in metric.get("perSliceThresholds", [])]
            if "threshold" in metric:
                thresholds.append(metric["threshold"])
            for threshold in thresholds:
                entry = result.setdefault(name, {})
                lower = threshold.get("valueThreshold", {}).get("lowerBound")
                if lower is not None:
                    entry["lower_bound"] = float(lower)
                change = threshold.get("changeThreshold", {}).get("absolute")
                if change is not None:
                    entry["change"] = float(change)
    return result


def load_evaluation(uri: str) -> dict:
    """Metrics per model and slice, diffs, thresholds and the validation outcome."""
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel
    with open(os.path.join(uri, "eval_config.json"), encoding="utf-8") as handle:
        run_config = json.load(handle)
    eval_config = run_config.get("evalConfig", {})
    specs = eval_config.get("modelSpecs", [{}])
    candidate = next((s.get("name", "") for s in specs if not s.get("isBaseline")), "")
    baseline = next((s.get("name", "") for s in specs if s.get("isBaseline")), None)
    locations = run_config.get("modelLocations", {})
    result: Dict[str, Any] = {
        "candidate_location": locations.get(candidate) or next(iter(locations.values()), None),
        "baseline_location": locations.get(baseline) if baseline is not None else None,
        "thresholds": _thresholds(eval_config), "slices": [], "overall": {},
        "baseline_overall": {}, "diff": {}}
    evaluation = tfma.load_eval_result(uri, model_name=candidate or None)
    for slice_key, metrics in evaluation.slicing_metrics:
        flat = _flat(metrics)
        values = {k: _double(flat, k) for k in flat if not k.endswith("_diff")}
        if slice_key == ():
            result["overall"] = values
            result["diff"] = {k[:-len("_diff")]: _double(flat, k) for k in flat
                              if k.endswith("_diff")}
        else:
            result["slices"].append((slice_key, values))
    result["slices"] = [(_slice_name(key), values) for key, values in sorted(
        result["slices"], key=lambda item: tuple((k, str(type(v)), v) for k, v in item[0]))]
    if baseline is not None:
        base = tfma.load_eval_result(uri, model_name=baseline)
        for slice_key, metrics in base.slicing_metrics:
            if slice_key == ():
                flat = _flat(metrics)
                result["baseline_overall"] = {k: _double(flat, k) for k in flat}
    validation = tfma.load_validation_result(uri)
    result["validation_ok"] = bool(validation.validation_ok)
    result["failures"] = _failures(validation)
    return result


def _failures(validation) -> List[dict]:
    """Failed thresholds of a TFMA ValidationResult, one dict per metric and slice."""
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        for failure in per_slice.failures:
            key = failure.metric_key
            failures.append({
                "slice": _slice_name(per_slice.slice_key),
                "metric": key.name + (" (change vs baseline)" if key.is_diff else ""),
                "value": failure.metric_value.double_value.value,
                "threshold": str(failure.metric_threshold).replace("\n", " ").strip(),
                "message": failure.message})
    return failures
