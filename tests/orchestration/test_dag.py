"""Integrity of the Airflow DAG file (src/tfx_pipeline.py) and of its task callables.

The DAG is parsed in a fresh interpreter, as Airflow's DAG processor would, from a *copy* of the
file in a temporary dags folder: that proves the copy mode and lets us assert on sys.modules.
"""
# pylint: disable=redefined-outer-name,import-outside-toplevel
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from datetime import datetime, timezone
from types import SimpleNamespace

import pytest

from conftest import REPO, make_config
from cartola.orchestration import airflow_tasks, beam
from cartola.pipeline import topology

DAG_FILE = REPO / "src" / "tfx_pipeline.py"
MONITORING_DAG_FILE = REPO / "src" / "tfx_monitoring.py"
HEAVY = ("tensorflow", "psycopg", "tfx", "tensorflow_transform", "tensorflow_model_analysis",
         "tensorflow_data_validation", "tfx_bsl", "ml_metadata", "apache_beam", "keras",
         "tf_keras")

PARSE_SCRIPT = r"""
import json, sys, time
from airflow.dag_processing.dagbag import DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1], safe_mode=True)
seconds = time.perf_counter() - started
heavy = tuple(sys.argv[2].split(","))
out = {"seconds": seconds, "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
       "heavy_modules": sorted(m for m in sys.modules if m.split(".")[0] in heavy),
       "dags": {}}
for dag_id, dag in bag.dags.items():
    out["dags"][dag_id] = {
        "schedule": None if dag.schedule is None else
                    [type(dag.timetable).__name__, dag.timetable.expression],
        "catchup": dag.catchup, "max_active_runs": dag.max_active_runs,
        "dagrun_timeout": dag.dagrun_timeout.total_seconds() if dag.dagrun_timeout else None,
        "doc_md": bool(dag.doc_md),
        "tasks": {t.task_id: {"upstream": sorted(t.upstream_task_ids), "retries": t.retries,
                              "retry_delay": t.retry_delay.total_seconds(),
                              "backoff": t.retry_exponential_backoff,
                              "callable": getattr(getattr(t, "python_callable", None),
                                                  "__name__", type(t).__name__)}
                  for t in dag.tasks},
    }
print("RESULT " + json.dumps(out))
"""


def parse_dag(tmp_path: Path, **cartola_env: str) -> dict:
    """Parse a copy of the DAG file in a fresh interpreter; ``cartola_env`` are CARTOLA_*."""
    dags = tmp_path / "dags"
    dags.mkdir(exist_ok=True)
    shutil.copy(DAG_FILE, dags / "tfx_pipeline.py")
    shutil.copy(MONITORING_DAG_FILE, dags / "tfx_monitoring.py")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CARTOLA_", "AIRFLOW"))}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow_home"),
               AIRFLOW__CORE__LOAD_EXAMPLES="False",
               AIRFLOW__CORE__UNIT_TEST_MODE="False",
               CARTOLA_PROJECT_HOME=str(tmp_path / "project"))
    env.update({f"CARTOLA_{k.upper()}": v for k, v in cartola_env.items()})
    result = subprocess.run([sys.executable, "-c", PARSE_SCRIPT, str(dags), ",".join(HEAVY)],
                            env=env, capture_output=True, text=True, timeout=120, check=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith("RESULT ")]
    assert result.returncode == 0 and lines, result.stdout + result.stderr
    return json.loads(lines[-1][len("RESULT "):])


@pytest.fixture(scope="module")
def parsed(tmp_path_factory):
    """The DAG parsed with the default config."""
    return parse_dag(tmp_path_factory.mktemp("parse_default"))


def test_dag_loads_without_import_errors(parsed):
    assert parsed["import_errors"] == {}
    assert sorted(parsed["dags"]) == ["cartola_pro", "cartola_pro_monitoring"]


def test_parsing_imports_no_tensorflow_or_tfx(parsed):
    assert parsed["heavy_modules"] == []


