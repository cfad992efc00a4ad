"""Run report: one self-contained HTML file per pipeline run.

The run's artifacts are found in ML Metadata (the latest run of the pipeline, or a given run
id): TFDV statistics and anomalies, the TFMA evaluation with the blessing decision and the
comparison with the baseline model, and the Pusher's outcome. The run's model scores the eval
split again to draw the KS picture (score distributions of the two classes), the ROC and
PR curves and a calibration plot; the baseline model is drawn beside it when there is one.

Written to ``<project_home>/reports/<run id>/``: ``report.html`` (PNGs embedded),
the PNGs, and ``report.json`` with the key figures. The PNGs are also copied to
``<project_home>/assets/report_*.png`` for the README.
"""
from __future__ import annotations

import datetime
import html
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from cartola.config import Config
from cartola.data.labels import LabelCoding
from cartola.pipeline.evaluation import load_evaluation
from cartola.models import model_info
from cartola.pipeline import topology
from cartola.pipeline.ks import ks_statistic
from cartola.registry.history import report_path
from cartola.registry.runs import RegistryError, RunInfo, custom_property, load_run
from cartola.reports.pages import (CSS, figure_png, fmt, img, load_statistics, pyplot, split_dirs,
                                   table)
from cartola.serving.model import ModelLoadError

ASSETS_PREFIX = "report_"
_METRIC_ORDER = ("example_count", "auc", "auc_lower_bound", "ks",
                 "log_loss_gain", "precision", "recall", "binary_accuracy", "calibration",
                 "mean_label", "mean_prediction", "log_loss")


# --------------------------------------------------------------------------------------------
# Data: TFDV statistics and anomalies.

def load_anomalies(uri: str) -> Tuple[List[str], int]:
    """(one line per anomaly, number of splits checked) of an ExampleValidator artifact."""
    # pylint: disable=import-outside-toplevel
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    from cartola.pipeline.components import ANOMALIES_FILE, describe_anomalies
    per_split = {}
    for split, folder in split_dirs(uri).items():
        path = folder / ANOMALIES_FILE
        if path.is_file():
            per_split[split] = anomalies_pb2.Anomalies.FromString(path.read_bytes())
    return describe_anomalies(per_split), len(per_split)


def _percent(share: float) -> str:
    return f"{share:.1%}"


def _with_value(common, total: int) -> Tuple[int, Optional[str]]:
    """Examples holding a value, and the missing share. CsvExampleGen writes an empty value
    list for an empty cell, which TFDV counts as present: count values instead when the
    feature has at most one."""
    present = common.tot_num_values if common.max_num_values <= 1 else common.num_non_missing
    return int(present), _percent(1 - present / total) if total else None


def _feature_rows(stats) -> List[List[Any]]:
    """Table rows: feature, type, with a value, missing, mean, std, min, median, max, notes."""
    rows = []
    total = stats.num_examples
    for feature in stats.features:
        name = feature.path.step[0] if feature.path.step else feature.name
        kind = feature.WhichOneof("stats")
        if kind == "num_stats":
            num = feature.num_stats
            rows.append([name, "INT" if feature.type == 0 else "FLOAT",
                         *_with_value(num.common_stats, total), num.mean, num.std_dev,
                         num.min, num.median, num.max, f"zeros: {num.num_zeros:,}"])
        elif kind == "string_stats":
            text = feature.string_stats
            top = ", ".join(f"{v.value} ({v.frequency:,.0f})" for v in text.top_values[:3])
            rows.append([name, "STRING", *_with_value(text.common_stats, total),
                         None, None, None, None, None, f"{text.unique:,} unique; {top}"])
    return rows


# --------------------------------------------------------------------------------------------
# Model: TFMA evaluation, validation, scores.

# Records read and parsed per step: the label is parsed for a whole batch in TensorFlow, as
# a per-record Python loop took 42 s for 250,000 records.
READ_BATCH = 8192


