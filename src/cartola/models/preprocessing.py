"""Transform's ``preprocessing_fn``: the baseline's feature engineering as TF ops.

Every step works per value, so one bad row never poisons its batch: log1p of a negative or
missing value is missing; missing values are imputed with the training mean (a tft analyzer
over the valid values only) and then z-scored with the training mean and variance.
"""
from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tensorflow_transform as tft

from cartola.models import features


def _dense(tensor) -> tf.Tensor:
    """A [batch] float tensor with NaN where the value is missing."""
    if isinstance(tensor, tf.SparseTensor):
        values = tf.cast(tensor.values, tf.float32)
        tensor = tf.sparse.to_dense(
            tf.SparseTensor(tensor.indices, values, [tensor.dense_shape[0], 1]),
            default_value=float("nan"))
    elif isinstance(tensor, tf.RaggedTensor):
        tensor = tf.cast(tensor, tf.float32).to_tensor(default_value=float("nan"), shape=[None, 1])
    return tf.reshape(tf.cast(tensor, tf.float32), [-1])


def _dense_string(tensor) -> tf.Tensor:
    """A [batch] string tensor with '' where the value is missing."""
    if isinstance(tensor, tf.SparseTensor):
        tensor = tf.sparse.to_dense(
            tf.SparseTensor(tensor.indices, tensor.values, [tensor.dense_shape[0], 1]),
            default_value="")
    return tf.reshape(tensor, [-1])


def log1p_or_nan(values: tf.Tensor) -> tf.Tensor:
    """log1p per value; negative (and missing) values become NaN."""
    valid = tf.math.is_finite(values) & (values >= 0)
    return tf.where(valid, tf.math.log1p(tf.where(valid, values, 0.0)), float("nan"))


def impute_and_scale(values: tf.Tensor) -> tf.Tensor:
    """Replace NaN by the training mean, then z-score, both learned from valid values only."""
    valid = tf.math.is_finite(values)
    present = tf.boolean_mask(values, valid)
    mean = tft.mean(present)
    std = tf.sqrt(tft.var(present))
    filled = tf.where(valid, values, mean)
    return tf.where(std > 0, (filled - mean) / tf.maximum(std, 1e-12), 0.0)


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, Any]:
    """TFX Transform entry point; ``custom_config`` is :func:`features.feature_spec`."""
    outputs = {}
    for name in custom_config["numeric"]:
        values = _dense(inputs[name])
        if name in custom_config["log"]:
            values = log1p_or_nan(values)
        if name in custom_config["clip"]:
            values = tf.minimum(values, custom_config["clip_max"])
        outputs[features.transformed_name(name)] = tf.reshape(impute_and_scale(values), [-1, 1])
    for name in custom_config["categorical"]:
        outputs[features.transformed_name(name)] = tf.reshape(
            tft.compute_and_apply_vocabulary(
                _dense_string(inputs[name]), num_oov_buckets=custom_config["oov_buckets"],
                vocab_filename=name), [-1, 1])
    label = _dense(inputs[custom_config["label"]])
    outputs[features.LABEL_KEY] = tf.reshape(label, [-1, 1])
    return outputs
