"""The Trainer's transformed splits as tf.data pipelines, read from disk once: kept in memory
for every later epoch and every candidate family when they fit in ``cache_mb``.

Reading and parsing the transformed examples is most of an epoch's cost (on 1M rows, about
18 s of each epoch against well under a second of a linear model's steps), and early
stopping runs tens of epochs, each with a pass over the eval split, for each family.
"""
from __future__ import annotations

from typing import Any, Dict

from cartola.models.model import count_records, dataset, feature_keys

# Bytes a cached row takes, at most: every feature and the label as a 64-bit value.
BYTES_PER_VALUE = 8


class Splits:  # pylint: disable=too-few-public-methods
    """``train`` (shuffled, batches of ``plan["batch_size"]``) and ``evaluation`` (in file
    order) for one Trainer run; ``cached`` says whether they stay in memory; ``log_dir`` is
    where Keras's TensorBoard logs go."""

    def __init__(self, fn_args, tf_transform_output, spec: Dict[str, Any],
                 plan: Dict[str, int], train_rows: int):
        self.train_rows, self.log_dir = train_rows, fn_args.model_run_dir
        self.eval_rows = count_records(fn_args.eval_files)
        row_bytes = (len(feature_keys(spec)) + 1) * BYTES_PER_VALUE
        self.megabytes = (train_rows + self.eval_rows) * row_bytes / 1e6
        self.cached = self.megabytes <= float(spec.get("cache_mb", 0))
        train = dataset(fn_args.train_files, fn_args.data_accessor, tf_transform_output, spec,
                        True, plan["batch_size"])
        evaluation = dataset(fn_args.eval_files, fn_args.data_accessor, tf_transform_output,
                             spec, False, plan["batch_size"])
        if self.cached:
            # The first pass fixes each batch's rows (already shuffled on reading); every
            # epoch then visits the batches in a new seeded order.
            train = train.cache().shuffle(plan["steps_per_epoch"], seed=spec["seed"],
                                          reshuffle_each_iteration=True)
            evaluation = evaluation.cache()
        self.train, self.evaluation = train, evaluation

    def describe(self) -> str:
        """One line for the Trainer's log."""
        where = "kept in memory" if self.cached else "read from disk each epoch"
        return (f"{self.train_rows} train and {self.eval_rows} eval rows, "
                f"~{self.megabytes:.0f} MB transformed: {where}")
