"""The TFX pipeline, built from the project config. Runners (local, Airflow) live elsewhere.

CsvExampleGen or PostgresExampleGen (one span) -> StatisticsGen -> ImportSchemaGen (curated
schema) -> ExampleValidator -> DataValidationGate, and DriftGate (against the statistics of
the served model's data) -> Transform (the training window of spans) -> Trainer -> Evaluator
(this span's eval split; baseline: the model served now) -> Pusher (atomic integer versions).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Mapping, Optional, Sequence

import tensorflow_model_analysis as tfma
# TFX's modules themselves, not ``tfx.v1``: that also imports its Google Cloud extensions
# (aiplatform), ~150 MB in every process that builds the pipeline, a local run's included.
from tfx.components import (Evaluator, ExampleValidator, Pusher, StatisticsGen, Trainer,
                            Transform)
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.common.resolver import Resolver
from tfx.orchestration.pipeline import Pipeline
from tfx.proto import example_gen_pb2, pusher_pb2, range_config_pb2, trainer_pb2
from tfx.types import standard_artifacts
from tfx.types.channel import Channel

from cartola.pipeline.components import AtomicPushExecutor, DataValidationGate
from cartola.config import Config, ConfigError
from cartola.data.csv_example_gen import csv_example_gen
from cartola.data.labels import LabelCoding
from cartola.data.postgres import PostgresSource
from cartola.data.postgres_example_gen import postgres_example_gen
from cartola.data.spans import FLAT_PATTERN, Span
from cartola.metadata import metadata_connection_config
from cartola.pipeline.metrics import (AucLowerBound, KolmogorovSmirnov, LogLossGain,
                                      auc_lower_bound_class)
from cartola.models import features
from cartola.pipeline.baseline import (ServedModelStrategy, ServedStatisticsStrategy,
                                       SpanWindowStrategy)
from cartola.validation.divergence import statistics_options
from cartola.validation.drift import DriftGate

PREPROCESSING_FN = "tfx_utils.preprocessing_fn"
RUN_FN = "tfx_utils.run_fn"
# The Evaluator's model loader: registers a tree model's TF-DF ops before TFMA loads it.
EVALUATOR_MODULE = "cartola.models.evaluator_udf"


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


def _overall_threshold(lower_bound: Optional[float] = None,
                       max_regression: Optional[float] = None) -> list:
    """A floor (None or 0 for AUC/KS: none) and an allowed regression against the baseline
    model (None: none), on the overall slice only (small slices are noisy and may hold one
    class, where KS and AUC are undefined)."""
    threshold = tfma.MetricThreshold()
    if lower_bound is not None:
        threshold.value_threshold.CopyFrom(
            tfma.GenericValueThreshold(lower_bound={"value": lower_bound}))
    if max_regression is not None:
        threshold.change_threshold.CopyFrom(tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_regression}))
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                         threshold=threshold)]


# log_loss_gain must be positive: the model's log loss strictly below the prior's.
MIN_LOG_LOSS_GAIN = 1e-6


def eval_config(config: Config) -> tfma.EvalConfig:
    """TFMA config: metrics overall and per slice. Blessed when the model beats the trivial
    one (log loss below the prior's, AUC above 0.5 beyond the eval split's noise), AUC and KS
    do not regress against the served model, and the configured floors hold."""
    slices = [tfma.SlicingSpec()]
    if config.slice_feature:
        slices.append(tfma.SlicingSpec(feature_keys=[config.slice_feature]))
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="AUC", per_slice_thresholds=_overall_threshold(
            config.min_auc or None, config.max_regression)),
        tfma.MetricConfig(class_name=KolmogorovSmirnov.__name__,
                          module=KolmogorovSmirnov.__module__,
                          per_slice_thresholds=_overall_threshold(config.min_ks or None,
                                                                  config.max_regression)),
        tfma.MetricConfig(class_name=auc_lower_bound_class(config.auc_noise_z),
                          module=AucLowerBound.__module__,
                          per_slice_thresholds=_overall_threshold(0.5)),
        tfma.MetricConfig(class_name=LogLossGain.__name__, module=LogLossGain.__module__,
                          per_slice_thresholds=_overall_threshold(MIN_LOG_LOSS_GAIN)),
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="BinaryAccuracy"),
        tfma.MetricConfig(class_name="Calibration"),
        tfma.MetricConfig(class_name="MeanLabel"),
        tfma.MetricConfig(class_name="MeanPrediction"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
        tfma.MetricConfig(class_name="ConfusionMatrixPlot"),
    ]
    # Only the metrics above: TFMA would also recompute the Keras model's compiled metrics
    # and loss, through TensorFlow, for every example of every slice: a quarter of the
    # Evaluator's time (84 s against 62 s on 50,000 eval rows, measured); ``log_loss``
    # comes from LogLossGain's pass instead, for every model family alike.
    options = tfma.Options()
    options.include_default_metrics.value = False
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=config.label,
                                    preprocessing_function_names=[])],
        slicing_specs=slices,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)], options=options)


def _example_gen(config: Config, data_dir: Path, span: Optional[Span]):
    """The source's ExampleGen on one span: pinned by a static RangeConfig (TFX records it
    in ML Metadata), or, for files, the newest span when ``span`` is None; a flat folder
    reads ``*.csv``; a PostgreSQL span is the configured query on the span's date."""
    flat = span is not None and span.flat
    range_config = None
    if span is not None and not flat:
        range_config = range_config_pb2.RangeConfig(static_range=range_config_pb2.StaticRange(
            start_span_number=span.number, end_span_number=span.number))
    output_config = example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(name="train", hash_buckets=config.train_buckets),
        example_gen_pb2.SplitConfig.Split(name="eval", hash_buckets=config.eval_buckets),
    ]))
    if config.source == "postgresql":
        source = PostgresSource(config)
        return postgres_example_gen(
            source, example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
                name="single_split", pattern=source.query)]), output_config, range_config)
    return csv_example_gen(
        str(data_dir), config.csv_delimiter, config.csv_decimal,
        input_config=example_gen_pb2.Input(splits=[example_gen_pb2.Input.Split(
            name="single_split", pattern=FLAT_PATTERN if flat else config.span_pattern)]),
        output_config=output_config, range_config=range_config,
        label=LabelCoding.from_config(config))


