"""The Keras families (linear: logistic regression; dnn: hidden layers) and what every
family's export shares.

The SavedModel :mod:`cartola.models.trainer` exports embeds the Transform graph and has two
signatures, whatever the family:

* ``serving_default``: ``examples`` = serialized ``tf.Example`` protos of raw features (no
  label needed); TF Serving, TFMA and batch scoring call this one.
* ``predict_raw``: one float tensor per numeric feature and one string tensor per categorical
  feature, by name; NaN (or '') marks a missing value.

Both return ``{"probability": [batch, 1]}``, the PRO probability.
"""
from __future__ import annotations

import os
import time
from typing import Any, Dict, List, Sequence

# TFX 1.16 expects Keras 2; TF 2.16 ships Keras 3 unless this is set before TF is imported.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=wrong-import-position
import tensorflow as tf
import tf_keras
from tfx_bsl.public import tfxio

from cartola.models import features
from cartola.config import worker_count

OUTPUT_KEY = "probability"


# Derived batch sizes keep an epoch near this many steps, so early stopping looks at the
# validation loss about as often per row seen on 20 thousand rows as on millions.
STEPS_PER_EPOCH = 50
MIN_BATCH, MAX_BATCH = 256, 8192


def training_plan(train_rows: int, configured_batch: int) -> Dict[str, int]:
    """Batch size and steps per epoch for ``train_rows`` examples: the configured batch size
    when it is > 0, else the largest power of two up to ``train_rows / STEPS_PER_EPOCH``,
    kept within [MIN_BATCH, MAX_BATCH]."""
    if configured_batch > 0:
        batch = configured_batch
    else:
        target = max(train_rows // STEPS_PER_EPOCH, 1)
        batch = min(max(1 << (target.bit_length() - 1), MIN_BATCH), MAX_BATCH)
    return {"batch_size": batch, "steps_per_epoch": max(-(-train_rows // batch), 1)}


def count_records(file_patterns) -> int:
    """Examples in TFRecord files (gzip or not), counted in TensorFlow, not in Python."""
    files = sorted(name for pattern in file_patterns for name in tf.io.gfile.glob(pattern))
    compression = "GZIP" if files and all(name.endswith(".gz") for name in files) else ""
    records = tf.data.TFRecordDataset(files, compression_type=compression)
    return int(records.reduce(tf.constant(0, tf.int64), lambda count, _: count + 1))


def set_threads(threads: int) -> str:
    """Ask TensorFlow for ``threads`` intra-op and inter-op threads (0: leave TF's default,
    every core); say what is in effect. TF fixes its thread pools when its runtime starts,
    so a process that already ran TensorFlow keeps what it has."""
    if threads > 0:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:
            pass
    cores = worker_count(0)
    intra = tf.config.threading.get_intra_op_parallelism_threads() or cores
    inter = tf.config.threading.get_inter_op_parallelism_threads() or cores
    kept = " (TensorFlow already started in this process)" if threads and (
        intra, inter) != (threads, threads) else ""
    return f"TF threads: {intra} intra-op, {inter} inter-op{kept}"


def dataset(file_pattern, data_accessor, tf_transform_output, spec, shuffle: bool,
            batch_size: int):
    """Transformed examples as (features, label) batches, one pass."""
    return data_accessor.tf_dataset_factory(
        file_pattern,
        tfxio.TensorFlowDatasetOptions(
            batch_size=batch_size, label_key=features.LABEL_KEY, num_epochs=1,
            shuffle=shuffle, shuffle_seed=spec["seed"]),
        tf_transform_output.transformed_metadata.schema)


def feature_keys(spec: Dict[str, Any]) -> List[str]:
    """The transformed features every family reads, numeric first."""
    return [features.transformed_name(name) for name in features.raw_features(spec)]


def build_model(spec: Dict[str, Any], tf_transform_output=None,
                hidden_units: Sequence[int] = ()) -> tf_keras.Model:
    """Transformed features -> ``hidden_units`` ReLU layers (none: logistic regression) ->
    sigmoid unit."""
    inputs, encoded = {}, []
    for name in spec["numeric"]:
        key = features.transformed_name(name)
        inputs[key] = tf_keras.Input(shape=(1,), name=key, dtype=tf.float32)
        encoded.append(inputs[key])
    for name in spec["categorical"]:
        key = features.transformed_name(name)
        inputs[key] = tf_keras.Input(shape=(1,), name=key, dtype=tf.int64)
        size = tf_transform_output.vocabulary_size_by_name(name) + spec["oov_buckets"]
        encoded.append(tf_keras.layers.CategoryEncoding(num_tokens=size, output_mode="one_hot")(
            inputs[key]))
    hidden = encoded[0] if len(encoded) == 1 else tf_keras.layers.Concatenate()(encoded)
    for units in hidden_units:
        hidden = tf_keras.layers.Dense(units, activation="relu")(hidden)
    output = tf_keras.layers.Dense(1, activation="sigmoid", name=OUTPUT_KEY)(hidden)
    model = tf_keras.Model(inputs=inputs, outputs=output)
    model.compile(
        optimizer=tf_keras.optimizers.Adam(learning_rate=spec["learning_rate"]),
        loss="binary_crossentropy",
        metrics=[tf_keras.metrics.AUC(name="auc")])
    return model


def _raw_spec_without_label(tf_transform_output, spec):
    raw = dict(tf_transform_output.raw_feature_spec())
    wanted = set(features.raw_features(spec))
    return {name: feature for name, feature in raw.items() if name in wanted}


def _to_raw_tensor(value: tf.Tensor, feature) -> Any:
    """A by-name input (NaN or '' = missing) in the form the raw feature spec parses to."""
    value = tf.reshape(value, [-1])
    present = tf.math.is_finite(value) if value.dtype.is_floating else tf.not_equal(value, "")
    if isinstance(feature, tf.io.FixedLenFeature):
        if feature.dtype.is_integer:
            value = tf.where(present, value, 0.0)  # validation keeps required ints complete
        return tf.reshape(tf.cast(value, feature.dtype), [-1] + list(feature.shape))
    indices = tf.where(present)
    return tf.SparseTensor(
        indices=tf.concat([indices, tf.zeros_like(indices)], axis=1),
        values=tf.cast(tf.gather_nd(value, indices), feature.dtype),
        dense_shape=tf.stack([tf.shape(value, out_type=tf.int64)[0], tf.constant(1, tf.int64)]))


def add_signatures(model: tf_keras.Model, tf_transform_output, spec) -> Dict[str, Any]:
    """Serving signatures that apply the Transform graph before the model."""
    model.tft_layer = tf_transform_output.transform_features_layer()
    raw_spec = _raw_spec_without_label(tf_transform_output, spec)

    def predict(raw: Dict[str, Any]) -> Dict[str, tf.Tensor]:
        transformed = model.tft_layer(raw)
        model_inputs = {key: transformed[key] for key in feature_keys(spec)}
        return {OUTPUT_KEY: model(model_inputs)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(serialized):
        return predict(tf.io.parse_example(serialized, raw_spec))

    by_name = [tf.TensorSpec([None], tf.float32, name=name) for name in spec["numeric"]] + [
        tf.TensorSpec([None], tf.string, name=name) for name in spec["categorical"]]
    names = features.raw_features(spec)

    @tf.function(input_signature=by_name)
    def serve_raw(*tensors):
        return predict({name: _to_raw_tensor(tensor, raw_spec[name])
                        for name, tensor in zip(names, tensors)})

    return {"serving_default": serve_examples.get_concrete_function(),
            "predict_raw": serve_raw.get_concrete_function()}


class EpochSummary(tf_keras.callbacks.Callback):
    """One line every ``every`` epochs and one for the last epoch (saying whether early
    stopping ended the fit), instead of Keras's line per epoch."""

    def __init__(self, every: int, max_epochs: int, write=print):
        super().__init__()
        self.every, self.max_epochs, self.write = every, max_epochs, write
        self.begun = time.monotonic()
        self.last: tuple = ()

    def on_train_begin(self, logs=None):  # pylint: disable=unused-argument
        """Start the clock the lines show."""
        self.begun = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        """A line every ``every`` epochs; remember the rest for the last line."""
        self.last = (epoch + 1, dict(logs or {}), False)
        if (epoch + 1) % self.every == 0:
            self._line(*self.last[:2])
            self.last = (epoch + 1, self.last[1], True)

    def on_train_end(self, logs=None):  # pylint: disable=unused-argument
        """The last epoch's line, and whether early stopping ended the fit."""
        if not self.last:
            return
        epoch, values, printed = self.last
        if not printed:
            self._line(epoch, values)
        if epoch < self.max_epochs:
            self.write(f"early stopping after epoch {epoch}/{self.max_epochs} "
                       "(best weights restored)")

    def _line(self, epoch: int, values: dict) -> None:
        metrics = " - ".join(f"{name}: {value:.4f}" for name, value in sorted(values.items()))
        self.write(f"epoch {epoch}/{self.max_epochs} - {metrics} "
                   f"({time.monotonic() - self.begun:.1f} s)")


def train_keras(splits, tf_transform_output, spec, hidden_units: Sequence[int]) -> tf_keras.Model:
    """Fit a Keras family on ``splits`` (:class:`cartola.models.splits.Splits`) with early
    stopping on the eval split's loss (best weights)."""
    tf_keras.utils.set_random_seed(spec["seed"])
    model = build_model(spec, tf_transform_output, hidden_units)
    model.fit(
        splits.train, validation_data=splits.evaluation, epochs=spec["max_epochs"], verbose=0,
        callbacks=[
            EpochSummary(spec["log_every"], spec["max_epochs"]),
            tf_keras.callbacks.EarlyStopping(monitor="val_loss", patience=spec["patience"],
                                             restore_best_weights=True),
            tf_keras.callbacks.TensorBoard(log_dir=splits.log_dir)])
    return model
