"""preprocessing_fn and run_fn on small hand-made data (real tf.Transform and Keras)."""
# pylint: disable=redefined-outer-name
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=wrong-import-position,import-outside-toplevel
import tensorflow as tf

from cartola.config import load_config
from cartola.models import features, model_info
from cartola.models.preprocessing import log1p_or_nan

SPEC = features.feature_spec(load_config(environ={}, max_epochs=3, batch_size=32))
NUMERIC = SPEC["numeric"]


def _rows(n=240, seed=0):
    """Rows like the sample data; row 0 has a missing and row 1 a negative tempo_desperd."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {"anos_como_pro": int(rng.integers(0, 5)), "avg_3": float(rng.gamma(2, 0.4)),
               "avg_4": float(rng.gamma(2, 0.4)), "escalacoes": int(rng.poisson(20)),
               "norm_escalacao": float(rng.random()), "tempo_desperd": float(rng.lognormal(3, 1))}
        row["pro_target"] = int(row["anos_como_pro"] + row["avg_3"] > 2.5)
        if i == 0:
            row["tempo_desperd"] = None
        if i == 1:
            row["tempo_desperd"] = -5.0
        rows.append(row)
    return rows


def _raw_schema():
    from tensorflow_metadata.proto.v0 import schema_pb2
    schema = schema_pb2.Schema()
    for name in NUMERIC + ["pro_target"]:
        feature = schema.feature.add(name=name)
        feature.type = (schema_pb2.INT if name in ("anos_como_pro", "escalacoes", "pro_target")
                        else schema_pb2.FLOAT)
        if name == "tempo_desperd":  # optional column: a sparse (VarLen) feature
            feature.value_count.min, feature.value_count.max = 0, 1
        else:
            feature.shape.dim.add(size=1)
            feature.presence.min_fraction = 1.0
    return schema


def _example(row) -> bytes:
    feats = {}
    for name, value in row.items():
        if value is None:
            continue
        if isinstance(value, int):
            feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))
        else:
            feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
    return tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


@pytest.fixture(scope="module")
def transformed(tmp_path_factory):
    """Run the real preprocessing_fn with tf.Transform on Beam's DirectRunner."""
    import tensorflow_transform.beam as tft_beam
    from tensorflow_transform.tf_metadata import dataset_metadata, metadata_io
    from tfx_bsl.public import tfxio

    from tfx_utils import preprocessing_fn
    work = tmp_path_factory.mktemp("tft")
    rows = _rows()
    raw_path = str(work / "raw.tfrecord")
    with tf.io.TFRecordWriter(raw_path) as writer:
        for row in rows:
            writer.write(_example(row))
    schema = _raw_schema()
    coder = tfxio.TFExampleRecord(file_pattern=raw_path, schema=schema)
    with tft_beam.Context(temp_dir=str(work / "tmp"), force_tf_compat_v1=False):
        import apache_beam as beam
        with beam.Pipeline() as pipeline:
            raw = pipeline | beam.Create([_example(row) for row in rows])
            decoded = raw | "Decode" >> coder.RawRecordToRecordBatch()
            (data, _), transform_fn = (
                (decoded, coder.TensorAdapterConfig())
                | tft_beam.AnalyzeAndTransformDataset(
                    lambda inputs: preprocessing_fn(inputs, SPEC), output_record_batches=True))
            _ = transform_fn | tft_beam.WriteTransformFn(str(work / "transform"))
            _ = (data | beam.FlatMap(lambda batch_and_props: _to_examples(batch_and_props[0]))
                 | beam.io.WriteToTFRecord(str(work / "transformed" / "part")))
    # TFX's Transform writes the raw metadata beside transform_fn; serving parses with it.
    metadata_io.write_metadata(dataset_metadata.DatasetMetadata(schema),
                               str(work / "transform" / "metadata"))
    return work, rows


def _to_examples(record_batch):
    table = record_batch.to_pydict()
    for i in range(record_batch.num_rows):
        feats = {}
        for name, column in table.items():
            values = column[i]
            if isinstance(values[0], int):
                feats[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=values))
            else:
                feats[name] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
        yield tf.train.Example(features=tf.train.Features(feature=feats)).SerializeToString()


def test_log1p_per_value():
    values = tf.constant([0.0, math.e - 1, -1.0, float("nan")])
    out = log1p_or_nan(values).numpy()
    assert out[0] == 0.0 and out[1] == pytest.approx(1.0)
    assert math.isnan(out[2]) and math.isnan(out[3])


