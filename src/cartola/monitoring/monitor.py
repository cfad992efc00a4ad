"""`cartola monitor`: the served model's traffic against the data it learned from.

Traffic is a window of the rows the server logged (:mod:`cartola.serving.request_log`) or a
batch CSV scored here with the served version. Two checks:

* feature skew: TFDV's ``validate_statistics`` with a Jensen-Shannon ``skew_comparator`` per
  model feature, the served run's training split against the traffic's statistics (numeric
  features measured on the quantiles histograms, as the drift gate does:
  :mod:`cartola.validation.divergence`);
* score drift: the population stability index and scipy's two-sample KS statistic of the
  traffic's scores against the served version's scores on its own eval split.

The reference is the pipeline run that pushed the served version (pins and rollbacks move it),
found in ML Metadata. Every run writes ``monitor.json``, the traffic's statistics and an HTML
report under ``monitor_dir/<UTC time>``.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from cartola.config import Config
from cartola.data.spans import span_label
from cartola.serving import request_log
from cartola.data.spans import examples_span
from cartola.registry.runs import RegistryError, load_run, open_store
from cartola.published.served import served_version

# Share floor of an empty score bin in the PSI (the usual convention; ln(0) is undefined).
_PSI_FLOOR = 1e-4
PSI_BINS = 10


class MonitorError(ValueError):
    """Monitoring cannot run: no served version, no traffic, an unreadable batch file."""


@dataclasses.dataclass
class Reference:
    """The served version and the run that trained it."""

    version: int
    model_path: Path
    run_id: str
    statistics_uri: str
    examples_uri: str
    span: str


@dataclasses.dataclass
class Traffic:
    """The rows to check: a TFRecord file of their tf.Examples and their scores."""

    examples_file: Path
    scores: np.ndarray
    description: str


def served_reference(config: Config) -> Reference:
    """The served version's model folder and its training run's statistics and examples."""
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    from cartola.registry.lineage import find_pushed  # pylint: disable=import-outside-toplevel
    base = config.model_serving_dir
    version = served_version(base)
    if version is None:
        raise MonitorError(f"no model version is served under {base}: nothing to monitor")
    try:
        store = open_store(config)
        pushed = find_pushed(store, base, version)
    except RegistryError as err:
        raise MonitorError(str(err)) from None
    run_id = None
    for event in store.get_events_by_artifact_ids([pushed.id]):
        if event.type == metadata_store_pb2.Event.OUTPUT:
            run_id = next((c.name for c in store.get_contexts_by_execution(event.execution_id)
                           if c.type == "pipeline_run"), None)
    if run_id is None:
        raise MonitorError(f"version {version}: no pipeline run recorded its push")
    run = load_run(config, run_id, store)
    statistics = run.output_uri("StatisticsGen", "statistics")
    gen = next((node for node in run.executions if node.endswith("ExampleGen")), None)
    examples = run.outputs.get((gen, "examples")) if gen else None
    if statistics is None or examples is None:
        raise MonitorError(f"version {version}: run {run_id} has no statistics or examples in "
                           "ML Metadata")
    return Reference(version, base / str(version), run_id, statistics, examples.uri,
                     span_label(examples_span(examples), config.span_pattern))


def window(config: Config, since: Optional[dt.datetime] = None,
           until: Optional[dt.datetime] = None,
           now: Optional[dt.datetime] = None) -> tuple:
    """[start, end) in UTC: the last ``monitor_window_hours`` unless given."""
    end = _utc(until or now or dt.datetime.now(dt.timezone.utc))
    start = _utc(since) if since else end - dt.timedelta(hours=config.monitor_window_hours)
    if start >= end:
        raise MonitorError(f"empty window: {start.isoformat()} is not before {end.isoformat()}")
    return start, end


def _utc(moment: dt.datetime) -> dt.datetime:
    """A plain UTC datetime (Airflow hands pendulum's, whose arithmetic differs); naive
    means UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    return dt.datetime.fromtimestamp(moment.timestamp(), dt.timezone.utc)


def logged_traffic(config: Config, reference: Reference, start: dt.datetime, end: dt.datetime,
                   workdir: Path) -> Traffic:
    """The logged rows the served version scored in [start, end), written to one file."""
    folder = config.request_log_path
    files = request_log.logged_files(folder, start, end)
    if not files:
        raise MonitorError(f"no request log in {folder} between {start:%Y-%m-%d %H:%M} and "
                           f"{end:%Y-%m-%d %H:%M} UTC (is `cartola serve` logging?)")
    out = workdir / "traffic.tfrecord"
    scores, others = _copy_window(files, out, reference.version,
                                  (int(start.timestamp() * 1000), int(end.timestamp() * 1000)))
    note = f" ({others} rows scored by other versions left out)" if others else ""
    return Traffic(out, scores, f"{len(scores)} logged rows from {start:%Y-%m-%d %H:%M} to "
                                f"{end:%Y-%m-%d %H:%M} UTC in {len(files)} files{note}")


def _copy_window(files: List[Path], out: Path, version: int, window_ms: tuple) -> tuple:
    """Copy the records of ``version`` logged in [low, high) ms to ``out``; returns their
    scores and how many rows other versions scored in the window."""
    from cartola.serving.model import import_tf  # pylint: disable=import-outside-toplevel
    tf = import_tf()
    spec = {request_log.SCORE: tf.io.FixedLenFeature([], tf.float32),
            request_log.MODEL_VERSION: tf.io.FixedLenFeature([], tf.int64),
            request_log.LOGGED_AT: tf.io.FixedLenFeature([], tf.int64)}
    scores, others = [], 0
    with tf.io.TFRecordWriter(str(out)) as writer:
        for batch in tf.data.TFRecordDataset([str(f) for f in files]).batch(4096):
            parsed = tf.io.parse_example(batch, spec)
            at = parsed[request_log.LOGGED_AT].numpy()
            keep = (at >= window_ms[0]) & (at < window_ms[1])
            same = parsed[request_log.MODEL_VERSION].numpy() == version
            others += int(np.sum(keep & ~same))
            keep &= same
            for record in batch.numpy()[keep]:
                writer.write(record)
            scores.append(parsed[request_log.SCORE].numpy()[keep])
    return (np.concatenate(scores) if scores else np.zeros(0, np.float32)), others


def batch_traffic(config: Config, reference: Reference, csv_path: Path,
                  workdir: Path) -> Traffic:
    """A CSV of users, checked and scored with the served version."""
    # pylint: disable=import-outside-toplevel
    import pandas as pd
    from cartola.serving.model import ServedModel, build_examples
    model = ServedModel.load(reference.model_path, reference.version)
    try:
        frame = pd.read_csv(csv_path, sep=config.csv_delimiter, dtype=str,
                            keep_default_na=False, skipinitialspace=True)
    except (OSError, ValueError) as err:
        raise MonitorError(f"{csv_path}: cannot read: {err}") from None
    if frame.empty:
        raise MonitorError(f"{csv_path}: no rows")
    examples = build_examples(_checked_columns(frame, model.features, csv_path,
                                               config.csv_decimal), model.features)
    scores = np.concatenate([model.predict_serialized(examples[i:i + 4096])
                             for i in range(0, len(examples), 4096)])
    out = workdir / "traffic.tfrecord"
    _write_records(out, examples)
    return Traffic(out, scores, f"{len(examples)} rows of {csv_path}")


def _checked_columns(frame, features, csv_path: Path, decimal: str) -> Dict[str, List[Any]]:
    """The model's features as columns of Python values (None = missing); the first value a
    feature's type refuses ends in a ``file:line`` error."""
    import pandas as pd  # pylint: disable=import-outside-toplevel
    required = [name for name, f in features.items() if name not in frame.columns and f.required]
    if required:
        raise MonitorError(f"{csv_path}:1: column(s) {required} missing from the header")
    columns: Dict[str, List[Any]] = {}
    for name, feature in features.items():
        if name not in frame.columns:
            continue
        text = frame[name].str.strip()
        blank = text.str.lower().isin(["", "nan", "na", "null", "none"])
        if feature.kind == "string":
            columns[name] = text.where(~blank, None).tolist()
            continue
        numbers = pd.to_numeric(text.str.replace(decimal, ".", regex=False), errors="coerce")
        bad = numbers.isna() & ~blank
        if feature.kind == "int":
            bad |= numbers.notna() & (numbers != numbers.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise MonitorError(f"{csv_path}:{row + 2}: feature {name!r}: {text.iloc[row]!r} is "
                               f"not {'an integer' if feature.kind == 'int' else 'a number'}")
        columns[name] = [None if np.isnan(v) else (int(v) if feature.kind == "int" else v)
                         for v in numbers.to_numpy(dtype=float)]
    return columns


def _write_records(path: Path, records: List[bytes]) -> None:
    from cartola.serving.model import import_tf  # pylint: disable=import-outside-toplevel
    with import_tf().io.TFRecordWriter(str(path)) as writer:
        for record in records:
            writer.write(record)


def population_stability_index(expected: np.ndarray, actual: np.ndarray,
                               bins: int = PSI_BINS) -> float:
    """PSI of ``actual`` against ``expected`` on ``expected``'s quantile bins.

    Neither scipy nor TFDV computes a PSI; it is sum((a - e) * ln(a / e)) over bins.
    """
    edges = np.unique(np.quantile(expected, np.linspace(0, 1, bins + 1)[1:-1]))
    shares = [np.bincount(np.searchsorted(edges, values, side="right"),
                          minlength=len(edges) + 1) / max(len(values), 1)
              for values in (expected, actual)]
    e, a = (np.maximum(s, _PSI_FLOOR) for s in shares)
    return float(np.sum((a - e) * np.log(a / e)))


def score_drift(reference: np.ndarray, live: np.ndarray) -> Dict[str, float]:
    """PSI and two-sample KS of the traffic's scores against the eval split's."""
    from scipy import stats  # pylint: disable=import-outside-toplevel
    ks = stats.ks_2samp(reference, live)
    return {"psi": population_stability_index(reference, live),
            "ks": float(ks.statistic), "ks_pvalue": float(ks.pvalue),
            "eval_rows": int(len(reference)), "live_rows": int(len(live)),
            "eval_mean": float(np.mean(reference)), "live_mean": float(np.mean(live))}


def eval_scores(config: Config, reference: Reference) -> np.ndarray:
    """The served version's scores on the eval split of the data it was trained on."""
    # pylint: disable=import-outside-toplevel
    from cartola.reports.run_report import read_examples, score_examples
    serialized, _ = read_examples(reference.examples_uri, "eval", config.label)
    if not serialized:
        raise MonitorError(f"no eval examples under {reference.examples_uri}")
    return score_examples(str(reference.model_path), serialized)


def feature_skew(config: Config, reference: Reference, traffic_stats) -> List[Dict[str, Any]]:
    """Jensen-Shannon skew of each model feature: training split against the traffic."""
    # pylint: disable=import-outside-toplevel
    import tensorflow_data_validation as tfdv
    from cartola.validation.divergence import comparator_schema, measure
    train = tfdv.load_stats_binary(str(Path(reference.statistics_uri) / "Split-train"
                                       / "FeatureStats.pb"))
    schema = comparator_schema(tfdv.load_schema_text(str(config.path(config.schema_path))),
                               list(config.all_features), config.drift_threshold,
                               config.monitor_skew_threshold or config.skew_threshold)
    return [row for row in measure(train, traffic_stats, schema) if row["kind"] == "skew"]


def problems_of(result: Dict[str, Any], config: Config) -> List[str]:
    """One line per check past its threshold."""
    against = (f"{result['traffic']} against the training data of version "
               f"{result['version']} (span {result['span']})")
    lines = [f"[skew] feature {row['feature']!r}: Jensen-Shannon divergence {row['value']:.4f} "
             f"is above the threshold {row['threshold']:g} ({against})"
             for row in result["skew"] if row["failed"]]
    score = result["score"]
    for name, value, limit in (("population stability index", score["psi"],
                                config.monitor_psi_threshold),
                               ("KS statistic", score["ks"], config.monitor_ks_threshold)):
        if value > limit:
            lines.append(f"[score drift] {name} {value:.4f} is above the threshold {limit:g} "
                         f"(mean score {score['live_mean']:.3f} against {score['eval_mean']:.3f} "
                         f"on version {result['version']}'s eval split)")
    return lines


def run_monitor(config: Config, batch: Optional[Path] = None,
                since: Optional[dt.datetime] = None, until: Optional[dt.datetime] = None,
                now: Optional[dt.datetime] = None) -> Dict[str, Any]:
    """Check the traffic (logged window, or ``batch``), write the report, send the
    ``monitor_alert`` notification when a check fails; returns what ``monitor.json`` holds."""
    # pylint: disable=import-outside-toplevel
    import tensorflow_data_validation as tfdv
    from cartola.monitoring.page import write_page
    reference = served_reference(config)
    stamp = (now or dt.datetime.now(dt.timezone.utc)).strftime("%Y%m%dT%H%M%S%fZ")
    workdir = config.path(config.monitor_dir) / stamp
    workdir.mkdir(parents=True, exist_ok=True)
    if batch is not None:
        traffic = batch_traffic(config, reference, Path(batch), workdir)
    else:
        start, end = window(config, since, until, now)
        traffic = logged_traffic(config, reference, start, end, workdir)
    if len(traffic.scores) < config.monitor_min_rows:
        raise MonitorError(f"{traffic.description}: fewer than monitor_min_rows = "
                           f"{config.monitor_min_rows}, too few to compare")
    stats = tfdv.generate_statistics_from_tfrecord(str(traffic.examples_file))
    # A serialized DatasetFeatureStatisticsList, as StatisticsGen's FeatureStats.pb.
    (workdir / "traffic_stats.pb").write_bytes(stats.SerializeToString())
    traffic.examples_file.unlink()  # the statistics and scores are what the report keeps
    reference_scores = eval_scores(config, reference)
    result: Dict[str, Any] = {
        "version": reference.version, "run_id": reference.run_id, "span": reference.span,
        "traffic": traffic.description, "skew": feature_skew(config, reference, stats),
        "score": score_drift(reference_scores, traffic.scores),
        "thresholds": {"psi": config.monitor_psi_threshold, "ks": config.monitor_ks_threshold},
        "statistics": str(workdir / "traffic_stats.pb"),
        "reference_statistics": reference.statistics_uri}
    result["problems"] = problems_of(result, config)
    result["status"] = "failed" if result["problems"] else "passed"
    np.save(workdir / "scores.npy", traffic.scores)
    result["report"] = str(write_page(result, reference_scores, traffic.scores, workdir))
    (workdir / "monitor.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    if result["problems"]:
        from cartola.monitoring.notify import notify
        notify(config, "monitor_alert", f"Monitor: version {reference.version} past its "
               "thresholds", "\n".join(result["problems"]),
               {"report": result["report"], "traffic": traffic.description})
    return result