def read_examples(uri: str, split: str, label: str) -> Tuple[List[bytes], np.ndarray]:
    """Serialized examples of one CsvExampleGen split that carry ``label``, and their labels
    (the first value of each: an int64 or float label, read as an int)."""
    # pylint: disable=import-outside-toplevel
    from cartola.serving.model import import_tf
    tf = import_tf()
    files = sorted(str(p) for p in (Path(uri) / f"Split-{split}").glob("*"))
    if not files:
        raise RegistryError(f"no {split} examples under {uri}")
    serialized: List[bytes] = []
    labels: List[np.ndarray] = []
    dtype = None
    for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(READ_BATCH):
        dtype = dtype or _label_dtype(tf, batch, label)
        if dtype is None:  # no record of this batch has the label yet
            continue
        values = tf.io.parse_example(batch, {label: tf.io.RaggedFeature(dtype)})[label]
        present = (values.row_lengths() > 0).numpy()
        first = tf.gather(values.values, values.row_starts()[present]).numpy()
        serialized.extend(batch.numpy()[present].tolist())
        labels.append(first.astype(int))
    return serialized, (np.concatenate(labels) if labels else np.zeros(0, dtype=int))


def _label_dtype(tf, batch, label: str):
    """tf.int64 or tf.float32: the kind of the first ``label`` value in ``batch``; None when
    no record of it has one."""
    for record in batch.numpy():
        feature = tf.train.Example.FromString(record).features.feature.get(label)
        if feature is not None and feature.int64_list.value:
            return tf.int64
        if feature is not None and feature.float_list.value:
            return tf.float32
    return None


def score_examples(model_path: str, serialized: Sequence[bytes], batch: int = 4096) -> np.ndarray:
    """Positive-class probabilities from a SavedModel's ``serving_default``."""
    from cartola.serving.model import ServedModel  # pylint: disable=import-outside-toplevel
    model = ServedModel.load(Path(model_path), 0)
    return np.concatenate([model.predict_serialized(serialized[i:i + batch])
                           for i in range(0, len(serialized), batch)]) if serialized else (
        np.zeros(0))


# --------------------------------------------------------------------------------------------
# Figures.

def plot_ks(scores: np.ndarray, labels: np.ndarray) -> bytes:
    """Score histograms of both classes, and their CDFs with the KS gap marked."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bins = np.linspace(0, 1, 41)
    for value, name, color in ((0, "label 0", "tab:blue"), (1, "label 1", "tab:orange")):
        group = scores[labels == value]
        left.hist(group, bins=bins, density=True, alpha=0.55, color=color,
                  label=f"{name} (n={len(group):,})")
        right.plot(np.sort(group), np.arange(1, len(group) + 1) / max(len(group), 1),
                   color=color, label=name)
    ks, threshold = ks_statistic(scores, labels)
    if not math.isnan(ks):
        negatives, positives = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
        low = np.searchsorted(positives, threshold, side="right") / len(positives)
        high = np.searchsorted(negatives, threshold, side="right") / len(negatives)
        right.vlines(threshold, low, high, colors="black", linestyles="--",
                     label=f"KS = {ks:.3f} at p = {threshold:.3f}")
    left.set(title="Score distribution by class (eval split)", xlabel="predicted probability",
             ylabel="density")
    right.set(title="Cumulative distribution", xlabel="predicted probability",
              ylabel="share of class at or below")
    left.legend()
    right.legend(loc="lower right")
    return figure_png(fig)


def plot_roc(curves: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> bytes:
    """ROC curves, one per model."""
    from sklearn.metrics import roc_auc_score, roc_curve  # pylint: disable=import-outside-toplevel
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(5.5, 5))
    for name, (scores, labels) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUC = {roc_auc_score(labels, scores):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="chance")
    axis.set(title="ROC (eval split)", xlabel="false positive rate", ylabel="true positive rate")
    axis.legend(loc="lower right")
    return figure_png(fig)


def plot_pr(curves: Dict[str, Tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Precision-recall curves, one per model."""
    # pylint: disable=import-outside-toplevel
    from sklearn.metrics import average_precision_score, precision_recall_curve
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(5.5, 5))
    for name, (scores, labels) in curves.items():
        precision, recall, _ = precision_recall_curve(labels, scores)
        axis.plot(recall, precision,
                  label=f"{name} (AP = {average_precision_score(labels, scores):.3f})")
    base_rate = float(np.mean(next(iter(curves.values()))[1])) if curves else 0.0
    axis.axhline(base_rate, color="grey", linestyle=":", label=f"base rate {base_rate:.3f}")
    axis.set(title="Precision-recall (eval split)", xlabel="recall", ylabel="precision",
             ylim=(0, 1.02))
    axis.legend(loc="lower left")
    return figure_png(fig)