def test_preprocessing_imputes_and_scales_per_value(transformed):
    import tensorflow_transform as tft
    work, rows = transformed
    output = tft.TFTransformOutput(str(work / "transform"))
    layer = output.transform_features_layer()
    spec = {k: v for k, v in output.raw_feature_spec().items() if k != "pro_target"}
    raw = tf.io.parse_example([_example({k: v for k, v in row.items() if k != "pro_target"})
                               for row in rows], spec)
    out = {key: value.numpy().ravel() for key, value in layer(raw).items()}
    tempo = out[features.transformed_name("tempo_desperd")]
    assert np.all(np.isfinite(tempo)), "a missing or negative value poisoned the batch"
    # Missing (row 0) and negative (row 1) values are imputed with the mean: z-score 0.
    assert tempo[0] == pytest.approx(0.0, abs=1e-5) and tempo[1] == pytest.approx(0.0, abs=1e-5)
    valid = np.array([r["tempo_desperd"] for r in rows[2:]])
    logs = np.log1p(valid)
    assert tempo[2] == pytest.approx((logs[0] - logs.mean()) / logs.std(), rel=1e-3)
    ceil = np.minimum([r["avg_3"] for r in rows], 1.0)
    avg3 = out[features.transformed_name("avg_3")]
    assert avg3 == pytest.approx((ceil - ceil.mean()) / ceil.std(), rel=1e-3, abs=1e-4)
    for name in NUMERIC:
        column = out[features.transformed_name(name)]
        assert abs(column.mean()) < 1e-4 and column.std() == pytest.approx(1.0, rel=1e-2)


def _fn_args(work, tmp_path, spec):
    """The Trainer's FnArgs on the fixture's transformed examples (train and eval alike)."""
    from tfx.components.trainer.fn_args_utils import DataAccessor, FnArgs
    from tfx_bsl.public import tfxio

    def dataset_factory(files, options, schema):
        return tfxio.TFExampleRecord(file_pattern=files, schema=schema).TensorFlowDataset(options)

    return FnArgs(
        train_files=[str(work / "transformed" / "part*")],
        eval_files=[str(work / "transformed" / "part*")],
        transform_graph_path=str(work / "transform"),
        serving_model_dir=str(tmp_path / "serving"), model_run_dir=str(tmp_path / "logs"),
        data_accessor=DataAccessor(tf_dataset_factory=dataset_factory, record_batch_factory=None,
                                   data_view_decode_fn=None),
        custom_config=spec)


@pytest.mark.parametrize("family", ["linear", "gbt", "auto"])
def test_run_fn_exports_model_scoring_raw_examples(transformed, tmp_path, family):
    import tensorflow_transform as tft

    from tfx_utils import run_fn
    work, rows = transformed
    output = tft.TFTransformOutput(str(work / "transform"))
    fn_args = _fn_args(work, tmp_path, {**SPEC, "model_family": family})
    assert output.transformed_metadata.schema is not None
    run_fn(fn_args)

    info = model_info.read_info(tmp_path / "serving")
    assert [c["family"] for c in info["candidates"]] == (
        ["linear", "dnn", "gbt"] if family == "auto" else [family])
    assert info["family"] in {c["family"] for c in info["candidates"]}
    assert model_info.label_of(info) == {"label": "pro_target", "positive_label": "1"}
    assert all(0.5 < c["auc"] <= 1 and c["log_loss"] > 0 for c in info["candidates"])
    assert model_info.load_ops(tmp_path / "serving") == (
        ["tensorflow_decision_forests"] if info["family"] == "gbt" else [])
    model = tf.saved_model.load(str(tmp_path / "serving"))
    unlabeled = [{k: v for k, v in row.items() if k != "pro_target"} for row in rows[:20]]
    by_example = model.signatures["serving_default"](
        examples=tf.constant([_example(row) for row in unlabeled]))["probability"].numpy().ravel()
    assert by_example.shape == (20,)
    assert np.all((by_example > 0) & (by_example < 1))
    by_name = model.signatures["predict_raw"](**{
        name: tf.constant([float("nan") if row[name] is None else float(row[name])
                           for row in unlabeled], tf.float32)
        for name in NUMERIC})["probability"].numpy().ravel()
    np.testing.assert_allclose(by_name, by_example, rtol=1e-5)
    labels = np.array([row["pro_target"] for row in rows[:20]])
    assert by_example[labels == 1].mean() > by_example[labels == 0].mean()