def test_schedule_and_defaults_follow_the_config(parsed):
    config = make_config(Path("/nonexistent"))
    dag = parsed["dags"][config.pipeline_name]
    # A data-interval timetable: a weekly run's interval is the week its span is dated in.
    assert config.schedule == "@weekly"
    assert dag["schedule"] == ["CronDataIntervalTimetable", "0 0 * * 0"]
    assert dag["catchup"] is False
    assert dag["max_active_runs"] == 1
    assert dag["dagrun_timeout"] == airflow_tasks.DAGRUN_TIMEOUT.total_seconds()
    assert dag["doc_md"]
    for task_id in topology.NODES:
        task = dag["tasks"][task_id]
        assert task["retries"] == config.retries
        assert task["backoff"] is True
        assert task["retry_delay"] > 0
        assert task["callable"] == "run_tfx_node"
    assert dag["tasks"][airflow_tasks.STATUS_TASK]["retries"] == 0


def test_config_from_the_environment_reaches_the_dag(tmp_path):
    parsed = parse_dag(tmp_path, pipeline_name="other_pipeline", schedule="@daily",
                       retries="5")
    dag = parsed["dags"]["other_pipeline"]
    assert dag["schedule"] == ["CronDataIntervalTimetable", "0 0 * * *"]
    assert {task["retries"] for task_id, task in dag["tasks"].items()
            if task_id != airflow_tasks.STATUS_TASK} == {5}
    manual = parse_dag(tmp_path, schedule="none")
    assert manual["dags"]["cartola_pro"]["schedule"] is None


def test_tasks_and_edges_equal_the_compiled_pipeline(parsed, tmp_path):
    from cartola.pipeline.definition import compile_pipeline
    config = make_config(tmp_path)
    ir = compile_pipeline(config, beam_args=beam.for_span(config, None).args)
    ir_nodes = {node.pipeline_node.node_info.id: sorted(node.pipeline_node.upstream_nodes)
                for node in ir.nodes}
    # The static table the DAG is built from ...
    assert {node: sorted(ups) for node, ups in topology.NODES.items()} == ir_nodes
    # ... and the DAG itself: one task per node with the IR's edges, plus the status task.
    tasks = parsed["dags"]["cartola_pro"]["tasks"]
    expected = dict(ir_nodes, **{airflow_tasks.STATUS_TASK: [topology.PUSHER]})
    assert {task_id: task["upstream"] for task_id, task in tasks.items()} == expected
    # MLMD node contexts are named as the task callables look them up.
    for node in ir.nodes:
        names = {ctx.type.name: ctx.name.field_value.string_value
                 for ctx in node.pipeline_node.contexts.contexts}
        assert names["node"] == topology.node_context_name(
            "cartola_pro", node.pipeline_node.node_info.id)


# --- task callables -------------------------------------------------------------------------

def _context(conf=None, run_id="manual__2025-01-01T00:00:00+00:00", run_type="manual",
             interval=(None, None)):
    return {"dag_run": SimpleNamespace(conf=conf, run_id=run_id, dag_id="cartola_pro",
                                       run_type=run_type),
            "data_interval_start": interval[0], "data_interval_end": interval[1]}


