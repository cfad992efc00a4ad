"""The run-history page: every run in one table with KS and AUC over time, the version
serving now and its changes, each run linked to its report. Written to
``<project_home>/reports/index.html`` (self-contained) after each run."""
from __future__ import annotations

import html
import os
import sys
from pathlib import Path
from typing import List, Optional

from cartola.config import Config
from cartola.published import served
from cartola.registry.history import HEADERS, REPORTS_DIR, RunRow, history, table_rows
from cartola.reports.pages import CSS, figure_png, img, pyplot, table


def plot_metrics(rows: List[RunRow]) -> Optional[bytes]:
    """KS and AUC of each run's challenger over time; pushed runs marked."""
    scored = [r for r in rows if r.ks is not None or r.auc is not None]
    if not scored:
        return None
    plt = pyplot()
    fig, axis = plt.subplots(figsize=(9, 3.4))
    times = [r.started for r in scored]
    for name, values, color in (("KS", [r.ks for r in scored], "#1565c0"),
                                ("AUC", [r.auc for r in scored], "#2e7d32")):
        axis.plot(times, values, marker="o", color=color, label=f"{name} (challenger)")
        pushed = [(t, v) for t, v, r in zip(times, values, scored) if r.pushed_version]
        if pushed:
            axis.scatter(*zip(*pushed), s=120, facecolors="none", edgecolors=color)
    for row in scored:
        if row.pushed_version:
            axis.annotate(f"v{row.pushed_version}", (row.started, row.auc or row.ks),
                          textcoords="offset points", xytext=(0, 8), ha="center", fontsize=8)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("metric on the eval split")
    axis.set_title("Challenger KS and AUC per run (circled: pushed)")
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    fig.autofmt_xdate()
    return figure_png(fig)


def _serving_now(config: Config) -> str:
    base = config.model_serving_dir
    try:
        version = served.served_version(base)
    except served.ServedVersionError as err:
        return f'<p class="bad">{html.escape(str(err))}</p>'
    if version is None:
        return "<p>No version is served yet.</p>"
    pinned = served.pinned_version(base)
    how = "the highest version" if pinned is None else "pinned in served.json"
    text = (f"<p>Serving now: <b>version {version}</b> ({how}) from "
            f"<code>{html.escape(str(base / str(version)))}</code>.</p>")
    log = served.served_log(base)
    if log:
        text += "<h2>Served-version changes</h2>" + table(
            ["when", "who", "action", "from", "to", "why"],
            [[e["at"], e["by"], e["action"], e["from"], e["to"], e["reason"]] for e in log])
    return text


def render(config: Config, rows: List[RunRow]) -> str:
    """The page's HTML."""
    out_dir = config.project_home / REPORTS_DIR
    cells = table_rows(rows)
    for row, line in zip(rows, cells):
        line[-1] = ("-" if row.report is None else
                    f'<a href="{html.escape(os.path.relpath(row.report, out_dir))}">report</a>')
    body = "".join("<tr>" + "".join(f"<td>{c if i == len(line) - 1 else html.escape(c)}</td>"
                                    for i, c in enumerate(line)) + "</tr>"
                   for line in reversed(cells))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in HEADERS)
    png = plot_metrics(rows)
    title = f"{config.pipeline_name}: run history"
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{CSS}"
            ".history td{text-align:left;vertical-align:top}</style></head><body>"
            f"<h1>{html.escape(title)}</h1>{_serving_now(config)}"
            + (img(png, "KS and AUC over time") if png else "")
            + f"<h2>Runs ({len(rows)}, newest first)</h2>"
            f'<table class="history"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
            "</body></html>")


def write_history_page(config: Config) -> Path:
    """Write ``reports/index.html`` from ML Metadata; returns its path."""
    path = config.project_home / REPORTS_DIR / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".index.html.{os.getpid()}.tmp")
    tmp.write_text(render(config, history(config)), encoding="utf-8")
    os.replace(tmp, path)
    return path


def history_page_after_run(config) -> Optional[Path]:
    """The refreshed run-history page; a page that cannot be made is a warning."""
    try:
        return write_history_page(config)
    except Exception as err:  # pylint: disable=broad-except
        print(f"cartola: warning: no run-history page: {type(err).__name__}: {err}",
              file=sys.stderr)
        return None
