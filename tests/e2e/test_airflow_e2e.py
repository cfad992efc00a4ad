"""The Airflow DAG end to end on the sample data, on Airflow 3 in each profile:
`airflow dags test` (a push, a cached rerun, bad data); the real scheduler, DAG processor and
API server (SQLite, LocalExecutor) running a backfill over weekly spans with a task killed by
SIGKILL mid-run; the production profile (PostgreSQL for Airflow and ML Metadata, TFX
preloaded) with a REST trigger; and CeleryExecutor with two workers.

Each test starts what it needs in a temporary project home and AIRFLOW_HOME, servers
included, and stops it again.
"""
# pylint: disable=import-outside-toplevel
from __future__ import annotations

import json
import os
import shutil
import signal
import time
from datetime import date
from pathlib import Path

import pytest

from conftest import SAMPLE_CSV, make_config, profile_config
from pipeline_helpers import first_output
from receivers import WebhookReceiver
from cartola.data import sample_data
from cartola.orchestration.airflow_local import local_airflow
from cartola.published.versions import model_versions
from cartola.orchestration import airflow_tasks
from cartola.pipeline import topology

pytestmark = pytest.mark.e2e

DAG_ID = "cartola_pro"


def open_store(config):
    """The project's ML Metadata store (imports TFX: only once a test needs it)."""
    from cartola.metadata import open_metadata_store
    return open_metadata_store(config)


def run_ids(config) -> list:
    """Pipeline runs in ML Metadata."""
    store = open_store(config)
    return sorted(ctx.name for ctx in store.get_contexts_by_type("pipeline_run"))


def node_states(config, run_id) -> dict:
    """{node id: [execution states]} of one pipeline run."""
    store = open_store(config)
    return {node: [airflow_tasks._state_name(e)  # pylint: disable=protected-access
                   for e in airflow_tasks.node_executions(store, config, run_id, node)]
            for node in topology.nodes(config.source)}


def staging_dirs(config) -> list:
    """Leftover temporary copies of the atomic Pusher."""
    base = config.model_serving_dir
    return sorted(base.glob(".staging-*")) if base.is_dir() else []


def dags_test(local, conf: dict):
    """``airflow dags test`` of the DAG with ``conf`` (tasks run in one process)."""
    return local.airflow("dags", "test", DAG_ID, "--conf", json.dumps(conf), check=False,
                         timeout=1200)


def task_states(local, run_id) -> dict:
    """{task id: state} of a DAG run, through the CLI (no webserver needed)."""
    out = local.airflow("tasks", "states-for-dag-run", DAG_ID, run_id, "--output", "json")
    return {row["task_id"]: row["state"] for row in json.loads(out.stdout.strip().splitlines()[-1])}