def plot_calibration(scores: np.ndarray, labels: np.ndarray) -> bytes:
    """Observed positive rate per predicted-probability decile."""
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(5.5, 5))
    edges = np.unique(np.quantile(scores, np.linspace(0, 1, 11)))
    groups = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    predicted = [scores[groups == g].mean() for g in np.unique(groups)]
    observed = [labels[groups == g].mean() for g in np.unique(groups)]
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect")
    axis.plot(predicted, observed, marker="o", label="deciles of predicted probability")
    axis.set(title="Calibration (eval split)", xlabel="mean predicted probability",
             ylabel="observed positive rate")
    axis.legend(loc="upper left")
    return figure_png(fig)


def plot_feature_histograms(stats_by_split: Dict[str, Any],
                            skip: Sequence[str] = ()) -> Optional[bytes]:
    """TFDV's standard histogram of each numeric feature (but ``skip``), one line per split."""
    plt = pyplot()
    per_feature: Dict[str, Dict[str, Any]] = {}
    for split, stats in stats_by_split.items():
        for feature in stats.features:
            if feature.WhichOneof("stats") != "num_stats":
                continue
            name = feature.path.step[0] if feature.path.step else feature.name
            if name in skip:
                continue
            for histogram in feature.num_stats.histograms:
                if histogram.type == histogram.STANDARD and histogram.buckets:
                    per_feature.setdefault(name, {})[split] = histogram
    if not per_feature:
        return None
    columns = 4
    rows = math.ceil(len(per_feature) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.3 * rows), squeeze=False)
    for axis, (name, splits) in zip(axes.flat, sorted(per_feature.items())):
        for split, histogram in sorted(splits.items()):
            edges = [b.low_value for b in histogram.buckets] + [histogram.buckets[-1].high_value]
            counts = np.array([b.sample_count for b in histogram.buckets])
            axis.stairs(counts / max(counts.sum(), 1), edges, label=split)
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(per_feature):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("Numeric features: share of examples per histogram bucket (TFDV)")
    fig.tight_layout()
    return figure_png(fig)


# --------------------------------------------------------------------------------------------
# HTML.

def _badge(ok: Optional[bool], yes: str, no: str, unknown: str = "not run") -> str:
    if ok is None:
        return f'<span class="muted">{html.escape(unknown)}</span>'
    return f'<span class="{"ok" if ok else "bad"}">{html.escape(yes if ok else no)}</span>'


def _render(config: Config, summary: dict, sections: List[str]) -> str:
    title = f"{config.report_title or config.pipeline_name + ' run report'}: {summary['run_id']}"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>"
            f'<p class="muted">Scores are {html.escape(LabelCoding.from_config(config).scores())}.'
            "</p>" + "".join(sections) + "</body></html>")


# --------------------------------------------------------------------------------------------
# The report.

