"""Run history: one row per pipeline run from ML Metadata, for ``cartola runs`` and the
run-history page (when, how triggered, which data, what the gates said, challenger and
champion KS/AUC, blessing, pushed version or why not, the run's report)."""
from __future__ import annotations

import dataclasses
import datetime
import re
from pathlib import Path
from typing import List, Optional

from cartola.config import Config
from cartola.data.postgres import DATE_PATTERN
from cartola.data.spans import span_label
from cartola.pipeline import topology
from cartola.data.spans import examples_span
from cartola.registry.runs import (RunInfo, custom_property, execution_property,
                                   load_run, open_store, pipeline_runs)

REPORTS_DIR = "reports"
# Airflow run id prefixes (``<type>__<logical date>``) and what started the run.
_TRIGGERS = {"manual": "manual", "scheduled": "scheduled", "backfill": "backfill",
             "asset_triggered": "asset", "dataset_triggered": "asset"}


@dataclasses.dataclass
class RunRow:  # pylint: disable=too-many-instance-attributes
    """What one pipeline run did."""
    run_id: str
    started: datetime.datetime
    seconds: float
    trigger: str
    data: str = ""
    span: str = ""
    rows: Optional[int] = None
    anomalies: str = ""
    ks: Optional[float] = None
    auc: Optional[float] = None
    champion_ks: Optional[float] = None
    champion_auc: Optional[float] = None
    blessed: Optional[bool] = None
    pushed_version: Optional[int] = None
    outcome: str = ""
    report: Optional[Path] = None


def trigger_of(run_id: str) -> str:
    """'manual', 'scheduled', 'backfill', 'asset' (Airflow runs) or 'cartola run' (local)."""
    kind = run_id.split("__", 1)[0] if "__" in run_id else ""
    return _TRIGGERS.get(kind, "cartola run")


def report_path(config: Config, run_id: str) -> Path:
    """Where the run's report is (or would be) written."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("._") or "run"
    return config.project_home / REPORTS_DIR / safe / "report.html"


def _rows_in(statistics_uri: Optional[str]) -> Optional[int]:
    """Examples over all splits, from StatisticsGen's FeatureStats.pb files."""
    if not statistics_uri:
        return None
    from tensorflow_metadata.proto.v0 import statistics_pb2  # pylint: disable=import-outside-toplevel
    total = 0
    for path in Path(statistics_uri).glob("Split-*/FeatureStats.pb"):
        stats = statistics_pb2.DatasetFeatureStatisticsList.FromString(path.read_bytes())
        total += sum(d.num_examples for d in stats.datasets)
    return total


def _anomalies(run: RunInfo) -> str:
    if run.state("DataValidationGate") == "FAILED":
        return "stopped the run"
    uri = run.output_uri("ExampleValidator", "anomalies")
    if uri is None:
        return ""
    from tensorflow_metadata.proto.v0 import anomalies_pb2  # pylint: disable=import-outside-toplevel
    count = sum(len(anomalies_pb2.Anomalies.FromString(p.read_bytes()).anomaly_info)
                for p in Path(uri).glob("Split-*/SchemaDiff.pb"))
    return "none" if count == 0 else f"{count} found"


def _evaluation(row: RunRow, run: RunInfo) -> List[str]:
    """Fill the metrics from the Evaluator's output; the failed thresholds, one line each."""
    uri = run.output_uri("Evaluator", "evaluation")
    if uri is None or not Path(uri, "eval_config.json").is_file():
        return []
    from cartola.pipeline.evaluation import load_evaluation  # pylint: disable=import-outside-toplevel
    evaluation = load_evaluation(uri)
    row.ks, row.auc = evaluation["overall"].get("ks"), evaluation["overall"].get("auc")
    base = evaluation["baseline_overall"]
    row.champion_ks, row.champion_auc = base.get("ks"), base.get("auc")
    return [f"{f['metric']} {f['value']:.4f}" for f in evaluation["failures"]]