@pytest.fixture(name="webhook")
def fixture_webhook():
    """A webhook receiver on 127.0.0.1 for the runs' notifications."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.mark.timeout(2000)
def test_dags_test_pushes_a_model_then_a_rerun_pushes_nothing_then_bad_data_stops(tmp_path,
                                                                                  webhook):
    """Trigger conf data_root -> model version 1; the same run again is cached, evaluates
    against version 1 and ends with new_model_pushed skipped: no duplicate version. Then a
    label value 2: DataValidationGate fails at once (no retry), nothing downstream runs, the
    gate's log names the feature, and serving is unchanged. The webhook hears version_pushed
    for the first run and data_rejected for the last."""
    config = make_config(tmp_path / "project", schedule="none")
    other_data = tmp_path / "other_data"
    other_data.mkdir()
    shutil.copy(SAMPLE_CSV, other_data / SAMPLE_CSV.name)  # a flat folder: one span
    local = local_airflow(config, export_config=True,
                          env_extra={"CARTOLA_WEBHOOK_URL": webhook.url})
    local.prepare()
    assert (local.dags_dir / "tfx_pipeline.py").is_symlink()  # the link mode

    first = dags_test(local, {"data_root": str(other_data)})
    assert first.returncode == 0, first.stdout[-5000:] + first.stderr[-5000:]
    assert model_versions(config.model_serving_dir) == [1]
    (run_1,) = run_ids(config)
    # No preload here (`dags test` is one plain process): the first TFX task imports it.
    logs = first.stdout + first.stderr + "".join(
        local.task_log(DAG_ID, run_1, task, 1) for task in topology.NODES)
    assert "(cold)" in logs, logs[-3000:]
    assert node_states(config, run_1) == {node: ["COMPLETE"] for node in topology.NODES}
    assert set(task_states(local, run_1).values()) == {"success"}
    store = open_store(config)
    (example_gen,) = [e for e in store.get_executions() if e.type.endswith("ExampleGen")]
    assert example_gen.custom_properties["input_base"].string_value == str(other_data)
    assert webhook.events() == ["version_pushed"], webhook.messages
    fields = webhook.messages[0]["fields"]
    assert (fields["version"], fields["run"], fields["DAG"]) == ("1", run_1, DAG_ID), fields
    assert float(fields["KS"]) > 0 and float(fields["AUC"]) > 0.5, fields

    second = dags_test(local, {"data_root": str(other_data)})
    assert second.returncode == 0, second.stdout[-5000:] + second.stderr[-5000:]
    run_2 = (set(run_ids(config)) - {run_1}).pop()
    states = task_states(local, run_2)
    assert states.pop(airflow_tasks.STATUS_TASK) == "skipped"
    assert set(states.values()) == {"success"}
    assert model_versions(config.model_serving_dir) == [1]
    assert staging_dirs(config) == []
    assert all(len(found) == 1 for found in node_states(config, run_2).values())

    bad_data = tmp_path / "bad_data"
    bad_data.mkdir()
    lines = SAMPLE_CSV.read_text(encoding="utf-8").splitlines()
    row = lines[1].split(",")
    row[lines[0].split(",").index("pro_target")] = "2"
    (bad_data / "data.csv").write_text("\n".join([lines[0], ",".join(row)] + lines[2:3000])
                                       + "\n", encoding="utf-8")
    result = dags_test(local, {"data_root": str(bad_data)})
    run_3 = (set(run_ids(config)) - {run_1, run_2}).pop()
    states = task_states(local, run_3)
    assert states[topology.VALIDATION_GATE] == "failed", states
    assert {states[task] for task in ("Transform", "Trainer", "Evaluator", "Pusher",
                                      airflow_tasks.STATUS_TASK)} == {"upstream_failed"}
    gate_log = (result.stdout + result.stderr
                + local.task_log(DAG_ID, run_3, topology.VALIDATION_GATE, 1))
    assert "feature 'pro_target'" in gate_log
    assert model_versions(config.model_serving_dir) == [1]
    assert webhook.events() == ["version_pushed", "data_rejected"], webhook.messages
    fields = webhook.messages[1]["fields"]
    assert (fields["task"], fields["run"]) == (topology.VALIDATION_GATE, run_3), fields
    assert "feature 'pro_target'" in webhook.messages[1]["blocks"][0]["text"]["text"]


def _wait_for_trainer_executor(local, run_id, timeout=900) -> int:
    """Pid of the Trainer's task process once its TFX executor is training."""
    import psutil
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trainer = local.task_instances(DAG_ID, run_id)["Trainer"]
        log = local.task_log(DAG_ID, run_id, "Trainer", 1)
        training = "Going to run a new execution" in log
        if trainer["state"] == "running" and trainer["pid"] and training:
            time.sleep(3)  # let it write some of its outputs
            scheduler = psutil.Process(json.loads(
                (local.home / "run" / "scheduler.pid").read_text())["pid"])
            # The task process is forked from a LocalExecutor worker forked from the scheduler.
            assert trainer["pid"] in {p.pid for p in scheduler.children(recursive=True)}
            return trainer["pid"]
        if trainer["state"] in ("success", "failed", "upstream_failed"):
            raise AssertionError(f"Trainer ended before it could be killed: {trainer}")
        time.sleep(1)
    raise AssertionError("Trainer never started")