def _overview(config: Config, run: RunInfo, summary: dict) -> str:
    created = datetime.datetime.fromtimestamp(run.created_ms / 1000).isoformat(
        sep=" ", timespec="seconds")
    pushed = summary.get("pushed_version")
    outcome = [
        ("Data validation", _badge(summary.get("data_valid"), "passed", "anomalies found")),
        ("Drift gate", _badge(None if "drift" not in summary else
                              summary["drift"]["status"] != "failed",
                              (summary.get("drift") or {}).get("status", ""), "stopped the run")),
        ("Model blessed", _badge(summary.get("blessed"), "yes", "no")),
        ("Pushed", _badge(summary.get("pushed"), f"version {pushed}",
                          "no (not blessed, or identical to the served model)")),
    ]
    rows = "".join(f"<tr><td>{name}</td><td>{value}</td></tr>" for name, value in outcome)
    nodes = table(["node", "state", "seconds"],
                   [(name, state, f"{seconds:.1f}") for name, state, seconds in run.nodes])
    return (f"<p>Pipeline <code>{html.escape(config.pipeline_name)}</code>, run "
            f"<code>{html.escape(run.run_id)}</code>, started {html.escape(created)}. "
            f"Artifacts under <code>{html.escape(str(config.pipeline_dir))}</code>.</p>"
            f"<h2>Outcome</h2><table>{rows}</table>{nodes}")


def _data_section(config: Config, run: RunInfo, summary: dict, pngs: Dict[str, bytes]) -> str:
    parts = ["<h2>Data (TFDV)</h2>"]
    stats_uri = run.output_uri("StatisticsGen", "statistics")
    if stats_uri:
        stats = load_statistics(stats_uri)
        summary["examples"] = {split: int(s.num_examples) for split, s in stats.items()}
        for split, split_stats in sorted(stats.items(), key=lambda item: item[0] != "train"):
            parts.append(f"<h3>{html.escape(split)} split: {split_stats.num_examples:,} "
                         "examples</h3>")
            parts.append(table(["feature", "type", "with a value", "missing", "mean", "std", "min",
                                 "median", "max", "notes"], _feature_rows(split_stats),
                                css="stats"))
        png = plot_feature_histograms(stats, skip=[config.id_column])
        if png:
            pngs["features"] = png
            parts.append(img(png, "feature histograms"))
    else:
        parts.append('<p class="muted">StatisticsGen did not run.</p>')
    anomalies_uri = run.output_uri("ExampleValidator", "anomalies")
    if anomalies_uri:
        lines, splits = load_anomalies(anomalies_uri)
        summary["anomalies"] = lines
        summary["data_valid"] = not lines
        parts.append("<h3>Anomalies against the curated schema</h3>")
        if lines:
            parts.append("<ul>" + "".join(f'<li class="bad">{html.escape(line)}</li>'
                                          for line in lines) + "</ul>")
        else:
            parts.append(f'<p class="ok">No anomalies in {splits} split(s).</p>')
    return "".join(parts)


def _metrics_rows(evaluation: dict) -> List[List[Any]]:
    overall, base, diff = evaluation["overall"], evaluation["baseline_overall"], evaluation["diff"]
    names = [m for m in _METRIC_ORDER if m in overall] + sorted(set(overall) - set(_METRIC_ORDER))
    rows = []
    for name in names:
        threshold = evaluation["thresholds"].get(name, {})
        rule = []
        if "lower_bound" in threshold:
            rule.append(f">= {threshold['lower_bound']:g}")
        if "change" in threshold and base:
            rule.append(f"change >= {threshold['change']:g}")
        rows.append([name, overall.get(name), base.get(name) if base else None,
                     diff.get(name) if base else None, "; ".join(rule) or ""])
    return rows


