"""Gradient-boosted trees with TensorFlow Decision Forests, on the Transform output.

Trees see thresholds and interactions a linear model cannot. They learn from the same
transformed features as the Keras families (z-scores are monotone, so the splits are the
same as on the raw values; categorical features are vocabulary ids, split as categories), so
the exported SavedModel embeds the same Transform graph and has the same signatures.

Binomial log-likelihood loss with early stopping on a validation share of the train split
(TF-DF's own) keeps the probabilities calibrated; the eval split stays untouched for model
selection and the Evaluator. At most ``gbt_max_rows`` training rows are read (a seeded,
shuffled sample beyond that): TF-DF holds its training set in memory.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=wrong-import-position
import tensorflow as tf
import tensorflow_decision_forests as tfdf

from cartola.models import features
from cartola.models.model import dataset, feature_keys

# A shuffle buffer this many rows deep spreads the sample over files written in order.
SHUFFLE_ROWS = 100_000


def _int_label(batch, label):
    return batch, tf.cast(tf.reshape(label, [-1]), tf.int64)


def train_gbt(fn_args, tf_transform_output, spec, threads: int, rows: int):
    """A fitted ``GradientBoostedTreesModel`` on the ``rows``-row train split (a sample of
    ``gbt_max_rows`` of them when there are more)."""
    batch = 8192
    limit = int(spec["gbt_max_rows"])
    train = dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec,
                    shuffle=False, batch_size=batch)
    sampled = 0 < limit < rows
    if sampled:  # seeded, hence deterministic: TF-DF's check against shuffling is moot
        train = train.unbatch().shuffle(SHUFFLE_ROWS, seed=spec["seed"]).take(limit).batch(batch)
    train = train.map(_int_label)
    usage = [tfdf.keras.FeatureUsage(features.transformed_name(name),
                                     semantic=tfdf.keras.FeatureSemantic.CATEGORICAL)
             for name in spec["categorical"]] + [
        tfdf.keras.FeatureUsage(features.transformed_name(name),
                                semantic=tfdf.keras.FeatureSemantic.NUMERICAL)
        for name in spec["numeric"]]
    model = tfdf.keras.GradientBoostedTreesModel(
        task=tfdf.keras.Task.CLASSIFICATION, features=usage, exclude_non_specified_features=True,
        num_trees=int(spec["gbt_num_trees"]), random_seed=int(spec["seed"]),
        num_threads=threads or None, verbose=0, check_dataset=not sampled,
        temp_directory=os.path.join(fn_args.model_run_dir, "gbt_training"))
    model.fit(train)
    inspector = model.make_inspector()
    print(f"gbt: {inspector.num_trees()} trees on {inspector.dataspec.created_num_rows} rows"
          f"{' (a sample)' if sampled else ''}, {len(feature_keys(spec))} features", flush=True)
    return model