def _when(stamp: str) -> float:
    from datetime import datetime
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def roots_overlapped(tis: dict, source: str = "csv") -> bool:
    """Whether the tasks with no upstream ran at the same time (parallel executor)."""
    roots = [tis[node] for node, ups in topology.nodes(source).items() if not ups]
    return max(_when(ti["start_date"]) for ti in roots) < min(_when(ti["end_date"])
                                                             for ti in roots)


def preloaded_tasks(local, run_id, source: str = "csv") -> set:
    """Task ids whose log says TFX was already imported by the worker they forked from."""
    return {task for task in topology.nodes(source)
            if "(TFX already loaded)" in local.task_log(DAG_ID, run_id, task, 1)}


def _statistics(config, run_id=None) -> dict:
    """{split: {feature: (non-missing count, mean or None)}} and {split: rows} of a
    StatisticsGen output (the first one, or the one of ``run_id``)."""
    from cartola.reports.pages import load_statistics
    from cartola.registry.runs import load_run
    uri = (load_run(config, run_id).output_uri("StatisticsGen", "statistics") if run_id
           else str(first_output(config, "StatisticsGen", "statistics")))
    found = {}
    for split, stats in load_statistics(uri).items():
        found[split] = {"rows": stats.num_examples}
        for feature in stats.features:
            numbers = feature.num_stats if feature.HasField("num_stats") else None
            common = numbers.common_stats if numbers else feature.string_stats.common_stats
            found[split][feature.path.step[0]] = (common.num_non_missing,
                                                  numbers.mean if numbers else None)
    return found


def _assert_same_statistics(from_db: dict, from_csv: dict) -> None:
    """The same rows from PostgreSQL and from the CSV span: same split, counts and means."""
    assert set(from_db) == set(from_csv) == {"train", "eval"}
    for split, features in from_csv.items():
        assert set(from_db[split]) == set(features)
        assert from_db[split].pop("rows") == features.pop("rows")
        for name, (count, mean) in features.items():
            assert from_db[split][name][0] == count, (split, name)
            assert from_db[split][name][1] == (mean if mean is None else  # strings: no mean
                                               pytest.approx(mean, rel=1e-6)), (split, name)


def _next_span_trains_on_new_rows(config, tmp_path, dag_run_id: str) -> None:
    """A new weekly snapshot in the table (other users: another seed): `cartola run`
    (latest span) reads it, and only it, into Transform and the Trainer."""
    from cartola.data.postgres import load_spans
    from cartola.orchestration.local import run_local
    from cartola.data.spans import examples_span
    new = sample_data.write_spans(tmp_path / "new", weeks=1, seed=7,
                                  latest=date(2026, 11, 23))[-1]
    assert new.parent.name == "snapshot=2026-11-23"
    assert load_spans(config, tmp_path / "new") == [("2026-11-23", 20_000)]
    result = run_local(config)
    assert result["span"].date == date(2026, 11, 23)
    store = open_store(config)
    (new_run,) = set(run_ids(config)) - {dag_run_id}
    (transform,) = airflow_tasks.node_executions(store, config, new_run, "Transform")
    (examples,) = airflow_tasks._output_artifacts(  # pylint: disable=protected-access
        store, airflow_tasks.node_executions(store, config, new_run, "PostgresExampleGen")[0])
    assert examples_span(examples) == result["span"].number
    assert examples.custom_properties["row_count"].int_value == 20_000
    assert "'20261123'" in examples.custom_properties["query"].string_value
    window = _inputs(store, transform)["examples"]
    assert [a.id for a in window] == [examples.id]  # train_spans = 1: the new rows only