def _model_section(run: RunInfo, summary: dict) -> Tuple[str, Optional[dict]]:
    parts = ["<h2>Model (TFMA)</h2>"]
    uri = run.output_uri("Evaluator", "evaluation")
    if not uri:
        parts.append('<p class="muted">The Evaluator did not run in this run.</p>')
        return "".join(parts), None
    evaluation = load_evaluation(uri)
    blessed = custom_property(run.outputs.get(("Evaluator", "blessing")), "blessed")
    summary["blessed"] = bool(blessed) if blessed is not None else evaluation["validation_ok"]
    summary["validation_ok"] = evaluation["validation_ok"]
    summary["metrics"] = evaluation["overall"]
    summary["baseline_metrics"] = evaluation["baseline_overall"] or None
    summary["metric_diffs"] = evaluation["diff"] or None
    summary["model"] = evaluation["candidate_location"]
    summary["baseline_model"] = evaluation["baseline_location"]
    decision = ("Blessed: every threshold passed" if summary["blessed"] else
                "Not blessed: the model failed the thresholds below")
    baseline = (f"compared with the last blessed model <code>"
                f"{html.escape(str(evaluation['baseline_location']))}</code>"
                if evaluation["baseline_location"] else "no baseline model yet (first blessing)")
    parts.append(f"<p>{_badge(summary['blessed'], decision, decision)}; {baseline}.</p>")
    if evaluation["failures"]:
        parts.append(table(["slice", "metric", "value", "threshold"],
                            [[f["slice"], f["metric"], f["value"], f["threshold"]]
                             for f in evaluation["failures"]]))
    parts.append("<h3>Overall metrics, eval split</h3>")
    parts.append(table(["metric", "this run", "baseline", "difference", "gate"],
                        _metrics_rows(evaluation)))
    if evaluation["slices"]:
        names = ["example_count", "auc", "ks", "mean_label", "mean_prediction", "precision",
                 "recall"]
        rows = []
        for name, values in evaluation["slices"]:
            one_class = values.get("mean_label") in (0.0, 1.0)
            rows.append([name] + ["n/a (one class)" if one_class and k in ("auc", "ks")
                                  else values.get(k) for k in names])
        parts.append("<h3>By slice</h3><p class=\"muted\">AUC and KS need both classes; TFMA "
                     "reports 0 or NaN for a slice with one.</p>")
        parts.append(table(["slice"] + names, rows))
    return "".join(parts), evaluation


def _family_section(run: RunInfo, summary: dict) -> str:
    """Which model family the Trainer exported and, for ``auto``, the candidates' eval
    figures (from the SavedModel's record)."""
    uri = run.output_uri("Trainer", "model")
    info = model_info.read_info(Path(uri) / "Format-Serving") if uri else None
    summary["model_family"] = info
    if not info:
        return ""
    rows = [[c["family"] + (" (selected)" if c["family"] == info["family"] else ""), c["auc"],
             c["log_loss"], c["seconds"]] for c in info.get("candidates", [])]
    how = ("the lowest eval-split log loss among the candidates" if len(rows) > 1
           else f"model_family = {info['family']}")
    return (f"<h3>Model family</h3><p>{html.escape(info['family'])}: {html.escape(how)}.</p>"
            + table(["family", "eval AUC", "eval log loss", "training s"], rows))


