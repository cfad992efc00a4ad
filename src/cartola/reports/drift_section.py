"""The run report's drift section: per model feature, this span's distribution against the
served model's training data, with the Jensen-Shannon divergence, its threshold and how the
threshold was set (a floor, or the noise of samples that size); the label's odds ratio."""
from __future__ import annotations

import html
import math
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from cartola.config import Config
from cartola.registry.runs import RunInfo
from cartola.reports.pages import figure_png, img, load_statistics, pyplot, table
from cartola.validation.drift import load_result, stopped_dir, threshold_note

NODE = "DriftGate"
KEY = "drift"


def drift_result(config: Config, run: RunInfo) -> Optional[Dict[str, Any]]:
    """The run's ``drift.json``: from the published artifact, or, when the gate stopped the
    run (TFX deletes a failed execution's outputs), from where the gate kept it."""
    uri = run.output_uri(NODE, KEY)
    if uri is None and NODE in run.executions:
        uri = stopped_dir(str(config.pipeline_dir / NODE / KEY / str(run.executions[NODE].id)))
    return load_result(uri) if uri else None


def feature_distribution(stats, name: str):
    """(bucket edges or labels, shares) of a feature: TFDV's standard histogram (numeric) or
    its top values (string)."""
    feature = next((f for f in stats.features
                    if (f.path.step[0] if f.path.step else f.name) == name), None)
    if feature is None:
        return None
    if feature.HasField("num_stats"):
        for histogram in feature.num_stats.histograms:
            if histogram.type == histogram.STANDARD and histogram.buckets:
                edges = [b.low_value for b in histogram.buckets] + [
                    histogram.buckets[-1].high_value]
                counts = np.array([b.sample_count for b in histogram.buckets])
                return edges, counts / max(counts.sum(), 1)
        return None
    top = feature.string_stats.top_values[:12]
    total = sum(v.frequency for v in top) or 1
    return [v.value for v in top], np.array([v.frequency / total for v in top])


def plot_drift(result: Dict[str, Any]) -> Optional[bytes]:
    """One panel per model feature: baseline and this span, and the divergence."""
    if not result.get("baseline_statistics"):
        return None
    current = load_statistics(result["statistics"]).get("train")
    baseline = load_statistics(result["baseline_statistics"]).get("train")
    rows = [row for row in result["measurements"] if row["kind"] == "drift"
            and row.get("measure", "Jensen-Shannon") == "Jensen-Shannon"]
    if current is None or baseline is None or not rows:
        return None
    return feature_panels(rows, [(baseline, f"span {result['baseline_span']} (served model)"),
                                 (current, f"span {result['span']} (this run)")],
                          "Drift: share of training examples per bucket, served model's data "
                          "against this span (TFDV)")


def feature_panels(rows: List[Dict[str, Any]], sides: List[Tuple[Any, str]], title: str) -> bytes:
    """One panel per measured feature (``rows``: feature, value, threshold, failed), each
    drawing the feature's distribution in every (DatasetFeatureStatistics, label) of
    ``sides``."""
    plt = pyplot()
    columns = 3
    lines = math.ceil(len(rows) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(3.6 * columns, 2.5 * lines),
                             squeeze=False)
    for axis, row in zip(axes.flat, rows):
        for stats, label in sides:
            found = feature_distribution(stats, row["feature"])
            if found is None:
                continue
            edges, shares = found
            if isinstance(edges[0], str):
                axis.bar(range(len(edges)), shares, alpha=0.5, label=label)
                axis.set_xticks(range(len(edges)), edges, rotation=60, fontsize=6)
            else:
                axis.stairs(shares, edges, label=label)
        axis.set_title(f"{row['feature']}: JS {row['value']:.3f} (max {row['threshold']:.3g})",
                       fontsize=9, color="#b00020" if row["failed"] else "black")
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(rows):]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig)


def drift_section(config: Config, run: RunInfo, summary: Dict[str, Any],
                  pngs: Dict[str, bytes]) -> str:
    """HTML of the drift section (empty when the gate did not run)."""
    result = drift_result(config, run)
    if result is None:
        return ""
    summary["drift"] = {key: result.get(key) for key in
                        ("span", "baseline_span", "status", "problems")}
    parts = ["<h2>Drift and skew (Jensen-Shannon divergence, TFDV)</h2>"]
    if result.get("baseline_span") is None:
        parts.append('<p class="muted">No served model yet: nothing to compare this span '
                     "with (first run). Train/eval skew is checked.</p>")
    else:
        parts.append(f"<p>Span {html.escape(str(result['span']))} against span "
                     f"{html.escape(str(result['baseline_span']))}, the data the served model "
                     "was trained on.</p>")
    css = {"passed": "ok", "warned": "bad", "failed": "bad"}[result["status"]]
    parts.append(f'<p class="{css}">Drift gate: {html.escape(result["status"])}'
                 + (" (drift_action = \"warn\": trained anyway)" if result["status"] == "warned"
                    else "") + "</p>")
    if result["problems"]:
        parts.append("<ul>" + "".join(f'<li class="bad">{html.escape(line)}</li>'
                                      for line in result["problems"]) + "</ul>")
    parts.append(table(["kind", "feature", "measure", "value", "threshold",
                        "threshold set by", "past it"],
                       [(row["kind"], row["feature"], row.get("measure", "Jensen-Shannon"),
                         row["value"], row["threshold"], threshold_note(row),
                         "yes" if row["failed"] else "no") for row in result["measurements"]]))
    png = plot_drift(result)
    if png:
        pngs["drift"] = png
        parts.append(img(png, "drift per feature"))
    return "".join(parts)