@pytest.mark.timeout(1800)
def test_postgres_profile_rest_trigger_pushes_a_model(postgres_airflow, pushed_project,
                                                      tmp_path):
    """Production profile with the training data in PostgreSQL: a REST trigger leads to a
    pushed model trained from the database; the statistics equal those of the same rows
    read from CSV; ML Metadata on PostgreSQL holds one pipeline run; independent tasks
    overlapped; every task started with TFX preloaded; the servers listen on loopback only.
    Then a new snapshot in the table trains on its new rows."""
    import psutil
    config, local = postgres_airflow
    assert config.metadata_uri.startswith("postgresql://")
    nodes = topology.nodes("postgresql")
    run_id = local.trigger(DAG_ID)
    state = local.wait_run(DAG_ID, run_id, timeout=1200)
    tis = local.task_instances(DAG_ID, run_id)
    assert state == "success", {task: ti["state"] for task, ti in tis.items()}
    assert tis[airflow_tasks.STATUS_TASK]["state"] == "success"
    assert {ti["try_number"] for ti in tis.values()} == {1}  # no task needed a retry
    assert model_versions(config.model_serving_dir) == [1]
    assert run_ids(config) == [run_id]
    assert node_states(config, run_id) == {node: ["COMPLETE"] for node in nodes}
    assert roots_overlapped(tis, config.source)
    assert preloaded_tasks(local, run_id, config.source) == set(nodes)
    _assert_same_statistics(_statistics(config, run_id), _statistics(pushed_project[0]))
    ours = {local.port} | {int(json.loads((local.home / "services.json").read_text())[key])
                           for key in ("pg_port",)}
    listening = {c.laddr.port: c.laddr.ip for c in psutil.net_connections("inet")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port in ours}
    assert listening and set(listening.values()) == {"127.0.0.1"}, listening
    # Run history and lineage read the same PostgreSQL store; the Pusher's task refreshed
    # the run-history page.
    from cartola.registry.history import history
    from cartola.registry.lineage import backward
    (row,) = history(config)
    query = "SELECT * FROM cartola_users WHERE snapshot_date = '20261116'"
    assert (row.run_id, row.trigger, row.pushed_version, row.rows, row.span, row.data) == (
        run_id, "manual", 1, 20_000, "2026-11-16", query)
    assert row.ks >= config.min_ks and row.champion_ks is None
    notes = [note for step in backward(config, 1) for note in step.notes]
    assert f"query: {query}" in notes and "span 2026-11-16; 20000 rows" in notes, notes
    page = (config.project_home / "reports" / "index.html").read_text(encoding="utf-8")
    assert f"manual ({run_id})" in page and "pushed version 1" in page
    _next_span_trains_on_new_rows(config, tmp_path, run_id)


def _backfill_data(folder: Path) -> None:
    """Spans 2026-11-02 and -09 as shipped, and 2026-11-16 with the generator's planted drift."""
    for name in ("snapshot=2026-11-02", "snapshot=2026-11-09"):
        shutil.copytree(SAMPLE_CSV.parents[1] / name, folder / name)
    generated = sample_data.write_spans(folder.parent / "generated", weeks=1, drift=True,
                                        latest=date(2026, 11, 9))[-1].parent
    assert generated.name == "snapshot=2026-11-16"
    shutil.copytree(generated, folder / generated.name)


def _inputs(store, execution) -> dict:
    """{input key: [artifact]} of an ML Metadata execution."""
    from ml_metadata.proto import metadata_store_pb2
    events = [e for e in store.get_events_by_execution_ids([execution.id])
              if e.type == metadata_store_pb2.Event.INPUT]
    artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
    found: dict = {}
    for event in events:
        found.setdefault(event.path.steps[0].key, []).append(artifacts[event.artifact_id])
    return found