def create_pipeline(config: Config, data_root: Optional[str] = None,
                    span: Optional[Span] = None, *, beam_args: Sequence[str],
                    component_beam_args: Optional[Mapping[str, Sequence[str]]] = None
                    ) -> Pipeline:
    """The pipeline for ``config`` on ``span`` (from :func:`cartola.data.source.resolve_input`;
    None: ExampleGen's driver takes the newest span). ``data_root`` overrides
    ``config.data_root`` for one run; ``beam_args`` are the runner's choice for the span and
    ``component_beam_args`` what some components (by id) add to them
    (:func:`cartola.orchestration.beam.for_span`)."""
    data_dir = config.input_dir(data_root)
    spec = features.feature_spec(config)

    example_gen = _example_gen(config, data_dir, span)
    statistics_gen = StatisticsGen(examples=example_gen.outputs["examples"],
                                   stats_options=statistics_options())
    schema_gen = ImportSchemaGen(schema_file=str(frozen_schema(config)))
    example_validator = ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"],
                              statistics=statistics_gen.outputs["statistics"],
                              label=config.label, min_positive_rate=config.min_positive_rate,
                              max_positive_rate=config.max_positive_rate)
    statistics_resolver = Resolver(
        strategy_class=ServedStatisticsStrategy,
        config={"serving_dir": str(config.model_serving_dir)},
        statistics=Channel(type=standard_artifacts.ExampleStatistics,
                           producer_component_id="StatisticsGen", output_key="statistics"),
        examples=Channel(type=standard_artifacts.Examples,
                         producer_component_id=example_gen.id, output_key="examples"),
        pushed_model=Channel(type=standard_artifacts.PushedModel),
    ).with_id("served_statistics_resolver")
    drift_gate = DriftGate(  # pylint: disable=no-value-for-parameter
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"],
        examples=example_gen.outputs["examples"],
        baseline_statistics=statistics_resolver.outputs["statistics"],
        baseline_examples=statistics_resolver.outputs["examples"],
        features=",".join(config.all_features), drift_threshold=config.drift_threshold,
        skew_threshold=config.skew_threshold, action=config.drift_action,
        span_pattern=config.span_pattern, label=config.label,
        label_odds_ratio=config.label_drift_odds_ratio)
    # Every Examples artifact ExampleGen wrote; the strategy keeps this run's span and the
    # train_spans - 1 spans before it. Runs after ExampleGen, so this run's span is there.
    window = Resolver(
        strategy_class=SpanWindowStrategy,
        config={"num_spans": config.train_spans,
                "span": span.number if span is not None else -1},
        examples=Channel(type=standard_artifacts.Examples,
                         producer_component_id=example_gen.id, output_key="examples"),
    ).with_id("training_window")
    window.add_upstream_node(example_gen)
    transform = Transform(
        examples=window.outputs["examples"], schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN, custom_config=features.transform_spec(spec),
        disable_statistics=not config.transform_statistics)
    transform.add_upstream_node(gate)
    transform.add_upstream_node(drift_gate)
    trainer = Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=trainer_pb2.TrainArgs(num_steps=0),
        eval_args=trainer_pb2.EvalArgs(num_steps=0),
        custom_config=spec)
    model_resolver = Resolver(
        strategy_class=ServedModelStrategy,
        config={"serving_dir": str(config.model_serving_dir)},
        model=Channel(type=standard_artifacts.Model),
        pushed_model=Channel(type=standard_artifacts.PushedModel),
    ).with_id("served_model_resolver")
    evaluator = Evaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"],
        eval_config=eval_config(config), module_path=EVALUATOR_MODULE)
    pusher = Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=pusher_pb2.PushDestination(
            filesystem=pusher_pb2.PushDestination.Filesystem(
                base_directory=str(config.model_serving_dir))),
        custom_executor_spec=executor_spec.ExecutorClassSpec(AtomicPushExecutor))

    return Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=str(config.pipeline_dir),
        components=_with_beam_args(
            [example_gen, statistics_gen, schema_gen, example_validator, gate,
             statistics_resolver, drift_gate, window, transform, trainer, model_resolver,
             evaluator, pusher], component_beam_args or {},
            {"beam_in_memory": config.beam_in_memory, "beam_threaded": config.beam_threaded}),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config(config),
        beam_pipeline_args=list(beam_args))


