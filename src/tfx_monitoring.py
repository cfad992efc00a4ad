"""Airflow DAG that watches the served model: ``cartola monitor`` daily, retraining past a
threshold.

Copy or symlink this file into Airflow's dags folder beside ``tfx_pipeline.py``; it finds the
project the same way (the installed ``cartola`` package and its config). Parsing imports only
Airflow and light project modules: TFDV and TensorFlow load in the monitor task's process.
See docs/MONITORING.md.
"""
from datetime import datetime, timezone

from airflow.providers.standard.operators.python import PythonOperator, ShortCircuitOperator
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import DAG

from cartola.config import load_config
from cartola.orchestration import monitoring_tasks as airflow_tasks
from cartola.orchestration.airflow_tasks import on_task_failure

CONFIG = load_config()

DOC = f"""
### Monitoring of the served `{CONFIG.model_name}` model

`monitor` compares the rows `cartola serve` logged in the last {CONFIG.monitor_window_hours:g}
hours (`{CONFIG.request_log_path}`) with the data the served version was trained on: feature
skew (TFDV, Jensen-Shannon, threshold {CONFIG.monitor_skew_threshold or CONFIG.skew_threshold:g})
and score drift (PSI {CONFIG.monitor_psi_threshold:g}, KS {CONFIG.monitor_ks_threshold:g}); its
log names every check past its threshold and links the HTML report. Skipped: nothing to compare.
Past a threshold, `retrain_needed` lets `trigger_training` start a run of
`{CONFIG.pipeline_name}` (`monitor_retrain = {str(CONFIG.monitor_retrain).lower()}`).
"""

with DAG(
        dag_id=airflow_tasks.dag_id(CONFIG),
        description="Cartola PRO: skew and score drift of the served model, retraining past "
                    "a threshold",
        schedule=airflow_tasks.schedule(CONFIG),
        start_date=datetime(2025, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        doc_md=DOC,
        # A monitor that cannot run is a failed run worth a notification (run_failed).
        default_args={"owner": "cartola",
                      "on_failure_callback": on_task_failure},
        tags=["monitoring", "cartola"],
) as dag:
    check = PythonOperator(task_id=airflow_tasks.MONITOR_TASK,
                           python_callable=airflow_tasks.monitor, retries=0)
    decide = ShortCircuitOperator(task_id=airflow_tasks.DECIDE_TASK,
                                  python_callable=airflow_tasks.retrain_needed)
    # A trigger rather than an asset: the training DAG keeps its weekly data-interval schedule
    # (spans map to intervals), and the triggered run carries why it was started.
    trigger = TriggerDagRunOperator(
        task_id=airflow_tasks.TRIGGER_TASK, trigger_dag_id=CONFIG.pipeline_name,
        conf={"triggered_by": airflow_tasks.dag_id(CONFIG),
              "monitor_report": "{{ ti.xcom_pull(task_ids='monitor')['report'] }}"})
    check >> decide >> trigger  # pylint: disable=pointless-statement