def test_epoch_summary_prints_every_n_epochs_the_last_and_early_stopping():
    import tf_keras
    from cartola.models.model import EpochSummary
    x = np.linspace(-1, 1, 64, dtype="float32").reshape(-1, 1)
    y = (x > 0).astype("float32")

    def fit(epochs, callbacks):
        model = tf_keras.Sequential([tf_keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="sgd", loss="binary_crossentropy")
        model.fit(x, y, epochs=epochs, verbose=0, callbacks=callbacks)

    lines: list = []
    fit(7, [EpochSummary(3, 7, lines.append)])
    assert [line.split(" - ")[0] for line in lines] == ["epoch 3/7", "epoch 6/7", "epoch 7/7"]
    assert all("loss: " in line and line.endswith(" s)") for line in lines), lines

    lines = []
    # patience 0 on a loss that cannot improve by 10: the second epoch ends the fit
    stop = tf_keras.callbacks.EarlyStopping(monitor="loss", patience=0, min_delta=10.0)
    fit(50, [stop, EpochSummary(10, 50, lines.append)])
    assert [line.split(" - ")[0] for line in lines] == ["epoch 2/50",
                                                        "early stopping after epoch 2/50 "
                                                        "(best weights restored)"]


def test_training_plan_grows_the_batch_with_the_data():
    from cartola.models.model import training_plan
    # The sample's 15,000 training rows keep the batch of 256 (59 steps per epoch).
    assert training_plan(15_000, 0) == {"batch_size": 256, "steps_per_epoch": 59}
    assert training_plan(75_000, 0) == {"batch_size": 1024, "steps_per_epoch": 74}
    assert training_plan(750_000, 0) == {"batch_size": 8192, "steps_per_epoch": 92}
    assert training_plan(7_500_000, 0)["batch_size"] == 8192
    assert training_plan(10, 0) == {"batch_size": 256, "steps_per_epoch": 1}
    assert training_plan(750_000, 32) == {"batch_size": 32, "steps_per_epoch": 23_438}


def test_count_records_reads_gzip_and_plain_tfrecords(tmp_path):
    from cartola.models.model import count_records
    for name, options in (("part-0.gz", "GZIP"), ("part-1.gz", "GZIP")):
        with tf.io.TFRecordWriter(str(tmp_path / name), options) as writer:
            for index in range(7):
                writer.write(f"record {index}".encode())
    (tmp_path / "plain").mkdir()
    with tf.io.TFRecordWriter(str(tmp_path / "plain" / "part-0")) as writer:
        writer.write(b"one")
    assert count_records([str(tmp_path / "*.gz")]) == 14
    assert count_records([str(tmp_path / "plain" / "*")]) == 1


def test_trainer_threads_apply_at_tf_start_and_say_when_tf_had_started():
    code = ("from cartola.models.model import set_threads; import tensorflow as tf; "
            "print(set_threads(1)); tf.constant(1) + 1; print(set_threads(2))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=300)
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == "TF threads: 1 intra-op, 1 inter-op"
    assert second == ("TF threads: 1 intra-op, 1 inter-op (TensorFlow already started in this "
                      "process)")


def test_one_standard_error_rule_prefers_the_simpler_family_within_noise():
    from cartola.models.trainer import one_standard_error_choice
    rng = np.random.default_rng(0)
    simple = rng.exponential(0.4, 400)
    assert one_standard_error_choice([simple, simple - 0.001 + rng.normal(0, 0.05, 400)]) == 0
    assert one_standard_error_choice([simple, simple - 0.05]) == 1  # clearly better
    assert one_standard_error_choice([simple + 0.1, simple]) == 1


@pytest.mark.parametrize("cache_mb", [0.0, 1024.0])
def test_splits_read_once_keep_the_rows_and_reshuffle_each_epoch(transformed, tmp_path, cache_mb):
    import tensorflow_transform as tft

    from cartola.models.model import count_records, feature_keys, training_plan
    from cartola.models.splits import Splits
    work, rows = transformed
    spec = {**SPEC, "cache_mb": cache_mb}
    fn_args = _fn_args(work, tmp_path, spec)
    train_rows = count_records(fn_args.train_files)
    splits = Splits(fn_args, tft.TFTransformOutput(str(work / "transform")), spec,
                    training_plan(train_rows, 32), train_rows)
    assert splits.cached == (cache_mb > 0) and train_rows == splits.eval_rows == len(rows)
    assert splits.megabytes == pytest.approx(
        2 * len(rows) * (len(feature_keys(spec)) + 1) * 8 / 1e6)
    assert ("kept in memory" if cache_mb else "read from disk each epoch") in splits.describe()
    key = feature_keys(spec)[0]

    def epoch(dataset):
        return np.concatenate([batch[key].numpy().ravel() for batch, _ in dataset])

    first, second = epoch(splits.train), epoch(splits.train)
    # Every epoch holds every row once, in a new order; evaluation keeps file order.
    assert sorted(first) == sorted(second) and len(first) == len(rows)
    assert not np.array_equal(first, second)
    assert np.array_equal(epoch(splits.evaluation), epoch(splits.evaluation))
