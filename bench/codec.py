"""Benchmark: the hand-written wire bytes of :mod:`cartola.codec.wire` against the library calls
that could replace them, side by side on the same rows in one run.

* encoding a batch of tf.Examples (the server's and in-process scoring's hot path):
  :func:`cartola.serving.model.build_examples` against ``tf.train.Example(...)``
  ``.SerializeToString()`` per row;
* reading TFRecord files (``cartola monitor``): :func:`cartola.codec.wire.read_records`
  against ``tf.data.TFRecordDataset``.

Both sides must give the same bytes; the ratios are library time / hand-written time.

    python bench/codec.py [--rows 20000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# pylint: disable=wrong-import-position
import tensorflow as tf

from cartola.codec.wire import read_records
from cartola.serving.model import RawFeature, build_examples

FEATURES = {"age": RawFeature("age", "int", True), "income": RawFeature("income", "float", True),
            "region": RawFeature("region", "string", True)}


def _columns(rows: int) -> dict:
    rng = np.random.default_rng(0)
    return {"age": rng.integers(18, 90, rows).astype(np.int64),
            "income": rng.normal(3000, 800, rows).astype(np.float32).astype(np.float64),
            "region": [f"r{i}" for i in rng.integers(0, 20, rows)]}


def _library(columns: dict) -> list:
    out = []
    for age, income, region in zip(columns["age"], columns["income"], columns["region"]):
        out.append(tf.train.Example(features=tf.train.Features(feature={
            "age": tf.train.Feature(int64_list=tf.train.Int64List(value=[int(age)])),
            "income": tf.train.Feature(float_list=tf.train.FloatList(value=[float(income)])),
            "region": tf.train.Feature(bytes_list=tf.train.BytesList(value=[region.encode()])),
        })).SerializeToString())
    return out


def _best(function, repeat: int) -> tuple:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    """Print both comparisons."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    columns = _columns(args.rows)

    hand, ours = _best(lambda: build_examples(columns, FEATURES), args.repeat)
    library, theirs = _best(lambda: _library(columns), args.repeat)
    same = [tf.train.Example.FromString(a) == tf.train.Example.FromString(b)
            for a, b in zip(ours, theirs)]
    print(f"encode {args.rows} rows: codec {hand * 1e3:.1f} ms, tf.train.Example "
          f"{library * 1e3:.1f} ms, ratio {library / hand:.1f}x (same examples: {all(same)})")

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "rows.tfrecord"
        with tf.io.TFRecordWriter(str(path)) as writer:
            for record in ours * 5:
                writer.write(record)
        hand, ours = _best(lambda: list(read_records([path])), args.repeat)
        library, theirs = _best(
            lambda: [t.numpy() for t in tf.data.TFRecordDataset(str(path))], args.repeat)
        print(f"read {len(ours)} records: codec {hand * 1e3:.1f} ms, tf.data.TFRecordDataset "
              f"{library * 1e3:.1f} ms, ratio {library / hand:.1f}x (same records: "
              f"{ours == theirs})")


if __name__ == "__main__":
    main()
