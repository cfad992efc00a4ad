"""Callables of the Airflow DAG's tasks (``src/tfx_pipeline.py``).

Importing this module is cheap (no TensorFlow, TFX or ML Metadata): the DAG file imports it
at parse time, and the scheduler re-parses that file every 30 s. TFX is imported inside the
task callables, in the task's own process.

Every TFX task launches one node of the compiled pipeline under the Airflow DAG run's
``run_id`` (see :func:`cartola.orchestration.node.run_node`), so ML Metadata holds one pipeline run
per DAG run and each node finds its inputs there.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
import shutil
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

from cartola.config import Config, load_config
from cartola.errors import DataValidationError, InputDataError
from cartola.data.source import find_input, resolve_input
from cartola.data.spans import Span
from cartola.orchestration import run_lock
from cartola.pipeline import topology

log = logging.getLogger(__name__)

STATUS_TASK = "new_model_pushed"
# triggered_by and monitor_report: set by the monitoring DAG when it starts a run (shown, not
# used).
CONF_KEYS = ("data_root", "span", "triggered_by", "monitor_report")
# Runs that train on the span of their data interval; other runs (manual) take the latest.
INTERVAL_RUN_TYPES = ("scheduled", "backfill")
# Schedule values that mean "manual triggers only".
NO_SCHEDULE = ("", "none", "null", "manual")
DAGRUN_TIMEOUT = timedelta(hours=6)
EXECUTION_TIMEOUT = timedelta(hours=2)
MAX_RETRY_DELAY = timedelta(hours=1)
# MLMD states of a node execution that finished (its outputs are published).
_DONE_STATES = ("COMPLETE", "CACHED")
# Notification event of a failed task (cartola.monitoring.notify); other tasks: run_failed.
FAILURE_EVENTS = {topology.VALIDATION_GATE: "data_rejected", topology.DRIFT_GATE: "drift_stop"}


def schedule(config: Config) -> Any:
    """The DAG's schedule: ``config.schedule`` (cron or preset) as a data-interval timetable,
    or None (manual only) for "" / "none".

    Airflow 3 turns a cron string into a trigger timetable, whose runs have an empty data
    interval; spans map to data intervals (a weekly run reads the snapshot dated in its week),
    so the DAG asks for ``CronDataIntervalTimetable`` whatever the Airflow's
    ``create_cron_data_intervals`` says.
    """
    value = config.schedule.strip()
    if value.lower() in NO_SCHEDULE:
        return None
    if value in ("@once", "@continuous"):
        return value
    from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable  # pylint: disable=import-outside-toplevel
    return CronDataIntervalTimetable(value, "UTC")


def default_args(config: Config, retry_delay: timedelta) -> Dict[str, Any]:
    """Task defaults: retries with exponential backoff for transient failures, and a
    notification when a task fails for good (Airflow calls ``on_failure_callback`` after the
    last try only)."""
    return {
        "owner": "cartola",
        "retries": config.retries,
        "retry_delay": retry_delay,
        "retry_exponential_backoff": True,
        "max_retry_delay": MAX_RETRY_DELAY,
        "execution_timeout": EXECUTION_TIMEOUT,
        "on_failure_callback": on_task_failure,
    }


def failure_event(task_id: str) -> str:
    """The notification event of a failed task: a gate's failure is about the data."""
    return FAILURE_EVENTS.get(task_id, "run_failed")


def on_task_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback``: tell a person which run and task failed, and why.

    Never raises: Airflow would only log it, and the task's own failure is what matters.
    """
    try:
        _notify_failure(context)
    except Exception as err:  # pylint: disable=broad-except
        log.warning("failure notification not sent: %s", type(err).__name__)
    end_run_lease(context)  # the DAG run has failed for good: let other runs have the home


def _notify_failure(context: Mapping[str, Any]) -> None:
    from cartola.monitoring.notify import notify  # pylint: disable=import-outside-toplevel
    ti = context.get("ti") or context.get("task_instance")
    task_id = getattr(ti, "task_id", None) or getattr(context.get("task"), "task_id", "?")
    dag_id = getattr(ti, "dag_id", None) or getattr(context.get("dag"), "dag_id", "?")
    run_id = (getattr(context.get("dag_run"), "run_id", None) or context.get("run_id")
              or getattr(ti, "run_id", "?"))
    error = context.get("exception")
    message = str(error).strip() if error is not None else ""
    first_line = (message.splitlines() or [type(error).__name__ if error else "unknown error"])[0]
    event = failure_event(task_id)
    what = {"data_rejected": "the data was rejected", "drift_stop": "the data drifted"}
    title = f"{dag_id}: {task_id} failed" + (f", {what[event]}" if event in what else "")
    fields = {"DAG": dag_id, "run": run_id, "task": task_id,
              "try": getattr(ti, "try_number", None), "error": first_line,
              "log": _log_link(ti)}
    notify(load_config(), event, title, message or first_line, fields)


def _log_link(ti) -> Optional[str]:
    """The task attempt's page in the Airflow UI, when ``[api] base_url`` says where it is."""
    try:
        from airflow.sdk import conf  # pylint: disable=import-outside-toplevel
        if not conf.get("api", "base_url", fallback=None):
            return None
        return getattr(ti, "log_url", None)
    except Exception:  # pylint: disable=broad-except
        return None


