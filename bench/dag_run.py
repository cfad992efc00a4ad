"""Trigger-to-pushed-model wall time of the same pipeline on the same data, five ways, in one run.

- ``anchor``: TFX's AirflowDagRunner (bench/airflow_dag_runner_dag.py) on Airflow 2.11,
  SQLite, SequentialExecutor: the usual way, in its own venv (bench/airflow2_env.py);
- ``sqlite``: our DAG on Airflow 3, the embedded default (SQLite, LocalExecutor, TFX
  preloaded in the scheduler);
- ``postgres``: our DAG, Airflow's database and ML Metadata on PostgreSQL, LocalExecutor,
  TFX preloaded;
- ``celery``: our DAG on CeleryExecutor, two workers, Redis broker, TFX preloaded per worker;
- ``local``: LocalDagRunner in one process (the floor; its pipeline time, imports excluded).

Each Airflow variant gets a fresh project home and AIRFLOW_HOME, is started and healthy
before the clock starts, and is triggered once (REST API v2 for ours, the CLI for the
anchor). Measured from the trigger: when model version 1 appears in serving_model/, and when
the run finishes. The anchor's DAG file needs an import timeout above Airflow's default 30 s.

    python bench/dag_run.py [--data-root data] [--only anchor,sqlite,...]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict

import airflow2_env
from cartola.config import Config, load_config
from cartola.data.spans import latest_folder
from cartola.orchestration import processes
from cartola.orchestration.airflow_local import config_env, local_airflow
from cartola.orchestration.services import free_port
from cartola.published.versions import model_versions

REPO = Path(__file__).resolve().parents[1]
ANCHOR_DAG = REPO / "bench" / "airflow_dag_runner_dag.py"
ORDER = ("anchor", "sqlite", "postgres", "celery", "local")


def _config(tmp: str, data_root: Path, **overrides):
    return load_config(environ={}, project_home=tmp, data_root=str(data_root),
                       schema_path=str(REPO / "schema" / "schema.pbtxt"), schedule="none",
                       **overrides)


def _wait_push(serving: Path, started: float, timeout: float,
               finished: Callable[[], str]) -> Dict[str, object]:
    """Poll for model version 1 and the run's end; seconds from ``started``."""
    pushed_at, state, last_check = None, "running", 0.0
    while time.time() - started < timeout:
        if pushed_at is None and model_versions(serving):
            pushed_at = time.time()
        if time.time() - last_check > 5:
            last_check = time.time()
            state = finished()
            if state in ("success", "failed"):
                break
        time.sleep(0.5)
    return {"state": state, "to_push": pushed_at - started if pushed_at else None,
            "to_end": time.time() - started}


def run_ours(profile: str, data_root: Path, timeout: float) -> Dict[str, object]:
    """Our DAG on Airflow 3 in ``profile``."""
    with tempfile.TemporaryDirectory(prefix=f"dag_run_{profile}_") as tmp:
        config = _config(tmp, data_root, airflow_profile=profile, airflow_port=free_port(),
                         airflow_parallelism=4 if profile != "celery" else 2)
        local = local_airflow(config, export_config=True)
        local.start()
        try:
            local.api.wait_dag(config.pipeline_name, timeout=300)
            # A long-running Airflow has imported TFX long before a run: start the clock once
            # the workers' parents have (the import itself is reported at start-up).
            deadline = time.time() + 600
            while not local.preloaded() and time.time() < deadline:
                time.sleep(1)
            print(f"[{profile}] triggering", file=sys.stderr, flush=True)
            started = time.time()
            run_id = local.trigger(config.pipeline_name)
            result = _wait_push(config.model_serving_dir, started, timeout,
                                lambda: local.api.dag_run(config.pipeline_name, run_id)["state"])
            tis = local.task_instances(config.pipeline_name, run_id)
            result["hosts"] = sorted({ti["hostname"] for ti in tis.values()})
        finally:
            local.stop()
            local.services.remove_data()
    return result