@pytest.fixture
def airflow_env(tmp_path, monkeypatch):
    """Keep Airflow (imported by the callables) away from ~/airflow."""
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow_home"))
    monkeypatch.setenv("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


def test_conf_data_root_is_validated(tmp_path, airflow_env):  # pylint: disable=unused-argument
    from airflow.sdk.exceptions import AirflowFailException
    config = make_config(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    # Enough rows for the split (the curated schema's minimum per split).
    (other / "part.csv").write_text("id,pro_target\n" + "".join(
        f"{i},{i % 2}\n" for i in range(500)), encoding="utf-8")
    assert airflow_tasks.run_input(_context(), config)[0] is None
    assert airflow_tasks.run_input(_context({"data_root": None}), config)[0] is None
    folder, span = airflow_tasks.run_input(_context({"data_root": str(other)}), config)
    assert (folder, span.flat, span.number) == (str(other), True, 0)
    # Relative paths are resolved against the project home.
    assert airflow_tasks.run_input(_context({"data_root": "other"}), config)[0] == str(other)
    for conf, message in (({"data_root": str(tmp_path / "missing")}, "input folder not found"),
                          ({"data_root": str(tmp_path)}, "no *.csv"),
                          ({"data_root": 3}, "must be a folder path"),
                          ({"dataroot": str(other)}, "unknown keys"),
                          ({"span": "2020-01-06"}, "span 2020-01-06 not found")):
        with pytest.raises(AirflowFailException, match=message.replace("*", r"\*")):
            airflow_tasks.run_input(_context(conf), config)


def test_span_of_a_run_from_conf_interval_or_latest(tmp_path, airflow_env):  # pylint: disable=unused-argument
    from airflow.sdk.exceptions import AirflowFailException
    config = make_config(tmp_path)
    week = (datetime(2026, 11, 8, tzinfo=timezone.utc), datetime(2026, 11, 15, tzinfo=timezone.utc))
    assert airflow_tasks.run_input(_context(), config)[1].name == "2026-11-16"
    assert airflow_tasks.run_input(_context({"span": "2026-11-02"}), config)[1].name == \
        "2026-11-02"
    from airflow.sdk.api.datamodels._generated import DagRunType  # what tasks get
    for run_type in ("scheduled", DagRunType.SCHEDULED, DagRunType.BACKFILL):
        assert airflow_tasks.run_input(_context(run_type=run_type, interval=week),
                                       config)[1].name == "2026-11-09"
    # A manual run ignores its interval; conf wins over the interval.
    assert airflow_tasks.run_input(_context(interval=week), config)[1].name == "2026-11-16"
    assert airflow_tasks.run_input(_context({"span": "2026-11-02"}, run_type="scheduled",
                                            interval=week), config)[1].name == "2026-11-02"
    empty_week = tuple(moment.replace(year=2027) for moment in week)
    with pytest.raises(AirflowFailException, match=r"no span dated in the run's data interval "
                                                   r"\[2027-11-08, 2027-11-15\)"):
        airflow_tasks.run_input(_context(run_type="scheduled", interval=empty_week), config)


def test_run_id_is_the_airflow_run_id():
    assert airflow_tasks.pipeline_run_id(_context()) == "manual__2025-01-01T00:00:00+00:00"


@pytest.mark.parametrize("value,expected", [("@weekly", "0 0 * * 0"), ("0 3 * * 1", "0 3 * * 1"),
                                            ("none", None), ("", None)])
def test_schedule_values(value, expected):
    timetable = airflow_tasks.schedule(make_config(Path("/x"), schedule=value))
    assert (timetable if expected is None else timetable.expression) == expected


def test_status_task_succeeds_on_push_and_skips_otherwise(airflow_env):
    # pylint: disable=unused-argument
    from airflow.sdk.exceptions import AirflowSkipException

    def context(result):
        return dict(_context(), ti=SimpleNamespace(xcom_pull=lambda task_ids: result))

    pushed = {"pushed": True, "version": "3", "destination": "/s/3", "reason": ""}
    assert airflow_tasks.report_push(**context(pushed)) == pushed
    reason = "the Evaluator did not bless the model"
    with pytest.raises(AirflowSkipException, match=reason):
        airflow_tasks.report_push(**context({"pushed": False, "reason": reason}))
    with pytest.raises(AirflowSkipException, match="no result"):
        airflow_tasks.report_push(**context(None))


def test_unfinished_execution_outputs_are_cleared(tmp_path):
    """What a retry after kill -9 does before relaunching: only the unfinished execution of
    this node in this run loses its (unpublished) output folders."""
    from ml_metadata.proto import metadata_store_pb2 as pb
    from cartola.metadata import open_metadata_store
    config = make_config(tmp_path)
    store = open_metadata_store(config)
    ctx_types = {name: store.put_context_type(pb.ContextType(name=name))
                 for name in ("pipeline_run", "node")}
    exec_type = store.put_execution_type(pb.ExecutionType(name="Trainer"))

    def context(kind, name):
        return store.put_contexts([pb.Context(type_id=ctx_types[kind], name=name)])[0]

    run, other_run = context("pipeline_run", "run-1"), context("pipeline_run", "run-0")
    trainer = context("node", "cartola_pro.Trainer")

    def execution(state, run_ctx):
        exec_id = store.put_executions([pb.Execution(type_id=exec_type,
                                                     last_known_state=state)])[0]
        store.put_attributions_and_associations(
            [], [pb.Association(context_id=c, execution_id=exec_id) for c in (run_ctx, trainer)])
        for key in ("model", "model_run"):
            (config.pipeline_dir / "Trainer" / key / str(exec_id)).mkdir(parents=True)
            (config.pipeline_dir / "Trainer" / key / str(exec_id) / "partial").write_text("x")
        return exec_id

    done = execution(pb.Execution.COMPLETE, other_run)
    killed = execution(pb.Execution.RUNNING, run)
    removed = airflow_tasks.clear_unfinished_execution(config, "Trainer", "run-1")
    trainer_dir = config.pipeline_dir / "Trainer"
    assert sorted(removed) == [trainer_dir / "model" / str(killed),
                               trainer_dir / "model_run" / str(killed)]
    assert (trainer_dir / "model" / str(done) / "partial").is_file()
    assert not airflow_tasks.clear_unfinished_execution(config, "Trainer", "run-0")
    assert not airflow_tasks.clear_unfinished_execution(config, "Trainer", "no-such-run")


def test_postgresql_source_dag_equals_its_compiled_pipeline(tmp_path):
    """With source = postgresql the DAG's ExampleGen task is PostgresExampleGen, its edges
    those of the compiled pipeline, and parsing imports no DB driver (HEAVY has psycopg)."""
    from cartola.pipeline.definition import compile_pipeline
    settings = {"source": "postgresql", "db_uri": "postgresql://cartola@127.0.0.1:5432/data",
                "db_table": "cartola_users"}
    config = make_config(tmp_path, **settings)
    ir = compile_pipeline(config, beam_args=beam.for_span(config, None).args)
    ir_nodes = {node.pipeline_node.node_info.id: sorted(node.pipeline_node.upstream_nodes)
                for node in ir.nodes}
    assert {node: sorted(ups) for node, ups in topology.nodes("postgresql").items()} == ir_nodes
    assert "PostgresExampleGen" in ir_nodes and "CsvExampleGen" not in ir_nodes
    dag = parse_dag(tmp_path, **settings)["dags"]["cartola_pro"]
    assert {task_id: task["upstream"] for task_id, task in dag["tasks"].items()} == dict(
        ir_nodes, **{airflow_tasks.STATUS_TASK: [topology.PUSHER]})
    assert topology.depends_on("Transform", "PostgresExampleGen", "postgresql")


def test_nodes_after_example_gen_are_the_ones_that_read_its_span():
    after = {node for node in topology.NODES
             if topology.depends_on(node, topology.EXAMPLE_GEN)}
    assert after == set(topology.NODES) - {"CsvExampleGen", "ImportSchemaGen",
                                           "served_model_resolver", "served_statistics_resolver"}
    assert topology.depends_on("Pusher", "served_model_resolver")
    assert not topology.depends_on("StatisticsGen", "ImportSchemaGen")


def test_monitoring_dag_follows_the_config(parsed, tmp_path):
    """The monitoring DAG (same parse: no TensorFlow or TFX, checked above): monitor, then
    the short circuit, then the trigger of the training DAG; its schedule from the config."""
    dag = parsed["dags"]["cartola_pro_monitoring"]
    assert dag["schedule"] == ["CronTriggerTimetable", "0 0 * * *"]  # @daily
    assert dag["catchup"] is False and dag["max_active_runs"] == 1 and dag["doc_md"]
    tasks = dag["tasks"]
    assert tasks["monitor"] == dict(tasks["monitor"], upstream=[], retries=0, callable="monitor")
    assert tasks["retrain_needed"]["upstream"] == ["monitor"]
    assert tasks["retrain_needed"]["callable"] == "retrain_needed"
    assert tasks["trigger_training"]["upstream"] == ["retrain_needed"]
    assert tasks["trigger_training"]["callable"] == "TriggerDagRunOperator"
    manual = parse_dag(tmp_path, monitoring_schedule="none", pipeline_name="other")
    assert manual["import_errors"] == {}
    assert manual["dags"]["other_monitoring"]["schedule"] is None


@pytest.mark.parametrize("status,retrain,expected", [("failed", "true", True),
                                                     ("passed", "true", False),
                                                     ("failed", "false", False),
                                                     (None, "true", False)])
def test_retrain_only_past_a_threshold(monkeypatch, status, retrain, expected):
    from cartola.orchestration import monitoring_tasks
    monkeypatch.setenv("CARTOLA_MONITOR_RETRAIN", retrain)
    result = None if status is None else {"status": status}
    ti = SimpleNamespace(xcom_pull=lambda task_ids: result if task_ids == "monitor" else None)
    assert monitoring_tasks.retrain_needed(ti=ti) is expected
