"""Trainer's ``run_fn``: trains the configured model family, or, with ``auto``, every
candidate family on the train split and keeps the one with the lowest eval-split log loss,
by the one-standard-error rule: the simplest family (linear, then dnn, then gbt) whose log
loss is within one standard error (of the per-example loss difference, paired on the same
eval rows) of the lowest, so that a small eval split's noise does not pick a complex model.
It exports it (signatures in :mod:`cartola.models.model`), recording each candidate's eval
AUC, log loss and training time in the SavedModel (:mod:`cartola.models.model_info`).
With ``keep_candidates``, every candidate is also exported under the Trainer's model_run
folder (``candidates/<family>``), to compare them on other data.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=wrong-import-position
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx.components.trainer.fn_args_utils import FnArgs

from cartola.models import model as keras_models
from cartola.models import model_info
from cartola.models.splits import Splits

FAMILIES = ("linear", "dnn", "gbt")
# The dnn family's layers when hidden_units is not configured.
DEFAULT_HIDDEN_UNITS = (64, 32)
EPSILON = 1e-7


def candidates(spec: Dict[str, Any]) -> Tuple[str, ...]:
    """Families to train: the configured one, or all of them for ``auto``."""
    family = spec.get("model_family", "auto")
    return FAMILIES if family == "auto" else (family,)


def eval_scores(model, evaluation, spec) -> Tuple[np.ndarray, np.ndarray]:
    """(labels, probabilities) of ``model`` on the transformed eval split's batches."""
    labels, scores = [], []
    keys = keras_models.feature_keys(spec)
    for batch, label in evaluation:
        scores.append(np.asarray(model({key: batch[key] for key in keys})).reshape(-1))
        labels.append(label.numpy().reshape(-1))
    return np.concatenate(labels), np.concatenate(scores)


def example_losses(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Per-example log loss, probabilities clipped to [1e-7, 1 - 1e-7]."""
    clipped = np.clip(scores, EPSILON, 1 - EPSILON)
    return -np.where(labels.astype(bool), np.log(clipped), np.log(1 - clipped))


def one_standard_error_choice(losses: List[np.ndarray]) -> int:
    """Index of the first (simplest) candidate whose mean loss is within one standard error
    of the paired difference from the lowest mean loss."""
    means = [float(np.mean(loss)) for loss in losses]
    best = int(np.argmin(means))
    for index, loss in enumerate(losses[:best]):
        difference = loss - losses[best]
        error = float(np.std(difference, ddof=1) / np.sqrt(len(difference))) if len(
            difference) > 1 else 0.0
        if means[index] - means[best] <= error:
            return index
    return best


def binary_metrics(labels: np.ndarray, scores: np.ndarray) -> Dict[str, float]:
    """AUC (ties counted half) and log loss (probabilities clipped to [1e-7, 1 - 1e-7])."""
    from scipy import stats  # pylint: disable=import-outside-toplevel
    labels = labels.astype(bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    ranks = stats.rankdata(scores)
    auc = ((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives)
           if positives and negatives else float("nan"))
    return {"auc": float(auc), "log_loss": float(np.mean(example_losses(labels, scores)))}


def _train(family: str, fn_args, tf_transform_output, spec, data: Splits):
    if family == "gbt":
        from cartola.models.gbt import train_gbt  # pylint: disable=import-outside-toplevel
        return train_gbt(fn_args, tf_transform_output, spec, int(spec.get("threads", 0)),
                         data.train_rows)
    hidden = () if family == "linear" else tuple(spec["hidden_units"]) or DEFAULT_HIDDEN_UNITS
    return keras_models.train_keras(data, tf_transform_output, spec, hidden)


def run_fn(fn_args: FnArgs) -> None:
    """TFX Trainer entry point; ``fn_args.custom_config`` is
    :func:`cartola.models.features.feature_spec`."""
    spec = fn_args.custom_config
    threads = keras_models.set_threads(spec.get("threads", 0))
    tf.config.experimental.enable_op_determinism()
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
    rows = keras_models.count_records(fn_args.train_files)
    plan = keras_models.training_plan(rows, spec["batch_size"])
    data = Splits(fn_args, tf_transform_output, spec, plan, rows)
    families = candidates(spec)
    print(f"training {' and '.join(families)} on {rows} rows: batch size {plan['batch_size']} "
          f"({'configured' if spec['batch_size'] > 0 else 'derived'}), "
          f"{plan['steps_per_epoch']} steps per epoch, up to {spec['max_epochs']} epochs; "
          f"{threads}; {data.describe()}", flush=True)
    tried: List[Dict[str, Any]] = []
    models, losses = [], []
    for family in families:
        begun = time.monotonic()
        model = _train(family, fn_args, tf_transform_output, spec, data)
        seconds = time.monotonic() - begun
        labels, scores = eval_scores(model, data.evaluation, spec)
        figures = binary_metrics(labels, scores)
        models.append(model)
        losses.append(example_losses(labels, scores))
        tried.append({"family": family, "seconds": round(seconds, 1), **figures})
        print(f"{family}: eval AUC {figures['auc']:.4f}, log loss {figures['log_loss']:.4f} "
              f"({seconds:.1f} s)", flush=True)
        if spec.get("keep_candidates") and len(families) > 1:
            _export(model, family, tried[-1:], os.path.join(fn_args.model_run_dir, "candidates",
                                                            family), tf_transform_output, spec)
    chosen = one_standard_error_choice(losses)
    family = families[chosen]
    if len(families) > 1:
        print(f"selected {family}: the simplest within one standard error of the lowest eval "
              "log loss", flush=True)
    _export(models[chosen], family, tried, fn_args.serving_model_dir, tf_transform_output, spec)


def _export(model, family: str, tried, directory: str, tf_transform_output, spec) -> None:
    model.save(directory, save_format="tf",
               signatures=keras_models.add_signatures(model, tf_transform_output, spec))
    model_info.write_info(directory, family, tried, selection=spec.get("model_family", "auto"),
                          label=spec["label"], positive_label=spec.get("positive_label", ""))
