"""`cartola monitor` and the monitoring DAG: score drift measures (unit), then the real server
(`python -m cartola.serving.server`, logging requests) serving the session's pushed version to
normal and to skewed traffic, `cartola monitor` on each, and `airflow dags test` of the
monitoring DAG on the skewed logs triggering a training run."""
# pylint: disable=import-outside-toplevel
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from conftest import SAMPLE_CSV
from cartola.monitoring.monitor import population_stability_index, score_drift

SHIFTED = "avg_3"


def test_psi_is_zero_on_the_same_distribution_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    expected = rng.beta(2, 5, 20_000)
    assert population_stability_index(expected, expected) == pytest.approx(0.0, abs=1e-12)
    same = population_stability_index(expected, rng.beta(2, 5, 20_000))
    shifted = population_stability_index(expected, np.clip(expected + 0.2, 0, 1))
    assert same < 0.01 < 0.2 < shifted
    # By hand on two bins: shares (0.5, 0.5) against (0.2, 0.8).
    two = population_stability_index(np.array([0.1, 0.2, 0.8, 0.9]),
                                     np.array([0.1, 0.8, 0.85, 0.9, 0.95]), bins=2)
    assert two == pytest.approx((0.2 - 0.5) * np.log(0.2 / 0.5) + (0.8 - 0.5) * np.log(0.8 / 0.5))


def test_score_drift_ks_is_scipys():
    from scipy import stats
    rng = np.random.default_rng(1)
    first, second = rng.random(3000), rng.random(2000) ** 1.3
    result = score_drift(first, second)
    assert result["ks"] == pytest.approx(stats.ks_2samp(first, second).statistic)
    assert result["eval_rows"] == 3000 and result["live_rows"] == 2000


def test_window_takes_airflow_pendulum_times_and_naive_utc():
    import datetime as dt
    import pendulum
    from cartola.config import load_config
    from cartola.monitoring.monitor import MonitorError, window
    config = load_config(environ={}, monitor_window_hours=6)
    start, end = window(config, until=pendulum.datetime(2026, 11, 24, 12, tz="UTC"))
    assert type(start) is dt.datetime and type(end) is dt.datetime  # pylint: disable=unidiomatic-typecheck
    assert (start.isoformat(), end.isoformat()) == ("2026-11-24T06:00:00+00:00",
                                                    "2026-11-24T12:00:00+00:00")
    assert window(config, since=dt.datetime(2026, 11, 24), until=dt.datetime(2026, 11, 25)
                  )[0].isoformat() == "2026-11-24T00:00:00+00:00"
    with pytest.raises(MonitorError, match="empty window"):
        window(config, since=dt.datetime(2026, 11, 25), until=dt.datetime(2026, 11, 24))


# --------------------------------------------------------------------------------------------
# The real server, the monitor and the monitoring DAG.