def _curves_section(config: Config, run: RunInfo, evaluation: dict, summary: dict,
                    pngs: Dict[str, bytes]) -> str:
    examples_uri = run.output_uri(topology.example_gen(config.source), "examples")
    if not examples_uri or not evaluation.get("candidate_location"):
        return ""
    try:
        serialized, labels = read_examples(examples_uri, "eval", config.label)
        if len(np.unique(labels)) < 2:
            raise RegistryError("the eval split holds one class only")
        scores = score_examples(evaluation["candidate_location"], serialized)
        curves = {"this run": (scores, labels)}
        baseline = evaluation.get("baseline_location")
        if baseline and Path(baseline) != Path(evaluation["candidate_location"]):
            curves["baseline"] = (score_examples(baseline, serialized), labels)
    except (RegistryError, ModelLoadError, OSError) as err:
        return ("<h2>Scores on the eval split</h2>"
                f'<p class="bad">Not drawn: {html.escape(str(err))}</p>')
    ks, threshold = ks_statistic(scores, labels)
    summary["scored_eval"] = {"examples": int(len(labels)), "ks": ks, "ks_threshold": threshold}
    pngs["ks"] = plot_ks(scores, labels)
    pngs["roc"] = plot_roc(curves)
    pngs["pr"] = plot_pr(curves)
    pngs["calibration"] = plot_calibration(scores, labels)
    return ("<h2>Scores on the eval split</h2>"
            f"<p>The model scored the {len(labels):,} eval examples again: KS = {ks:.4f} at "
            f"probability {threshold:.3f} (TFMA: {fmt(evaluation['overall'].get('ks'))}).</p>"
            + img(pngs["ks"], "KS: score distributions of the two classes")
            + '<div class="figs">' + img(pngs["roc"], "ROC curve") + img(pngs["pr"], "PR curve")
            + img(pngs["calibration"], "calibration") + "</div>")


def _lineage_section(config: Config, summary: dict) -> str:
    """The pushed version's lineage (``cartola lineage N``), back to the input files."""
    version = summary.get("pushed_version")
    if not version:
        return ""
    from cartola.registry.lineage import backward  # pylint: disable=import-outside-toplevel
    try:
        text = "\n".join(step.line() for step in backward(config, int(version)))
    except RegistryError as err:
        text = f"lineage unavailable: {err}"
    return (f"<h2>Lineage of version {html.escape(str(version))}</h2>"
            f"<pre style=\"font-size:.8em;overflow-x:auto\">{html.escape(text)}</pre>")


def build_report(config: Config, run_id: Optional[str] = None,
                 assets_dir: Optional[os.PathLike] = None) -> Path:
    """Write the run's report; returns the path of ``report.html``.

    ``assets_dir`` (default ``<project_home>/assets``) receives ``report_*.png`` copies;
    pass an empty string to skip them.
    """
    run = load_run(config, run_id)
    summary: Dict[str, Any] = {"pipeline": config.pipeline_name, "run_id": run.run_id,
                               "created_ms": run.created_ms, "nodes": run.nodes}
    pusher = run.outputs.get(("Pusher", "pushed_model"))
    pushed = custom_property(pusher, "pushed")
    if run.state("Pusher") == "CACHED":  # an earlier run's push, not this run's
        pushed = 0
    summary["pushed"] = bool(pushed) if pushed is not None else None
    summary["pushed_version"] = custom_property(pusher, "pushed_version") if pushed else None
    pngs: Dict[str, bytes] = {}
    data = _data_section(config, run, summary, pngs)
    from cartola.reports.drift_section import drift_section  # pylint: disable=import-outside-toplevel
    drift = drift_section(config, run, summary, pngs)
    model, evaluation = _model_section(run, summary)
    model += _family_section(run, summary)
    curves = _curves_section(config, run, evaluation, summary, pngs) if evaluation else ""
    page = _render(config, summary, [_overview(config, run, summary), data, drift, model, curves,
                                     _lineage_section(config, summary)])

    out_dir = report_path(config, run.run_id).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, png in pngs.items():
        (out_dir / f"{ASSETS_PREFIX}{name}.png").write_bytes(png)
    assets = config.project_home / "assets" if assets_dir is None else (
        Path(assets_dir) if str(assets_dir) else None)
    if assets is not None and pngs:
        assets.mkdir(parents=True, exist_ok=True)
        for name in pngs:
            shutil.copyfile(out_dir / f"{ASSETS_PREFIX}{name}.png",
                            assets / f"{ASSETS_PREFIX}{name}.png")
    summary["assets"] = sorted(f"{ASSETS_PREFIX}{name}.png" for name in pngs)
    _write_atomic(out_dir / "report.json", json.dumps(summary, indent=2, default=_json_default))
    report = out_dir / "report.html"
    _write_atomic(report, page)
    return report


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