def _with_beam_args(components: list, by_id: Mapping[str, Sequence[str]],
                    named: Mapping[str, Sequence[str]]) -> list:
    """``components``, given their per-component Beam options (TFX puts them after the
    pipeline's, so they win). A name there or in a config list of ``named`` (checked on small
    spans too, where it does not apply) that is not one of the pipeline's Beam components is
    the user's config error."""
    beam_ids = {c.id: c for c in components if hasattr(c, "with_beam_pipeline_args")}
    for key, names in {**named, "component Beam options": tuple(by_id)}.items():
        unknown = sorted(set(names) - set(beam_ids))
        if unknown:
            raise ConfigError(f"{key}: {', '.join(unknown)} is not a Beam component of the "
                              f"pipeline; those are {', '.join(sorted(beam_ids))}")
    for name, args in by_id.items():
        beam_ids[name].with_beam_pipeline_args(list(args))
    return components


def compile_pipeline(config: Config, data_root: Optional[str] = None,
                     span: Optional[Span] = None, *, beam_args: Sequence[str],
                     component_beam_args: Optional[Mapping[str, Sequence[str]]] = None):
    """Compiled pipeline IR (``pipeline_pb2.Pipeline``)."""
    from tfx.dsl.compiler import compiler  # pylint: disable=import-outside-toplevel
    return compiler.Compiler().compile(
        create_pipeline(config, data_root, span, beam_args=beam_args,
                        component_beam_args=component_beam_args))