def run_input(context: Mapping[str, Any], config: Config) -> Tuple[Optional[str], Span]:
    """The run's data root (None: the configured one) and span.

    ``dag_run.conf`` may set ``data_root`` and ``span``; otherwise a scheduled or backfill run
    takes the span dated in its data interval, and a manual run the latest span. Raises
    AirflowFailException (no retry) for unknown conf keys or a missing or unusable span.
    """
    from airflow.sdk.exceptions import AirflowFailException  # pylint: disable=import-outside-toplevel
    dag_run = context.get("dag_run")
    conf = dict(getattr(dag_run, "conf", None) or {})
    unknown = sorted(set(conf) - set(CONF_KEYS))
    if unknown:
        raise AirflowFailException(
            f"unknown keys in the run's conf: {unknown}; accepted: {list(CONF_KEYS)}")
    value = conf.get("data_root")
    if value is not None and not isinstance(value, str):
        raise AirflowFailException(f"conf data_root must be a folder path, got {value!r}")
    if value is not None and config.source != "csv":
        raise AirflowFailException(f"conf data_root is for CSV folders; this DAG reads "
                                   f"source = {config.source!r} (conf span picks a snapshot)")
    folder = config.input_dir(value)
    interval = None
    run_type = getattr(dag_run, "run_type", "")
    run_type = getattr(run_type, "value", run_type)  # the Task SDK gives an Enum
    if conf.get("span") is None and run_type in INTERVAL_RUN_TYPES:
        interval = (context.get("data_interval_start"), context.get("data_interval_end"))
        if None in interval:
            interval = None
    try:
        span = resolve_input(config, folder, conf.get("span"), interval)
    except InputDataError as err:
        source = ("config source" if config.source != "csv" else
                  "conf data_root" if value else "config data_root")
        raise AirflowFailException(f"{source}: {err}") from err
    return (str(folder) if value else None), span


def recorded_span(config: Config, run_id: str) -> Optional[int]:
    """The span this run's ExampleGen ingested (ML Metadata), or None before it ran."""
    from cartola.data.spans import examples_span  # pylint: disable=import-outside-toplevel
    store = _store(config)
    for execution in node_executions(store, config, run_id, topology.example_gen(config.source)):
        for artifact in _output_artifacts(store, execution):
            span = examples_span(artifact)
            if span is not None:
                return span
    return None


def pipeline_run_id(context: Mapping[str, Any]) -> str:
    """TFX pipeline run id of this DAG run: the Airflow ``run_id``, verbatim."""
    run_id = context["dag_run"].run_id
    if not run_id:
        raise ValueError("DAG run has no run_id")
    return run_id


@contextlib.contextmanager
def _plain_argv() -> Iterator[None]:
    """Hide the ``airflow tasks run ...`` arguments: TFX passes ``sys.argv[1:]`` to executors
    as extra flags and to absl's flag parser."""
    saved = sys.argv
    sys.argv = saved[:1]
    try:
        yield
    finally:
        sys.argv = saved


# --- ML Metadata queries (import TFX / ML Metadata lazily) ----------------------------------

def _store(config: Config):
    from cartola.metadata import open_metadata_store  # pylint: disable=import-outside-toplevel
    return open_metadata_store(config)


def node_executions(store, config: Config, run_id: str, node_id: str) -> List[Any]:
    """MLMD executions of ``node_id`` in pipeline run ``run_id`` (TFX registers at most one)."""
    run = store.get_context_by_type_and_name("pipeline_run", run_id)
    node = store.get_context_by_type_and_name(
        "node", topology.node_context_name(config.pipeline_name, node_id))
    if run is None or node is None:
        return []
    in_node = {execution.id for execution in store.get_executions_by_context(node.id)}
    return [e for e in store.get_executions_by_context(run.id) if e.id in in_node]


def _state_name(execution) -> str:
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    return metadata_store_pb2.Execution.State.Name(execution.last_known_state)