def _env(config, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CARTOLA_")}
    env.update(CARTOLA_HOME=str(config.project_home), CARTOLA_SCHEMA_PATH=str(config.schema_path),
               CARTOLA_DATA_ROOT=str(config.data_root), TF_CPP_MIN_LOG_LEVEL="2")
    env.update({f"CARTOLA_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def _serve_and_send(config, log_dir, rows: pd.DataFrame) -> None:
    """Start the server with request logging into ``log_dir``, score ``rows``, stop it."""
    from cartola.serving.client import ServingClient
    with subprocess.Popen(
            [sys.executable, "-m", "cartola.serving.server", "--port", "0",
             "--request-log-dir", str(log_dir)],
            env=_env(config), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True) as server:
        try:
            url = None
            for line in server.stdout:
                found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
                if found:
                    url = found.group(1)
                    break
            assert url, "the server did not start"
            client = ServingClient(url, config.model_name)
            client.wait_for_version(1, timeout=120)
            features = list(config.numeric_features)
            for start in range(0, len(rows), 1000):
                chunk = rows.iloc[start:start + 1000][features]
                client.predict([{k: (None if pd.isna(v) else v) for k, v in r.items()}
                                for r in chunk.to_dict("records")])
        finally:
            server.send_signal(signal.SIGTERM)  # closes the log file: readers see it whole
            server.communicate(timeout=60)


@pytest.fixture(name="traffic", scope="module")
def fixture_traffic(pushed_project, tmp_path_factory):
    """(config, normal log dir, skewed log dir): 4,000 rows of the training span served as
    they are, and the same rows with avg_3 shrunk to a third."""
    config, _ = pushed_project
    root = tmp_path_factory.mktemp("traffic")
    rows = pd.read_csv(SAMPLE_CSV, nrows=4000)
    skewed = rows.assign(**{SHIFTED: rows[SHIFTED] / 3})
    _serve_and_send(config, root / "normal", rows)
    _serve_and_send(config, root / "skewed", skewed)
    return config, root / "normal", root / "skewed"


def _monitor(config, log_dir, monitor_dir, *args):
    """``cartola monitor ARGS`` as a user runs it, on the logs under ``log_dir``."""
    return subprocess.run([sys.executable, "-m", "cartola.cli", "monitor", *args], env=_env(
        config, request_log_dir=log_dir, monitor_dir=monitor_dir), capture_output=True,
                          text=True, timeout=600, check=False)


@pytest.mark.e2e
@pytest.mark.timeout(1200)
def test_logged_traffic_round_trips_and_skew_fails_naming_the_feature(traffic, tmp_path):
    config, normal, skewed = traffic
    from cartola.serving.request_log import logged_files
    assert logged_files(normal / config.model_name) and logged_files(skewed / config.model_name)

    passed = _monitor(config, normal, tmp_path / "normal")
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "within every threshold" in passed.stdout
    assert "4000 logged rows" in passed.stdout and "Traceback" not in passed.stderr
    (result_file,) = (tmp_path / "normal").glob("*/monitor.json")
    result = json.loads(result_file.read_text(encoding="utf-8"))
    assert result["status"] == "passed" and result["version"] == 1
    assert {row["feature"] for row in result["skew"]} == set(config.numeric_features)
    assert result["score"]["live_rows"] == 4000

    failed = _monitor(config, skewed, tmp_path / "skewed")
    assert failed.returncode == 3, failed.stdout + failed.stderr
    problems = [line for line in failed.stderr.splitlines() if line.startswith("[skew]")]
    assert problems and all(f"feature '{SHIFTED}'" in line for line in problems), failed.stderr
    assert "Traceback" not in failed.stderr
    report = re.search(r"monitor report: (\S+)", failed.stdout).group(1)
    with open(report, encoding="utf-8") as handle:
        page = handle.read()
    assert 'alt="skew per feature"' in page and 'alt="score distributions"' in page
    assert f"feature &#x27;{SHIFTED}&#x27;" in page

    nothing = _monitor(config, tmp_path / "no_logs", tmp_path / "none")
    assert nothing.returncode == 2 and "no request log" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    bad = pd.read_csv(SAMPLE_CSV, nrows=300, dtype=str)
    bad.loc[5, "avg_4"] = "abc"
    bad.to_csv(tmp_path / "bad.csv", index=False)
    refused = _monitor(config, tmp_path / "no_logs", tmp_path / "none", "--batch",
                       str(tmp_path / "bad.csv"))
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert refused.stderr.strip().splitlines()[-1] == (
        f"cartola monitor: {tmp_path / 'bad.csv'}:7: feature 'avg_4': 'abc' is not a number")


@pytest.mark.e2e
@pytest.mark.timeout(1500)
def test_monitoring_dag_on_skewed_logs_triggers_training(traffic, tmp_path):
    """`airflow dags test` of the monitoring DAG: monitor fails its checks, retrain_needed
    goes on and trigger_training creates a run of the training DAG with the report in its
    conf (no scheduler here, so that run stays queued)."""
    from cartola.orchestration.airflow_local import local_airflow
    from cartola.orchestration.monitoring_tasks import dag_id
    config, _, skewed = traffic
    config = config.replace(request_log_dir=skewed, monitor_dir=tmp_path / "monitoring",
                            airflow_home=tmp_path / "airflow", schedule="none")
    local = local_airflow(config, export_config=True)
    local.prepare()
    assert (local.dags_dir / "tfx_monitoring.py").is_symlink()
    run = local.airflow("dags", "test", dag_id(config), check=False, timeout=1200)
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-5000:]
    found = subprocess.run([sys.executable, "-c", RUNS_SCRIPT, config.pipeline_name,
                            dag_id(config)], env=local.env(), capture_output=True, text=True,
                           timeout=120, check=True)
    runs = json.loads(found.stdout.strip().splitlines()[-1])
    (training,) = runs[config.pipeline_name]
    assert training["conf"]["triggered_by"] == dag_id(config), runs
    assert training["conf"]["monitor_report"].endswith("report.html"), runs
    # No scheduler here: the triggered run waits for one.
    assert training["run_type"] == "operator_triggered" and training["state"] == "queued", runs
    (monitoring,) = runs[dag_id(config)]
    assert monitoring["tasks"] == {"monitor": "success", "retrain_needed": "success",
                                   "trigger_training": "success"}, runs


RUNS_SCRIPT = r"""
import json, sys
from airflow.models import DagRun
from airflow.utils.session import create_session
out = {}
with create_session() as session:
    for dag_id in sys.argv[1:]:
        out[dag_id] = [{"conf": run.conf, "run_type": str(getattr(run.run_type, "value",
                                                                  run.run_type)),
                        "state": str(getattr(run.state, "value", run.state)),
                        "tasks": {ti.task_id: str(getattr(ti.state, "value", ti.state))
                                  for ti in run.get_task_instances(session=session)}}
                       for run in session.query(DagRun).filter(DagRun.dag_id == dag_id)]
print(json.dumps(out))
"""
