"""Airflow DAG of the Cartola PRO TFX pipeline: one task per TFX component.

Copy or symlink this file into Airflow's dags folder (for example ``~/airflow/dags``); it finds
the project through the installed ``cartola`` package and its config (``CARTOLA_CONFIG``,
``CARTOLA_HOME`` or ``CARTOLA_<FIELD>`` variables in the scheduler's environment). Parsing
imports only Airflow and light project modules, never TensorFlow or TFX: each task imports
TFX in its own process and runs its node of the compiled pipeline under this DAG run's
``run_id``. See docs/AIRFLOW.md.
"""
from datetime import datetime, timedelta, timezone

from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, conf

from cartola.config import load_config
from cartola.orchestration import airflow_tasks
from cartola.pipeline import topology

CONFIG = load_config()

DOC = f"""
### Cartola PRO propensity pipeline (TFX)

One task per TFX component; each runs the real TFX node for this DAG run (one pipeline run in
ML Metadata per DAG run). Config: project home `{CONFIG.project_home}`, data
`{CONFIG.data_dir}`, models served from `{CONFIG.model_serving_dir}`.

A manual run trains on the latest span (weekly snapshot folder), a scheduled or backfill run
on the span dated in its data interval. **Trigger w/ config** `{{"span": "2026-11-09"}}` picks
a span; `{{"data_root": "/path/to/folder"}}` trains on another folder (absolute, or relative to
the project home).

How a finished run reads:

| run | `DataValidationGate` | `new_model_pushed` | meaning |
| --- | --- | --- | --- |
| success | success | **success** (green) | a new model version is served |
| success | success | **skipped** (pink) | not blessed, or identical to the served model: nothing pushed (its log and XCom say which) |
| **failed** | **failed** (red) | upstream_failed | the data has anomalies (listed in the gate's log): nothing trained or pushed |
| **failed** | `DriftGate` **failed** | upstream_failed | the span drifted from the served model's data (feature, divergence and threshold in its log) |
| failed | success | upstream_failed | a component failed after its retries: see the red task's log |
"""

with DAG(
        dag_id=CONFIG.pipeline_name,
        description="Cartola PRO subscription propensity: TFX pipeline, one task per component",
        schedule=airflow_tasks.schedule(CONFIG),
        start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=airflow_tasks.DAGRUN_TIMEOUT,
        default_args=airflow_tasks.default_args(
            CONFIG, timedelta(seconds=conf.getint("core", "default_task_retry_delay"))),
        # The project home's run lease ends with the DAG run, whatever stopped it.
        on_success_callback=airflow_tasks.end_run_lease,
        on_failure_callback=airflow_tasks.end_run_lease,
        doc_md=DOC,
        tags=["tfx", "cartola"],
) as dag:
    tasks = {
        node_id: PythonOperator(task_id=node_id, python_callable=airflow_tasks.run_tfx_node,
                                op_kwargs={"node_id": node_id})
        for node_id in topology.nodes(CONFIG.source)
    }
    for downstream, upstreams in topology.nodes(CONFIG.source).items():
        for upstream in upstreams:
            tasks[upstream] >> tasks[downstream]  # pylint: disable=pointless-statement
    status = PythonOperator(task_id=airflow_tasks.STATUS_TASK,
                            python_callable=airflow_tasks.report_push, retries=0)
    tasks[topology.PUSHER] >> status  # pylint: disable=pointless-statement