def clear_unfinished_execution(config: Config, node_id: str, run_id: str) -> List[Path]:
    """Delete partial outputs of this node's unfinished execution in this run; return them.

    A task killed mid-run (kill -9, OOM, lost worker) leaves its MLMD execution RUNNING and
    its output folders (``<pipeline_root>/<node>/<key>/<execution id>``) half written. TFX's
    launcher reuses that execution on the next attempt and writes into the same folders
    without emptying them, so stale files (extra shards, Beam temp folders, old checkpoints)
    would mix with the new outputs. The outputs are not published yet, so nothing reads them.
    """
    store = _store(config)
    removed: List[Path] = []
    for execution in node_executions(store, config, run_id, node_id):
        state = _state_name(execution)
        if state in _DONE_STATES:
            continue
        node_dir = config.pipeline_dir / node_id
        stale = [key_dir / str(execution.id) for key_dir in sorted(node_dir.glob("*"))
                 if key_dir.is_dir() and not key_dir.name.startswith(".")]
        stale.append(node_dir / ".system" / "executor_execution" / str(execution.id))
        for path in stale:
            if path.exists():
                shutil.rmtree(path)
                removed.append(path)
        log.warning("%s: execution %d of this run is %s (an earlier attempt did not finish); "
                    "removed its partial outputs: %s", node_id, execution.id, state,
                    [str(p) for p in removed] or "none")
    return removed


def _output_artifacts(store, execution) -> List[Any]:
    from ml_metadata.proto import metadata_store_pb2  # pylint: disable=import-outside-toplevel
    ids = [event.artifact_id for event in store.get_events_by_execution_ids([execution.id])
           if event.type == metadata_store_pb2.Event.OUTPUT]
    return store.get_artifacts_by_id(ids) if ids else []


def push_result(config: Config, run_id: str) -> Dict[str, Any]:
    """What the Pusher did in run ``run_id``: pushed, version, destination, blessed, reason."""
    store = _store(config)
    result: Dict[str, Any] = {"pushed": False, "version": None, "destination": None,
                              "blessed": None, "reason": ""}
    for execution in node_executions(store, config, run_id, topology.EVALUATOR):
        for artifact in _output_artifacts(store, execution):
            if "blessed" in artifact.custom_properties:
                result["blessed"] = artifact.custom_properties["blessed"].int_value == 1
    pushers = node_executions(store, config, run_id, topology.PUSHER)
    if not pushers:
        result["reason"] = "the Pusher has no execution in this run"
        return result
    execution = pushers[0]
    props = {}
    for artifact in _output_artifacts(store, execution):
        if "pushed" in artifact.custom_properties:
            props = artifact.custom_properties
    state = _state_name(execution)
    if state == "CACHED":
        result["reason"] = "the Pusher's inputs equal an earlier run's (cached): nothing new pushed"
    elif state != "COMPLETE":
        result["reason"] = f"the Pusher execution is {state}"
    elif props and props["pushed"].int_value == 1:
        result.update(pushed=True, version=props["pushed_version"].string_value,
                      destination=props["pushed_destination"].string_value)
    else:
        from cartola.reports.outcome import why_not_pushed  # pylint: disable=import-outside-toplevel
        result["reason"] = why_not_pushed(config, run_id) + ": nothing pushed"
    return result


# --- The project home's run lock -----------------------------------------------------------

def _dag_run_key(context: Mapping[str, Any]) -> Tuple[str, str]:
    dag_run = context.get("dag_run")
    dag_id = (getattr(dag_run, "dag_id", None) or getattr(context.get("dag"), "dag_id", None)
              or getattr(context.get("ti"), "dag_id", None))
    return str(dag_id), str(getattr(dag_run, "run_id", None) or context.get("run_id"))


def hold_home(config: Config, context: Mapping[str, Any]) -> None:
    """Take or renew this DAG run's lease on the project home before a node runs.

    The whole DAG run holds it, from its first task to its last (see
    :mod:`cartola.orchestration.run_lock`): a ``cartola run`` or a run of another DAG on the
    same home cannot slip in between two tasks. Waits, logging who holds the home every 30 s;
    the wait counts against the task's ``execution_timeout``.
    """
    dag_run = _dag_run_key(context)
    task = getattr(context.get("ti"), "task_id", "?")
    run_lock.RunLock(config.project_home).acquire(
        run_lock.holder_record(dag_run[1], f"airflow task {dag_run[0]}.{task}"),
        say=log.warning, dag_run=dag_run, lease_seconds=DAGRUN_TIMEOUT.total_seconds())


def end_run_lease(context: Mapping[str, Any]) -> None:
    """Give the DAG run's lease back (last task, final failure, DAG end callbacks).

    Never raises: a lease left behind ends by itself after ``DAGRUN_TIMEOUT``.
    """
    try:
        dag_run = _dag_run_key(context)
        if run_lock.RunLock(load_config().project_home).end_lease(dag_run):
            log.info("project home released by DAG run %s/%s", *dag_run)
    except Exception as err:  # pylint: disable=broad-except
        log.warning("run lease not given back: %s: %s", type(err).__name__, err)


