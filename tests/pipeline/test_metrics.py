"""The blessing's metrics: AUC lower bound (Hanley-McNeil) and log-loss gain over the prior,
as functions and as TFMA metrics computed by TFMA itself on a DataFrame."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import log_loss, roc_auc_score, roc_curve

from cartola.pipeline.metrics import (auc_from_matrices, hanley_mcneil_se, prior_log_loss)
from pipeline_helpers import FakeMatrices  # pylint: disable=wrong-import-order


def test_hanley_mcneil_at_chance_is_the_mann_whitney_null_variance():
    positives, negatives = 300, 700
    expected = math.sqrt((positives + negatives + 1) / (12 * positives * negatives))
    assert hanley_mcneil_se(0.5, positives, negatives) == pytest.approx(expected)
    assert hanley_mcneil_se(0.9, positives, negatives) < expected  # tighter far from chance
    assert math.isnan(hanley_mcneil_se(0.7, 0, 10))


def test_auc_from_matrices_matches_sklearn():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 3000)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)
    thresholds = np.sort(np.unique(np.concatenate([[-1e-7], scores])))
    assert auc_from_matrices(FakeMatrices(scores, labels, thresholds)) == pytest.approx(
        roc_auc_score(labels, scores), abs=1e-6)
    assert math.isnan(auc_from_matrices(FakeMatrices(scores, np.ones(3000, int), [0.5])))


def test_prior_log_loss_is_the_constant_models():
    labels = np.array([1] * 30 + [0] * 70)
    assert prior_log_loss(0.3) == pytest.approx(log_loss(labels, np.full(100, 0.3)))


def _tfma_metrics(labels, predictions, z: float = 1.96):
    import tensorflow_model_analysis as tfma  # pylint: disable=import-outside-toplevel

    from cartola.config import load_config  # pylint: disable=import-outside-toplevel
    from cartola.pipeline.definition import eval_config  # pylint: disable=import-outside-toplevel
    config = eval_config(load_config(environ={}, auc_noise_z=z))
    del config.model_specs[:]
    config.model_specs.add(label_key="label", prediction_key="prediction")
    del config.slicing_specs[1:]
    for metric in config.metrics_specs[0].metrics:  # no baseline here: values only
        del metric.per_slice_thresholds[:]
    result = tfma.analyze_raw_data(
        pd.DataFrame({"label": labels.astype(float), "prediction": predictions}), config)
    overall = dict(result.slicing_metrics)[()]
    return {name: value.get("doubleValue") for name, value in overall[""][""].items()}


def test_tfma_metrics_tell_signal_from_noise():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 2000)
    informative = np.clip(rng.normal(0.35 + 0.3 * labels, 0.15), 0.01, 0.99)
    figures = _tfma_metrics(labels, informative)
    auc = roc_auc_score(labels, informative)
    se = hanley_mcneil_se(auc, labels.sum(), (1 - labels).sum())
    assert figures["auc_lower_bound"] == pytest.approx(auc - 1.96 * se, abs=2e-3)
    assert figures["log_loss_gain"] == pytest.approx(
        prior_log_loss(labels.mean()) - log_loss(labels, informative), abs=1e-4)
    assert figures["log_loss"] == pytest.approx(log_loss(labels, informative), abs=1e-4)
    assert figures["auc_lower_bound"] > 0.5 and figures["log_loss_gain"] > 0
    noise = rng.random(2000)  # no signal, and far from the prior: both gates fail
    figures = _tfma_metrics(labels, noise)
    assert figures["auc_lower_bound"] < 0.5 and figures["log_loss_gain"] < 0



@pytest.mark.parametrize("z", [1.96, 2.5])
def test_eval_config_holds_no_backslash_and_tfma_computes_the_lower_bound_at_z(z):
    """TFX stores the EvalConfig in ML Metadata as JSON; ML Metadata's PostgreSQL store fails
    on a backslash (an escaped quote of a metric's config string), so z travels in the
    metric's class name."""
    from google.protobuf import json_format  # pylint: disable=import-outside-toplevel

    from cartola.pipeline import metrics  # pylint: disable=import-outside-toplevel
    from cartola.config import load_config  # pylint: disable=import-outside-toplevel
    from cartola.pipeline.definition import eval_config  # pylint: disable=import-outside-toplevel
    assert "\\" not in json_format.MessageToJson(eval_config(load_config(environ={},
                                                                          auc_noise_z=z)))
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 2000)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0.01, 0.99)
    auc = roc_auc_score(labels, scores)
    se = hanley_mcneil_se(auc, labels.sum(), (1 - labels).sum())
    figures = _tfma_metrics(labels, scores, z)
    assert figures["auc_lower_bound"] == pytest.approx(auc - z * se, abs=2e-3)
    fpr, tpr, _ = roc_curve(labels, scores)  # KS, from the same confusion matrices in TFMA
    assert figures["ks"] == pytest.approx(float(np.max(tpr - fpr)), abs=2e-3)
    cls = getattr(metrics, metrics.auc_lower_bound_class(z))
    assert pickle.loads(pickle.dumps(cls)) is cls and cls().kwargs["z"] == z