def _wait_for_runs(local, count: int, timeout: float, run_type: str = "") -> list:
    """The DAG's runs (of ``run_type`` only, when given), oldest first, once there are
    ``count`` (waiting ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = [run for run in local.api.dag_runs(DAG_ID)
                if not run_type or run["run_type"] == run_type]
        if len(runs) >= count:
            return sorted(runs, key=lambda r: r["logical_date"])
        assert time.monotonic() < deadline, runs
        time.sleep(2)


def _assert_survived_kill(config, run_id, tis, retry_log, preloaded) -> None:
    """The run whose Trainer was killed: the retry cleaned up and ran with TFX preloaded."""
    assert tis["Trainer"]["try_number"] == 2
    assert "removed its partial outputs" in retry_log
    assert {ti["state"] for ti in tis.values()} == {"success"}
    assert roots_overlapped(tis)
    # The killed Trainer attempt never logged its timing line; its retry did.
    assert preloaded == set(topology.NODES) - {"Trainer"}
    assert "(TFX already loaded)" in retry_log
    assert staging_dirs(config) == []
    states = node_states(config, run_id)
    # The schema import reads no span: the scheduler's own run of the new week, beside the
    # backfill, may have imported it first, and the backfill's run then reuses it.
    assert states.pop("ImportSchemaGen") in (["COMPLETE"], ["CACHED"])
    assert states == {node: ["COMPLETE"] for node in topology.NODES if node != "ImportSchemaGen"}


def _assert_week_2_challenged_the_champion(config, ids) -> dict:
    """Weeks 1 and 2 each trained once; week 2's Evaluator read week 2's span and week 1's
    model as the baseline. Returns week 2's push result."""
    from cartola.data.spans import examples_span
    store = open_store(config)
    trainers = [airflow_tasks.node_executions(store, config, run_id, "Trainer")
                for run_id in ids[:2]]
    assert [len(found) for found in trainers] == [1, 1]
    # The retry reused the killed execution's id: one output folder per Trainer execution.
    for key in ("model", "model_run"):
        assert sorted(p.name for p in (config.pipeline_dir / "Trainer" / key).iterdir()) == \
            sorted(str(found[0].id) for found in trainers)
    (model_1,) = [a for a in airflow_tasks._output_artifacts(store, trainers[0][0])  # pylint: disable=protected-access
                  if a.uri.split("/")[-2] == "model"]
    (evaluator_2,) = airflow_tasks.node_executions(store, config, ids[1], "Evaluator")
    inputs = _inputs(store, evaluator_2)
    assert [examples_span(a) for a in inputs["examples"]] == [
        airflow_tasks.recorded_span(config, ids[1])]
    assert [a.id for a in inputs["baseline_model"]] == [model_1.id]  # the champion
    second = airflow_tasks.push_result(config, ids[1])
    assert second["pushed"] == (second["blessed"] is True), second
    served = model_versions(config.model_serving_dir)
    assert served == ([1, 2] if second["pushed"] else [1]), (served, second)
    return second


