"""Callables of the monitoring DAG's tasks (``src/tfx_monitoring.py``).

Light to import, like :mod:`cartola.orchestration.airflow_tasks`: the DAG file imports this
module at parse time; TFDV and TensorFlow load inside the task's process.
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Optional

from cartola.config import Config, load_config
from cartola.orchestration.airflow_tasks import NO_SCHEDULE

log = logging.getLogger(__name__)

MONITOR_TASK = "monitor"
DECIDE_TASK = "retrain_needed"
TRIGGER_TASK = "trigger_training"


def dag_id(config: Config) -> str:
    """The monitoring DAG's id: the training DAG's, suffixed."""
    return f"{config.pipeline_name}_monitoring"


def schedule(config: Config) -> Optional[str]:
    """``monitoring_schedule`` (a cron expression or preset), None for manual only."""
    value = config.monitoring_schedule.strip()
    return None if value.lower() in NO_SCHEDULE else value


def monitor(**context: Any) -> Dict[str, Any]:
    """Task callable: ``cartola monitor`` on the window ending at this run's logical time
    (now for a manual run). Nothing to compare (no served version, no or too little traffic)
    skips the task; a check past its threshold is a result, not a failure: the next task
    decides whether to retrain."""
    # pylint: disable=import-outside-toplevel
    from airflow.sdk.exceptions import AirflowSkipException
    from cartola.monitoring.monitor import MonitorError, run_monitor
    config = load_config()
    end = context.get("data_interval_end") or context.get("logical_date")
    try:
        result = run_monitor(config, until=end)
    except MonitorError as err:
        raise AirflowSkipException(f"nothing to monitor: {err}") from None
    for line in result["problems"]:
        log.warning("%s", line)
    log.info("monitor %s: %s; report %s", result["status"], result["traffic"], result["report"])
    return {key: result[key] for key in ("status", "version", "problems", "report", "traffic")}


def retrain_needed(**context: Any) -> bool:
    """Short-circuit callable: True (go on to the trigger) when a check failed and
    ``monitor_retrain`` is on."""
    result = context["ti"].xcom_pull(task_ids=MONITOR_TASK) or {}
    config = load_config()
    needed = result.get("status") == "failed" and config.monitor_retrain
    log.info("retrain: %s (monitor %s, monitor_retrain = %s)", "yes" if needed else "no",
             result.get("status", "skipped"), config.monitor_retrain)
    return bool(needed)
