"""TFMA metrics the blessing gates on, computed per slice like any built-in metric.

* ``ks`` (:class:`KolmogorovSmirnov`): max over thresholds of |TPR - FPR|, the largest gap
  between the score distributions of PRO and non-PRO users, the business metric.
* ``auc_lower_bound`` (:class:`AucLowerBound`): AUC minus ``z`` standard errors (Hanley and
  McNeil, 1982, from the AUC and the two class counts): above 0.5, the model ranks better
  than chance by more than the eval split's noise.
* ``log_loss_gain`` (:class:`LogLossGain`): the trivial model's log loss (everyone gets the
  split's positive share) minus the model's; above 0, the probabilities beat the prior. The
  same pass gives ``log_loss``, the model's own, for every model family alike.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Dict, Iterable, List, Optional

import apache_beam as beam
import numpy as np

from tensorflow_model_analysis.metrics import binary_confusion_matrices
from tensorflow_model_analysis.metrics import metric_types
from tensorflow_model_analysis.metrics import metric_util

from cartola.pipeline.ks import ks_from_matrices

KS_NAME = "ks"
AUC_LOWER_BOUND_NAME = "auc_lower_bound"
LOG_LOSS_GAIN_NAME = "log_loss_gain"
LOG_LOSS_NAME = "log_loss"
EPSILON = 1e-7
NUM_THRESHOLDS = 10000
DEFAULT_Z = 1.96  # AucLowerBound's standard errors below the AUC


def _derived_from_matrices(derive, name: str, eval_config, model_name: str, output_name: str,
                           sub_key, aggregation_type, class_weights,
                           example_weighted: bool) -> metric_types.MetricComputations:
    """TFMA's binary confusion matrices at NUM_THRESHOLDS, then metric ``name`` =
    ``derive(matrices)``: the shape both confusion-matrix metrics here share."""
    # pylint: disable=too-many-arguments,too-many-positional-arguments
    key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name,
                                 sub_key=sub_key, example_weighted=example_weighted)
    computations = binary_confusion_matrices.binary_confusion_matrices(
        num_thresholds=NUM_THRESHOLDS, eval_config=eval_config, model_name=model_name,
        output_name=output_name, sub_key=sub_key, aggregation_type=aggregation_type,
        class_weights=class_weights, example_weighted=example_weighted)
    matrices_key = computations[-1].keys[-1]

    def result(metrics: Dict[metric_types.MetricKey, Any]) -> Dict[metric_types.MetricKey, float]:
        return {key: derive(metrics[matrices_key])}

    computations.append(metric_types.DerivedMetricComputation(keys=[key], result=result))
    return computations


def _ks(name: str = KS_NAME,
        eval_config=None,
        model_name: str = "",
        output_name: str = "",
        sub_key: Optional[metric_types.SubKey] = None,
        aggregation_type=None,
        class_weights: Optional[Dict[int, float]] = None,
        example_weighted: bool = False) -> metric_types.MetricComputations:
    return _derived_from_matrices(ks_from_matrices, name, eval_config, model_name, output_name,
                                  sub_key, aggregation_type, class_weights, example_weighted)


class KolmogorovSmirnov(metric_types.Metric):
    """TFMA metric ``ks``; configure with ``MetricConfig(class_name="KolmogorovSmirnov",
    module="cartola.pipeline.metrics")``."""

    def __init__(self, name: str = KS_NAME):
        super().__init__(metric_util.merge_per_key_computations(_ks), name=name)


metric_types.register_metric(KolmogorovSmirnov)


def hanley_mcneil_se(auc: float, positives: float, negatives: float) -> float:
    """Standard error of an AUC from ``positives`` and ``negatives`` examples."""
    if positives < 1 or negatives < 1:
        return float("nan")
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    variance = (auc * (1 - auc) + (positives - 1) * (q1 - auc * auc)
                + (negatives - 1) * (q2 - auc * auc)) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def auc_from_matrices(matrices) -> float:
    """Trapezoid area under the ROC points of the matrices' thresholds (NaN: one class)."""
    tp, fn = np.asarray(matrices.tp, float), np.asarray(matrices.fn, float)
    fp, tn = np.asarray(matrices.fp, float), np.asarray(matrices.tn, float)
    if tp.size == 0 or tp[0] + fn[0] == 0 or fp[0] + tn[0] == 0:
        return float("nan")
    tpr = np.concatenate([[1.0], tp / (tp + fn), [0.0]])
    fpr = np.concatenate([[1.0], fp / (fp + tn), [0.0]])
    return float(np.sum((fpr[:-1] - fpr[1:]) * (tpr[:-1] + tpr[1:]) / 2))


def _auc_lower_bound(  # pylint: disable=too-many-arguments,too-many-positional-arguments
        name: str = AUC_LOWER_BOUND_NAME, z: float = DEFAULT_Z, eval_config=None,
                     model_name: str = "", output_name: str = "",
                     sub_key: Optional[metric_types.SubKey] = None, aggregation_type=None,
                     class_weights: Optional[Dict[int, float]] = None,
                     example_weighted: bool = False) -> metric_types.MetricComputations:
    def lower_bound(matrices) -> float:
        auc = auc_from_matrices(matrices)
        if math.isnan(auc):
            return auc
        positives = matrices.tp[0] + matrices.fn[0]
        negatives = matrices.fp[0] + matrices.tn[0]
        return auc - z * hanley_mcneil_se(auc, positives, negatives)

    return _derived_from_matrices(lower_bound, name, eval_config, model_name, output_name,
                                  sub_key, aggregation_type, class_weights, example_weighted)