@pytest.mark.timeout(2400)
def test_backfill_span_after_span_survives_kill_9_and_stops_at_drift(tmp_path):
    """`airflow backfill create` over three weekly intervals, on the embedded profile
    (SQLite, LocalExecutor) with the real scheduler, DAG processor and API server: three
    backfill runs, one after the other, on the three matching spans (as ML Metadata records
    them).

    Week 1: the Trainer's task process is killed by SIGKILL while it trains; Airflow retries
    it and the run pushes version 1, with exactly one finished execution per node. Week 2
    trains on its span and the Evaluator compares challenger and champion (version 1's
    model) on that span's eval split, pushing only if blessed. Week 3's planted drift stops
    at DriftGate naming the feature, with serving unchanged."""
    from cartola.data.spans import span_label
    data = tmp_path / "data"
    _backfill_data(data)
    # Slots for the scheduler's own run of a new week too (see below), which runs beside the
    # backfill and stops at its first task: the backfill's parallel tasks still overlap.
    config = profile_config(tmp_path / "project", "sqlite", data_root=str(data),
                            schedule="@weekly", airflow_parallelism=8)
    # Paused until the backfill exists, so the scheduler's own latest run (week 3) is not
    # created first: it then finds the backfill's run for that date and skips it.
    local = local_airflow(config, export_config=True,
                          env_extra={"AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
                                     "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2"})
    started = local.start()
    try:
        assert started["password"] and (os.stat(local.password_file).st_mode & 0o777) == 0o600
        assert local.start()["already_running"]  # idempotent
        local.api.wait_dag(DAG_ID, timeout=300)
        local.airflow("backfill", "create", "--dag-id", DAG_ID, "--from-date", "2026-11-01",
                      "--to-date", "2026-11-15", "--max-active-runs", "1")
        local.airflow("dags", "unpause", DAG_ID)
        first_id = _wait_for_runs(local, 1, 300, "backfill")[0]["dag_run_id"]
        os.kill(_wait_for_trainer_executor(local, first_id), signal.SIGKILL)
        deadline = time.monotonic() + 2000
        while True:
            runs = _wait_for_runs(local, 3, 900, "backfill")
            if all(r["state"] in ("success", "failed") for r in runs):
                break
            assert time.monotonic() < deadline, runs
            time.sleep(5)
        tis = [local.task_instances(DAG_ID, r["dag_run_id"]) for r in runs]
        drift_log = local.task_log(DAG_ID, runs[2]["dag_run_id"], topology.DRIFT_GATE, 1)
        retry_log = local.task_log(DAG_ID, first_id, "Trainer", 2)
        preloaded = preloaded_tasks(local, first_id)
        # When today starts a new weekly interval, the scheduler also makes its own latest
        # run, past every span: it is the only other run, and a later one.
        others = [run for run in local.api.dag_runs(DAG_ID) if run["run_type"] != "backfill"]
    finally:
        stopped = local.stop()
    assert all(run["run_type"] == "scheduled" and run["logical_date"] > runs[-1]["logical_date"]
               for run in others) and len(others) <= 1, others
    assert stopped == ["scheduler", "dag-processor", "api-server"]
    assert not any(local.running().values())
    assert [r["run_type"] for r in runs] == ["backfill"] * 3, runs
    assert [r["logical_date"][:10] for r in runs] == ["2026-11-01", "2026-11-08", "2026-11-15"]
    assert all(a["end_date"] <= b["start_date"] for a, b in zip(runs, runs[1:])), runs
    ids = [r["dag_run_id"] for r in runs]
    assert ids[0] == first_id
    assert [span_label(airflow_tasks.recorded_span(config, run_id), config.span_pattern)
            for run_id in ids] == ["2026-11-02", "2026-11-09", "2026-11-16"]
    assert [r["state"] for r in runs] == ["success", "success", "failed"]

    _assert_survived_kill(config, ids[0], tis[0], retry_log, preloaded)
    first = airflow_tasks.push_result(config, ids[0])
    assert first["pushed"] and first["version"] == "1", first

    second = _assert_week_2_challenged_the_champion(config, ids)

    assert tis[2][topology.DRIFT_GATE]["state"] == "failed"
    assert tis[2]["Transform"]["state"] == "upstream_failed"
    champion_span = "2026-11-09" if second["pushed"] else "2026-11-02"
    assert ("[drift] feature 'avg_3': Jensen-Shannon divergence" in drift_log
            and f"(span 2026-11-16 against span {champion_span}" in drift_log), drift_log[-3000:]


def _kill_worker_running_trainer(local, run_id, timeout=1200) -> str:
    """SIGKILL the Celery worker (main process, pool and task processes: a machine gone)
    whose task is training; returns its name."""
    import psutil
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        trainer = local.task_instances(DAG_ID, run_id)["Trainer"]
        if (trainer["state"] == "running" and trainer["hostname"]
                and "Going to run a new execution" in local.task_log(DAG_ID, run_id,
                                                                     "Trainer", 1)):
            name = trainer["hostname"]
            worker = psutil.Process(json.loads(
                (local.home / "run" / f"celery-{name}.pid").read_text())["pid"])
            tree = [worker] + worker.children(recursive=True)
            assert trainer["pid"] in {p.pid for p in tree}, (trainer, tree)
            for process in tree:
                process.kill()
            psutil.wait_procs(tree, timeout=30)
            return name
        if trainer["state"] in ("success", "failed", "upstream_failed"):
            raise AssertionError(f"Trainer ended before its worker could be killed: {trainer}")
        time.sleep(1)
    raise AssertionError("Trainer never started")


