"""Trigger-to-pushed-model wall time under the real scheduler: our DAG against the same
pipeline wrapped by TFX's AirflowDagRunner, on the same data, in one run.

For each DAG: a fresh temporary project home and AIRFLOW_HOME (SQLite, SequentialExecutor,
started with cartola.orchestration.airflow_local), only that DAG file in the dags folder, one run
triggered through the REST API. Measured from the trigger: when model version 1 appears in
serving_model/ and when the run succeeds; plus each task's duration and the scheduling gaps.
The AirflowDagRunner file needs a longer import timeout than Airflow's default 30 s to be
measurable at all (set to 300 s here for both DAGs).

    python bench/dag_run.py [--data-root data] [--only ours|tfx_runner]
"""
from __future__ import annotations

import argparse
import os
import re
import socket
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from cartola.orchestration.airflow_local import AirflowLocalError, local_airflow
from cartola.versions import model_versions
from cartola.config import load_config

REPO = Path(__file__).resolve().parents[1]
DAG_FILES = {"ours": REPO / "src" / "tfx_pipeline.py",
             "tfx_runner": REPO / "bench" / "airflow_dag_runner_dag.py"}
TIMING = re.compile(r"timing: node (\S+) import ([\d.]+) s, run ([\d.]+) s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _when(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def run_one(kind: str, data_root: Path, timeout: float) -> dict:
    """Start Airflow with one DAG, trigger it, wait; return the measurements."""
    with tempfile.TemporaryDirectory(prefix=f"dag_run_{kind}_") as tmp:
        config = load_config(environ={}, project_home=tmp, data_root=str(data_root),
                             schema_path=str(REPO / "schema" / "schema.pbtxt"), schedule="none")
        dag_id = config.pipeline_name + ("_tfx_runner" if kind == "tfx_runner" else "")
        local = local_airflow(config, port=_free_port(), export_config=True,
                              dag_files=[DAG_FILES[kind]],
                              env_extra={"AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                                         "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "400",
                                         "TF_CPP_MIN_LOG_LEVEL": "2"})
        local.start()
        try:
            deadline = time.monotonic() + 300
            while True:  # the first parse of the TFX-runner file takes ~30 s or more
                try:
                    local.api("GET", f"/dags/{dag_id}")
                    break
                except AirflowLocalError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(1)
            print(f"[{kind}] triggering {dag_id}", file=sys.stderr, flush=True)
            triggered = time.time()
            run_id = local.trigger(dag_id)
            pushed_at = None
            state = "running"
            last_check = 0.0
            while time.time() - triggered < timeout:
                if pushed_at is None and model_versions(config.model_serving_dir):
                    pushed_at = time.time()
                if time.time() - last_check > 3:
                    last_check = time.time()
                    state = local.run_state(dag_id, run_id)
                    if state in ("success", "failed"):
                        break
                time.sleep(0.5)
            finished = time.time()
            tis = local.task_instances(dag_id, run_id)
            timings = {}
            for task_id in tis:
                match = TIMING.search(local.task_log(dag_id, run_id, task_id, 1))
                if match:
                    timings[task_id] = (float(match.group(2)), float(match.group(3)))
        finally:
            local.stop()
    tasks = sorted((ti for ti in tis.values() if ti["start_date"]),
                   key=lambda ti: _when(ti["start_date"]))
    task_seconds = sum(ti["duration"] or 0 for ti in tasks)
    return {"kind": kind, "state": state, "run_id": run_id,
            "to_push": pushed_at - triggered if pushed_at else None,
            "to_success": finished - triggered, "task_seconds": task_seconds,
            "tasks": tasks, "timings": timings}


def report(result: dict) -> None:
    """Per-task table of one DAG run."""
    print(f"\n== {result['kind']}: run {result['state']}; trigger -> model pushed "
          f"{_fmt(result['to_push'])}, trigger -> run finished {_fmt(result['to_success'])}; "
          f"sum of task durations {result['task_seconds']:.0f} s")
    print(f"{'task':32} {'state':9} {'try':>3} {'task s':>7} {'gap s':>6} "
          f"{'TFX import s':>12} {'node s':>7}")
    previous_end = None
    for ti in result["tasks"]:
        gap = _when(ti["start_date"]) - previous_end if previous_end else 0.0
        previous_end = _when(ti["end_date"]) if ti["end_date"] else previous_end
        imported, ran = result["timings"].get(ti["task_id"], (None, None))
        print(f"{ti['task_id']:32} {ti['state']:9} {ti['try_number']:3d} "
              f"{ti['duration'] or 0:7.1f} {gap:6.1f} {_fmt(imported, ''):>12} "
              f"{_fmt(ran, ''):>7}")


def _fmt(value, unit=" s") -> str:
    return "-" if value is None else f"{value:.1f}{unit}"


def main() -> int:
    """Run both DAGs one after the other and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--data-root", type=Path, default=REPO / "data")
    parser.add_argument("--only", choices=sorted(DAG_FILES))
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    rows = 0
    for path in args.data_root.glob("*.csv"):
        with open(path, "rb") as handle:
            rows += sum(1 for _ in handle) - 1
    print(f"data: {args.data_root} (~{rows} rows); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; SQLite + SequentialExecutor")
    results = [run_one(kind, args.data_root.resolve(), args.timeout)
               for kind in ([args.only] if args.only else ["ours", "tfx_runner"])]
    for result in results:
        report(result)
    if len(results) == 2 and all(r["to_push"] for r in results):
        ours, theirs = results
        print(f"\nratio AirflowDagRunner / ours: trigger -> pushed "
              f"{theirs['to_push'] / ours['to_push']:.2f}x "
              f"({theirs['to_push']:.0f} s vs {ours['to_push']:.0f} s)")
    return 0 if all(r["state"] == "success" and r["to_push"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