class AucLowerBound(metric_types.Metric):
    """TFMA metric ``auc_lower_bound``: AUC - z * its Hanley-McNeil standard error."""

    z = DEFAULT_Z

    def __init__(self, name: str = AUC_LOWER_BOUND_NAME):
        super().__init__(metric_util.merge_per_key_computations(_auc_lower_bound), name=name,
                         z=self.z)


# A MetricConfig names the class at another z (``AucLowerBound_z2p5``) instead of passing
# ``config='{"z": 2.5}'``: TFX stores the EvalConfig in ML Metadata as JSON, where that
# string's quotes become backslashes, and ML Metadata's PostgreSQL store fails on any
# backslash in a property (libpq's E'...' literal is quoted once more: a syntax error).
_Z_CLASS = "AucLowerBound_z"


def auc_lower_bound_class(z: float) -> str:
    """The class name of :class:`AucLowerBound` at ``z`` standard errors."""
    if z == DEFAULT_Z:
        return AucLowerBound.__name__
    return _Z_CLASS + repr(float(z)).replace(".", "p").replace("-", "m")


@functools.lru_cache(maxsize=None)
def _at_z(name: str) -> type:
    # One class object per name: pickle finds a class by its module and name.
    z = float(name[len(_Z_CLASS):].replace("p", ".").replace("m", "-"))
    return type(name, (AucLowerBound,), {"z": z, "__module__": __name__, "__qualname__": name})


def __getattr__(name: str):
    """``AucLowerBound_z<z>`` classes, made when TFMA looks them up by name."""
    if name.startswith(_Z_CLASS):
        try:
            return _at_z(name)
        except ValueError:
            pass
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def prior_log_loss(positive_share: float) -> float:
    """Log loss of predicting ``positive_share`` for every example."""
    share = min(max(positive_share, EPSILON), 1 - EPSILON)
    return -(share * math.log(share) + (1 - share) * math.log(1 - share))


class _LogLossGainCombiner(beam.CombineFn):
    """Accumulates [weight, weighted positives, weighted log loss]."""

    def __init__(self, key: metric_types.MetricKey, loss_key: metric_types.MetricKey,
                 eval_config, aggregation_type, class_weights, example_weighted: bool):
        self._key, self._loss_key, self._eval_config = key, loss_key, eval_config
        self._aggregation_type, self._class_weights = aggregation_type, class_weights
        self._example_weighted = example_weighted

    def create_accumulator(self) -> List[float]:
        """Nothing seen yet."""
        return [0.0, 0.0, 0.0]

    def add_input(self, accumulator: List[float], element) -> List[float]:
        """Add each (label, prediction, weight) of one example."""
        for label, prediction, weight in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._key.model_name,
                output_name=self._key.output_name, sub_key=self._key.sub_key,
                aggregation_type=self._aggregation_type, class_weights=self._class_weights,
                example_weighted=self._example_weighted):
            weight, label = float(weight), float(label)
            probability = min(max(float(prediction), EPSILON), 1 - EPSILON)
            accumulator[0] += weight
            accumulator[1] += weight * label
            accumulator[2] -= weight * (label * math.log(probability)
                                        + (1 - label) * math.log(1 - probability))
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[List[float]]) -> List[float]:
        """Sum partial accumulators."""
        merged = [0.0, 0.0, 0.0]
        for accumulator in accumulators:
            merged = [a + b for a, b in zip(merged, accumulator)]
        return merged

    def extract_output(self, accumulator: List[float]) -> Dict[metric_types.MetricKey, float]:
        """Prior's log loss minus the model's, and the model's (NaN without examples)."""
        total, positives, loss = accumulator
        if total <= 0:
            return {self._key: float("nan"), self._loss_key: float("nan")}
        return {self._key: prior_log_loss(positives / total) - loss / total,
                self._loss_key: loss / total}


def _log_loss_gain(name: str = LOG_LOSS_GAIN_NAME, eval_config=None, model_name: str = "",
                   output_name: str = "", sub_key: Optional[metric_types.SubKey] = None,
                   aggregation_type=None, class_weights: Optional[Dict[int, float]] = None,
                   example_weighted: bool = False) -> metric_types.MetricComputations:
    key, loss_key = (metric_types.MetricKey(name=metric, model_name=model_name,
                                            output_name=output_name, sub_key=sub_key,
                                            example_weighted=example_weighted)
                     for metric in (name, LOG_LOSS_NAME))
    return [metric_types.MetricComputation(
        keys=[key, loss_key], preprocessors=None,
        combiner=_LogLossGainCombiner(key, loss_key, eval_config, aggregation_type,
                                      class_weights, example_weighted))]


class LogLossGain(metric_types.Metric):
    """TFMA metric ``log_loss_gain``: the prior's log loss minus the model's."""

    def __init__(self, name: str = LOG_LOSS_GAIN_NAME):
        super().__init__(metric_util.merge_per_key_computations(_log_loss_gain), name=name)


metric_types.register_metric(AucLowerBound)
metric_types.register_metric(LogLossGain)
