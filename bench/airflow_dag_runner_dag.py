"""Comparison DAG: the same pipeline wrapped the usual way, by TFX's AirflowDagRunner.

For the benchmarks only (bench/dag_parse.py, bench/dag_run.py); never put it in a dags folder
beside src/tfx_pipeline.py. Parsing it imports TFX (~26 s, ~0.9 GB) and builds every
component, and Airflow re-parses it every 30 s and once more in every task process.
Its dag_id is ``<pipeline_name>_tfx_runner`` so both DAGs can share an Airflow if wanted.
"""
from datetime import datetime, timezone

from tfx.orchestration.airflow.airflow_dag_runner import (AirflowDagRunner,
                                                          AirflowPipelineConfig)

from cartola.config import load_config
from cartola.pipeline.definition import create_pipeline
from cartola.orchestration import airflow_tasks, beam

BASE_CONFIG = load_config()
CONFIG = BASE_CONFIG.replace(pipeline_name=f"{BASE_CONFIG.pipeline_name}_tfx_runner")

DAG = AirflowDagRunner(AirflowPipelineConfig(airflow_dag_config={
    "schedule": airflow_tasks.schedule(CONFIG),
    "start_date": datetime(2025, 1, 1, tzinfo=timezone.utc),
    "catchup": False,
    "max_active_runs": 1,
})).run(create_pipeline(CONFIG, beam_args=beam.for_span(CONFIG, None).args))