def run_anchor(data_root: Path, timeout: float) -> Dict[str, object]:
    """TFX's AirflowDagRunner on Airflow 2.11 (SQLite, SequentialExecutor), scheduler only."""
    airflow2_env.python()
    with tempfile.TemporaryDirectory(prefix="dag_run_anchor_") as tmp:
        config = _config(tmp, data_root)
        dag_id = config.pipeline_name + "_tfx_runner"
        home = Path(tmp) / "airflow"
        (home / "dags").mkdir(parents=True)
        (home / "dags" / ANCHOR_DAG.name).symlink_to(ANCHOR_DAG)
        env = airflow2_env.env({**config_env(config), "AIRFLOW_HOME": str(home),
                                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                                "AIRFLOW__CORE__EXECUTOR": "SequentialExecutor",
                                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "300",
                                "AIRFLOW__CORE__DAG_FILE_PROCESSOR_TIMEOUT": "400",
                                "AIRFLOW__SCHEDULER__DAG_DIR_LIST_INTERVAL": "10",
                                "TF_CPP_MIN_LOG_LEVEL": "2"})
        airflow = str(airflow2_env.VENV / "bin" / "airflow")

        def cli(*args: str) -> str:
            return subprocess.run([airflow, *args], env=env, cwd=tmp, capture_output=True,
                                  text=True, check=True, timeout=600).stdout

        cli("db", "migrate")
        pid_file = home / "run" / "scheduler.pid"
        processes.spawn(pid_file, home / "logs" / "scheduler.log",
                        [airflow, "scheduler", "--skip-serve-logs"], env, home)
        try:
            deadline = time.time() + 600
            while dag_id not in cli("dags", "list", "-o", "plain"):
                assert time.time() < deadline, "the anchor DAG was never parsed"
                time.sleep(5)
            print("[anchor] triggering", file=sys.stderr, flush=True)
            started = time.time()
            cli("dags", "trigger", dag_id)

            def state() -> str:
                lines = cli("dags", "list-runs", "-d", dag_id, "-o", "json").strip().splitlines()
                runs = json.loads(lines[-1]) if lines and lines[-1].startswith("[") else []
                return runs[0]["state"] if runs else "queued"
            result = _wait_push(config.model_serving_dir, started, timeout, state)
        finally:
            processes.stop(pid_file, 20)
    return result


def run_local(data_root: Path, timeout: float) -> Dict[str, object]:
    """LocalDagRunner in one fresh process; its pipeline time excludes the TFX import."""
    with tempfile.TemporaryDirectory(prefix="dag_run_local_") as tmp:
        config = _config(tmp, data_root)
        code = ("import json; from cartola.orchestration.local import run_local; "
                "from cartola.config import load_config; "
                "print('RESULT ' + json.dumps(run_local(load_config())))")
        started = time.time()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             env={**os.environ, **config_env(config)}, timeout=timeout,
                             check=True).stdout
        wall = time.time() - started
        result = json.loads(out.split("RESULT ", 1)[1])
    return {"state": "success" if result["pushed_version"] else "failed",
            "to_push": result["seconds"], "to_end": wall}


def main() -> int:
    """Run the variants one after the other and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--data-root", type=Path,
                        default=latest_folder(REPO / "data", Config().span_pattern),
                        help="a folder of CSV files (default: the latest sample span)")
    parser.add_argument("--only", default=",".join(ORDER),
                        help=f"comma-separated subset of {','.join(ORDER)}")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    data_root = args.data_root.resolve()
    rows = 0
    for path in data_root.glob("*.csv"):
        with open(path, "rb") as handle:
            rows += sum(1 for _ in handle) - 1
    print(f"data: {data_root} ({rows} rows); {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}")
    runners = {"anchor": lambda: run_anchor(data_root, args.timeout),
               "local": lambda: run_local(data_root, args.timeout)}
    results = {}
    for kind in [k for k in ORDER if k in args.only.split(",")]:
        runner = runners.get(kind, lambda kind=kind: run_ours(kind, data_root, args.timeout))
        results[kind] = runner()
        print(f"[{kind}] {results[kind]}", file=sys.stderr, flush=True)
    print(f"\n{'variant':10} {'state':8} {'trigger->pushed':>16} {'trigger->end':>13} "
          f"{'/anchor':>8} {'/local':>7}")
    for kind, result in results.items():
        ratios = [result["to_push"] / results[ref]["to_push"]
                  if result["to_push"] and results.get(ref, {}).get("to_push") else None
                  for ref in ("anchor", "local")]
        print(f"{kind:10} {result['state']:8} {_fmt(result['to_push']):>16} "
              f"{_fmt(result['to_end']):>13} {_fmt(ratios[0], 'x'):>8} "
              f"{_fmt(ratios[1], 'x'):>7}")
    return 0 if all(r["state"] == "success" and r["to_push"] for r in results.values()) else 1


def _fmt(value, unit=" s") -> str:
    return "-" if value is None else f"{value:.2f}{unit}" if unit == "x" else f"{value:.1f}{unit}"


if __name__ == "__main__":
    sys.exit(main())