def _outcome(row: RunRow, run: RunInfo, failures: List[str]) -> str:
    failed = [name for name, state, _ in run.nodes if state == "FAILED"]
    if row.pushed_version is not None:
        return f"pushed version {row.pushed_version}"
    if failed:
        return f"failed at {failed[0]}"
    identical = custom_property(run.outputs.get(("Pusher", "pushed_model")),
                                "identical_to_version")
    if identical is not None:
        return f"nothing pushed: identical to version {identical}"
    if row.blessed is False:
        return "not blessed: " + (", ".join(failures) or "thresholds")
    if run.state("Pusher") is None:
        return "running or stopped" if run.nodes else "no node ran"
    return "nothing pushed"


def run_row(config: Config, run: RunInfo) -> RunRow:
    """The history row of one loaded run."""
    row = RunRow(run.run_id, datetime.datetime.fromtimestamp(run.created_ms / 1000),
                 (run.finished_ms - run.created_ms) / 1000, trigger_of(run.run_id))
    report = report_path(config, run.run_id)
    row.report = report if report.is_file() else None
    example_gen = topology.example_gen(config.source)
    examples = run.outputs.get((example_gen, "examples"))
    if examples is not None:
        number = examples_span(examples)
        row.span = (span_label(number, DATE_PATTERN if config.source == "postgresql"
                               else config.span_pattern) if number else "")
        row.data = str(custom_property(examples, "query")
                       or execution_property(run.executions.get(example_gen), "input_base")
                       or examples.uri)
    row.rows = _rows_in(run.output_uri("StatisticsGen", "statistics"))
    row.anomalies = _anomalies(run)
    failures = _evaluation(row, run)
    blessed = custom_property(run.outputs.get(("Evaluator", "blessing")), "blessed")
    row.blessed = None if blessed is None else blessed == 1
    pusher = run.outputs.get(("Pusher", "pushed_model"))
    if custom_property(pusher, "pushed") == 1:
        version = int(custom_property(pusher, "pushed_version"))
        if run.state("Pusher") == "CACHED":  # an earlier run's push, published again
            row.outcome = f"nothing pushed: cached, version {version}"
            return row
        row.pushed_version = version
    row.outcome = _outcome(row, run, failures)
    return row


def history(config: Config, last: Optional[int] = None) -> List[RunRow]:
    """Rows of the pipeline's runs, oldest first (the ``last`` N only, when given)."""
    store = open_store(config)
    runs = pipeline_runs(store, config.pipeline_name)
    if last:
        runs = runs[-last:]
    return [run_row(config, load_run(config, r.name, store)) for r in runs]


def _num(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.3f}"


def table_rows(rows: List[RunRow]) -> List[List[str]]:
    """The table's cells, as text, for the terminal and the page."""
    return [[r.started.isoformat(sep=" ", timespec="seconds"), f"{r.seconds:.0f} s",
             r.trigger + (f" ({r.run_id})" if r.trigger != "cartola run" else ""),
             ", ".join(filter(None, [f"span {r.span}" if r.span else "",
                                     f"{r.rows:,} rows" if r.rows else "", r.data])) or "-",
             r.anomalies or "-", _num(r.ks), _num(r.auc), _num(r.champion_ks),
             _num(r.champion_auc), {True: "yes", False: "no", None: "-"}[r.blessed],
             r.outcome, str(r.report) if r.report else "-"]
            for r in rows]


HEADERS = ["start", "took", "trigger", "data", "anomalies", "KS", "AUC", "champion KS",
           "champion AUC", "blessed", "outcome", "report"]


def format_table(rows: List[RunRow]) -> str:
    """A plain-text table, one line per run."""
    cells = [HEADERS] + table_rows(rows)
    widths = [max(len(row[i]) for row in cells) for i in range(len(HEADERS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in cells)
