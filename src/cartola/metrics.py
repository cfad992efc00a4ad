"""Kolmogorov-Smirnov statistic as a TFMA metric.

KS = max over thresholds of |TPR - FPR|: the largest gap between the score distributions of
PRO and non-PRO users, the business metric. Built on TFMA's binary confusion matrices so it
is computed per slice, compared with the baseline model and gated like any built-in metric.
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from tensorflow_model_analysis.metrics import binary_confusion_matrices
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util

KS_NAME = "ks"
NUM_THRESHOLDS = 10000


def ks_from_matrices(matrices) -> float:
    """Max |TPR - FPR| over the matrices' thresholds (NaN when a class is absent)."""
    gaps = []
    for tp, fn, fp, tn in zip(matrices.tp, matrices.fn, matrices.fp, matrices.tn):
        if tp + fn == 0 or fp + tn == 0:
            return float("nan")
        gaps.append(abs(tp / (tp + fn) - fp / (fp + tn)))
    return max(gaps, default=float("nan"))


def _ks(name: str = KS_NAME,
        eval_config=None,
        model_name: str = "",
        output_name: str = "",
        sub_key: Optional[metric_types.SubKey] = None,
        aggregation_type=None,
        class_weights: Optional[Dict[int, float]] = None,
        example_weighted: bool = False) -> metric_types.MetricComputations:
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)
    computations = binary_confusion_matrices.binary_confusion_matrices(
        num_thresholds=NUM_THRESHOLDS, eval_config=eval_config, model_name=model_name,
        output_name=output_name, sub_key=sub_key, aggregation_type=aggregation_type,
        class_weights=class_weights, example_weighted=example_weighted)
    matrices_key = computations[-1].keys[-1]

    def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, float]:
        return {key: ks_from_matrices(metrics[matrices_key])}

    computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
    return computations


class KolmogorovSmirnov(metric_types.Metric):
    """TFMA metric ``ks``; configure with ``MetricConfig(class_name="KolmogorovSmirnov",
    module="cartola.metrics")``."""

    def __init__(self, name: str = KS_NAME):
        super().__init__(metric_util.merge_per_key_computations(_ks), name=name)


metric_types.register_metric(KolmogorovSmirnov)
