"""The TFX pipeline, built from the project config. Runners (local, Airflow) live elsewhere.

CsvExampleGen -> StatisticsGen -> ImportSchemaGen (curated schema) -> ExampleValidator ->
DataValidationGate -> Transform -> Trainer -> Evaluator (baseline: the model served now) ->
Pusher (atomic integer versions).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Optional

import tensorflow_model_analysis as tfma
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from cartola.components import AtomicPushExecutor, DataValidationGate
from cartola.config import Config, ConfigError
from cartola.data.csv_example_gen import csv_example_gen
from cartola.metadata import metadata_connection_config
from cartola.metrics import KolmogorovSmirnov
from cartola.models import features
from cartola.registry.baseline import ServedModelStrategy

PREPROCESSING_FN = "tfx_utils.preprocessing_fn"
RUN_FN = "tfx_utils.run_fn"


def frozen_schema(config: Config) -> Path:
    """Content-addressed copy of the curated schema under the pipeline root.

    ImportSchemaGen's cache key is the schema *path*; a path that changes with the content
    makes an edited schema invalidate the cache, and keeps the schema each run used.
    """
    source = config.path(config.schema_path)
    if not source.is_file():
        raise ConfigError(f"curated schema not found: {source}")
    content = source.read_bytes()
    target = config.pipeline_dir / "schemas" / hashlib.sha256(content).hexdigest()[:16]
    target_file = target / "schema.pbtxt"
    if not target_file.is_file():
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".schema.{os.getpid()}.tmp"
        tmp.write_bytes(content)
        os.replace(tmp, target_file)
    return target_file


def _overall_threshold(lower_bound: float, max_regression: float) -> list:
    """Floor and allowed regression, on the overall slice only (small slices are noisy and
    may hold one class, where KS and AUC are undefined)."""
    return [tfma.PerSliceMetricThreshold(
        slicing_specs=[tfma.SlicingSpec()],
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": lower_bound}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                absolute={"value": -max_regression})))]


def eval_config(config: Config) -> tfma.EvalConfig:
    """TFMA config: metrics overall and per slice; KS and AUC gate the blessing."""
    slices = [tfma.SlicingSpec()]
    if config.slice_feature:
        slices.append(tfma.SlicingSpec(feature_keys=[config.slice_feature]))
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="AUC",
                          per_slice_thresholds=_overall_threshold(config.min_auc,
                                                                  config.max_regression)),
        tfma.MetricConfig(class_name=KolmogorovSmirnov.__name__,
                          module=KolmogorovSmirnov.__module__,
                          per_slice_thresholds=_overall_threshold(config.min_ks,
                                                                  config.max_regression)),
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="BinaryAccuracy"),
        tfma.MetricConfig(class_name="Calibration"),
        tfma.MetricConfig(class_name="MeanLabel"),
        tfma.MetricConfig(class_name="MeanPrediction"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
        tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
    ]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=config.label,
                                    preprocessing_function_names=[])],
        slicing_specs=slices,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def create_pipeline(config: Config, data_root: Optional[str] = None) -> tfx.dsl.Pipeline:
    """The pipeline for ``config``; ``data_root`` overrides ``config.data_root`` for one run."""
    data_dir = config.path(Path(data_root)) if data_root else config.data_dir
    spec = features.feature_spec(config)

    example_gen = csv_example_gen(
        str(data_dir), config.csv_delimiter, config.csv_decimal,
        input_config=tfx.proto.Input(splits=[
            tfx.proto.Input.Split(name="single_split", pattern="*.csv")]),
        output_config=tfx.proto.Output(split_config=tfx.proto.SplitConfig(splits=[
            tfx.proto.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
            tfx.proto.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets),
        ])))
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(frozen_schema(config)))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"],
                              statistics=statistics_gen.outputs["statistics"],
                              label=config.label, min_positive_rate=config.min_positive_rate,
                              max_positive_rate=config.max_positive_rate)
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config=spec)
    transform.add_upstream_node(gate)
    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(num_steps=0),
        eval_args=tfx.proto.EvalArgs(num_steps=0),
        custom_config=spec)
    model_resolver = tfx.dsl.Resolver(
        strategy_class=ServedModelStrategy,
        config={"serving_dir": str(config.model_serving_dir)},
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        pushed_model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.PushedModel),
    ).with_id("served_model_resolver")
    evaluator = tfx.components.Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config))
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(config.model_serving_dir))),
        custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPushExecutor))

    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=str(config.pipeline_dir),
        components=[example_gen, statistics_gen, schema_gen, example_validator, gate, transform,
                    trainer, model_resolver, evaluator, pusher],
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config(config),
        beam_pipeline_args=list(config.beam_args))


def compile_pipeline(config: Config, data_root: Optional[str] = None):
    """Compiled pipeline IR (``pipeline_pb2.Pipeline``)."""
    from tfx.dsl.compiler import compiler  # pylint: disable=import-outside-toplevel
    return compiler.Compiler().compile(create_pipeline(config, data_root))
