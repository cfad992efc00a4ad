"""The monitor's HTML report: skew per feature and the score distributions, with pictures."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Dict

import numpy as np

from cartola.reports.pages import CSS, figure_png, img, pyplot, table
from cartola.reports.drift_section import feature_panels


def plot_scores(reference: np.ndarray, traffic: np.ndarray, result: Dict[str, Any]) -> bytes:
    """Both score distributions on the same bins, with PSI and KS in the title."""
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(7, 3.2))
    bins = np.linspace(0, 1, 41)
    axis.hist(reference, bins=bins, density=True, histtype="step", linewidth=1.6,
              label=f"eval split of version {result['version']} ({len(reference)} rows)")
    axis.hist(traffic, bins=bins, density=True, histtype="step", linewidth=1.6,
              label=f"traffic ({len(traffic)} rows)")
    score = result["score"]
    axis.set_title(f"Scores: PSI {score['psi']:.3f}, KS {score['ks']:.3f}", fontsize=10)
    axis.set_xlabel("probability")
    axis.legend(fontsize=8)
    return figure_png(fig)


def write_page(result: Dict[str, Any], reference: np.ndarray, traffic: np.ndarray,
               folder: Path) -> Path:
    """Write ``report.html`` in ``folder``; returns its path."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    title = f"Monitor: version {result['version']}"
    status = ('<p class="bad">Past a threshold</p><ul>' + "".join(
        f'<li class="bad">{html.escape(line)}</li>' for line in result["problems"]) + "</ul>"
              if result["problems"] else '<p class="ok">Within every threshold</p>')
    score = result["score"]
    parts = [f"<h1>{html.escape(title)}</h1>",
             f"<p>{html.escape(result['traffic'])} against the data version "
             f"{result['version']} was trained on (span {html.escape(str(result['span']))}, "
             f"run <code>{html.escape(result['run_id'])}</code>).</p>", status,
             "<h2>Score drift</h2>",
             table(["measure", "value", "threshold"],
                   [("population stability index", score["psi"], result["thresholds"]["psi"]),
                    ("KS statistic", score["ks"], result["thresholds"]["ks"]),
                    ("KS p-value", score["ks_pvalue"], ""),
                    ("mean score (eval split / traffic)",
                     f"{score['eval_mean']:.4f} / {score['live_mean']:.4f}", "")]),
             img(plot_scores(reference, traffic, result), "score distributions"),
             "<h2>Feature skew (Jensen-Shannon divergence, TFDV)</h2>",
             table(["feature", "divergence", "threshold", "past it"],
                   [(row["feature"], row["value"], row["threshold"],
                     "yes" if row["failed"] else "no") for row in result["skew"]])]
    if result["skew"]:
        train = tfdv.load_stats_binary(str(Path(result["reference_statistics"]) / "Split-train"
                                           / "FeatureStats.pb")).datasets[0]
        live = tfdv.load_stats_binary(result["statistics"]).datasets[0]
        parts.append(img(feature_panels(result["skew"], [(train, "training data"),
                                                          (live, "traffic")],
                                        "Skew: share of rows per bucket (TFDV statistics)"),
                         "skew per feature"))
    path = folder / "report.html"
    path.write_text(f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>'
                    f"{html.escape(title)}</title><style>{CSS}</style></head><body>"
                    + "".join(parts) + "</body></html>", encoding="utf-8")
    return path