# --- Task callables -------------------------------------------------------------------------

def _node_input(node_id: str, context: Mapping[str, Any], config: Config,
                run_id: str) -> Tuple[Optional[str], Optional[Span]]:
    """Data root and span for a node: ExampleGen resolves the span; later nodes take the span
    ExampleGen recorded in this run (a snapshot landing mid-run changes nothing): the training
    window reads its number, Beam nodes its size."""
    if node_id == topology.example_gen(config.source):
        folder, span = run_input(context, config)
        log.info("span %s (%s)", span.name, span.location)
        return folder, span
    conf = dict(getattr(context.get("dag_run"), "conf", None) or {})
    folder = str(config.input_dir(conf["data_root"])) if conf.get("data_root") else None
    if not topology.depends_on(node_id, topology.example_gen(config.source), config.source):
        return folder, None  # runs beside or before ExampleGen: no span recorded yet
    number = recorded_span(config, run_id)
    if number is None:
        return folder, None
    # The span as the source holds it, so Beam nodes size their runner by it.
    return folder, find_input(config, Path(folder or config.data_dir), number)


def run_tfx_node(node_id: str, **context: Any) -> Optional[Dict[str, Any]]:
    """Task callable: run pipeline node ``node_id`` for this DAG run.

    The Pusher's task returns :func:`push_result` (an XCom for the status task).
    """
    # pylint: disable=import-outside-toplevel
    from airflow.sdk.exceptions import AirflowFailException
    config = load_config()
    run_id = pipeline_run_id(context)
    hold_home(config, context)
    folder, span = _node_input(node_id, context, config, run_id)
    started = time.monotonic()
    # Already imported when the worker preloaded TFX (cartola.orchestration.preload).
    preloaded = "cartola.pipeline.definition" in sys.modules
    importlib.import_module("cartola.pipeline.definition")  # TensorFlow, TFX, TFMA: the bulk
    from cartola.orchestration.node import run_node
    imported = time.monotonic()
    log.info("imported TFX in %.1f s", imported - started)
    clear_unfinished_execution(config, node_id, run_id)
    try:
        with _plain_argv():
            run_node(node_id, run_id, folder, config, span)
    except DataValidationError as err:
        # Bad data does not get better by retrying: fail the task and the run now.
        raise AirflowFailException(str(err)) from err
    log.info("timing: node %s import %.1f s, run %.1f s (%s)", node_id, imported - started,
             time.monotonic() - imported, "TFX already loaded" if preloaded else "cold")
    if node_id != topology.PUSHER:
        return None
    result = push_result(config, run_id)
    if result["pushed"]:  # what the notification reports; TFMA is loaded here already
        from cartola.monitoring import notify
        if notify.wanted(config, "version_pushed"):
            result["facts"] = notify.run_facts(config, run_id)
    log.info("push result: %s", result)
    from cartola.reports.history_page import history_page_after_run
    log.info("run history: %s", history_page_after_run(config))
    return result


def report_push(**context: Any) -> Dict[str, Any]:
    """Status task callable: succeed when this run served a new model version, else skip.

    A skipped ``new_model_pushed`` task (pink in the UI) on a successful run means the
    pipeline ran fine but the serving folder did not change; its log says why.
    """
    from airflow.sdk.exceptions import AirflowSkipException  # pylint: disable=import-outside-toplevel
    end_run_lease(context)  # the last task: the run is over whatever it reports
    result = context["ti"].xcom_pull(task_ids=topology.PUSHER) or {}
    if result.get("pushed"):
        message = f"New model version {result['version']} pushed to {result['destination']}."
        log.info(message)
        _notify_push(context, result, message)
        return result
    reason = result.get("reason") or "the Pusher reported no result"
    raise AirflowSkipException(f"No new model served: {reason}.")


def _notify_push(context: Mapping[str, Any], result: Mapping[str, Any], message: str) -> None:
    """``version_pushed``: the version, where, the span and its metrics. Never raises."""
    try:
        from cartola.monitoring.notify import notify  # pylint: disable=import-outside-toplevel
        dag_run = context.get("dag_run")
        fields = {"version": result.get("version"), "destination": result.get("destination"),
                  **dict(result.get("facts") or {}),
                  "DAG": getattr(context.get("dag"), "dag_id", None)
                         or getattr(dag_run, "dag_id", None),
                  "run": getattr(dag_run, "run_id", None)}
        notify(load_config(), "version_pushed", f"model version {result.get('version')} pushed",
               message, fields)
    except Exception as err:  # pylint: disable=broad-except
        log.warning("push notification not sent: %s", type(err).__name__)