@pytest.mark.timeout(1800)
def test_celery_two_workers_share_the_run_and_survive_a_killed_worker(tmp_path):
    """CeleryExecutor, Redis broker with a password, PostgreSQL result backend: two workers
    named as distinct hosts both ran tasks of one DAG run, and a model was pushed.

    The worker running the Trainer is killed by SIGKILL (with its task processes) mid-
    training: its task stops heartbeating, the scheduler fails that attempt after
    ``task_instance_heartbeat_timeout`` (60 s here, 300 s by default), Airflow retries it
    on the surviving worker, and the DAG run completes."""
    config = profile_config(tmp_path / "project", "celery", celery_workers=2,
                            airflow_parallelism=2)
    local = local_airflow(config, export_config=True, env_extra={
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "60",
        "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "2"})
    local.start()
    try:
        run_id = local.trigger(DAG_ID)
        killed = _kill_worker_running_trainer(local, run_id)
        killed_at = time.monotonic()
        state = local.wait_run(DAG_ID, run_id, timeout=1500)
        recovered = time.monotonic() - killed_at
        tis = local.task_instances(DAG_ID, run_id)
        preloaded = preloaded_tasks(local, run_id)
        retry_log = local.task_log(DAG_ID, run_id, "Trainer", 2)
        # ML Metadata is on the profile's PostgreSQL: read it before the server stops.
        states = node_states(config.replace(metadata_uri=local.metadata_uri()), run_id)
        redis_conf = (local.home / "redis" / "redis.conf").read_text(encoding="utf-8")
    finally:
        stopped = local.stop()
        local.services.remove_data()
    print(f"killed celery-{killed} during Trainer; the DAG run ended {recovered:.1f} s later")
    assert state == "success", {task: ti["state"] for task, ti in tis.items()}
    survivor = ({"worker-a", "worker-b"} - {killed}).pop()
    assert {f"celery-{survivor}", "postgres", "redis"} <= set(stopped)
    assert f"celery-{killed}" not in stopped  # it was dead already
    assert {ti["hostname"] for ti in tis.values()} <= {"worker-a", "worker-b"}
    assert tis["Trainer"]["try_number"] == 2 and tis["Trainer"]["hostname"] == survivor
    assert "removed its partial outputs" in retry_log
    # Tasks that ran on the killed worker at the same time were retried too; none failed.
    assert {ti["try_number"] for ti in tis.values()} <= {1, 2}
    assert {ti["state"] for ti in tis.values()} == {"success"}
    assert preloaded >= set(topology.NODES) - {"Trainer"}
    assert "(TFX already loaded)" in retry_log
    assert model_versions(config.model_serving_dir) == [1]
    assert staging_dirs(config) == []
    assert states == {node: ["COMPLETE"] for node in topology.NODES}
    assert "requirepass " in redis_conf and "bind 127.0.0.1" in redis_conf
    assert (os.stat(local.home / "redis" / "redis.conf").st_mode & 0o777) == 0o600


def test_local_airflow_files_are_private(tmp_path):
    """Generated secrets never land in the repo and are readable by the owner only."""
    config = make_config(tmp_path / "project")
    local = local_airflow(config, export_config=True)
    local._write_config()  # pylint: disable=protected-access
    cfg = local.home / "airflow.cfg"
    assert (os.stat(cfg).st_mode & 0o777) == 0o600
    text = cfg.read_text(encoding="utf-8")
    assert "secret_key = " in text and "fernet_key = " in text and "jwt_secret = " in text
    assert "host = 127.0.0.1" in text
    for secret in (local.home / "secrets").iterdir():
        assert (os.stat(secret).st_mode & 0o777) == 0o600
    assert Path(local.home).is_relative_to(tmp_path)
