"""Pipeline runs as ML Metadata records them: executions, states, timings and artifacts.

Every command that looks back (the run report, ``cartola runs``, lineage, models) reads the
store through :func:`open_store`, the project's one opener, on SQLite or PostgreSQL.
"""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

from cartola.config import Config


class RegistryError(RuntimeError):
    """No store, no run, or a version that the store does not know."""


class RunInfo:
    """A pipeline run's executions and their input/output artifacts, by node."""

    def __init__(self, run_id: str, created_ms: int):
        self.run_id = run_id
        self.created_ms = created_ms
        self.finished_ms = created_ms  # the last update of any of its executions
        self.executions: Dict[str, Any] = {}  # node id -> mlmd Execution
        # (node id, state, seconds from the execution's creation to its last update)
        self.nodes: List[Tuple[str, str, float]] = []
        self.outputs: Dict[Tuple[str, str], Any] = {}  # (node, key) -> mlmd Artifact
        self.inputs: Dict[Tuple[str, str], Any] = {}

    def output_uri(self, node: str, key: str) -> Optional[str]:
        """URI of a node's output artifact in this run, if it has one."""
        artifact = self.outputs.get((node, key))
        return artifact.uri if artifact is not None else None

    def state(self, node: str) -> Optional[str]:
        """COMPLETE, CACHED, FAILED, ... or None when the node did not run."""
        return next((state for name, state, _ in self.nodes if name == node), None)


def open_store(config: Config):
    """The config's ML Metadata store; a clear error when a SQLite store does not exist."""
    sqlite_path = config.sqlite_metadata_path()
    if sqlite_path is not None and not sqlite_path.is_file():
        raise RegistryError(f"no ML Metadata database at {sqlite_path}: run the pipeline first")
    from cartola.metadata import open_metadata_store  # pylint: disable=import-outside-toplevel
    return open_metadata_store(config)


def pipeline_runs(store, pipeline_name: str) -> list:
    """The pipeline's run contexts, oldest first: children of its pipeline context, or (no
    parent recorded) runs whose executions belong to it."""
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        return []
    ours = None
    runs = []
    for context in store.get_contexts_by_type("pipeline_run"):
        parents = store.get_parent_contexts_by_context(context.id)
        if parents:
            if any(p.id == pipeline.id for p in parents):
                runs.append(context)
            continue
        if ours is None:
            ours = {e.id for e in store.get_executions_by_context(pipeline.id)}
        if any(e.id in ours for e in store.get_executions_by_context(context.id)):
            runs.append(context)
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def node_timings(config: Config, run_id: Optional[str] = None) -> str:
    """One line: each node of the run (default: the latest) with its state and seconds."""
    return ", ".join(f"{name} {seconds:.1f} s" + ("" if state == "COMPLETE" else f" ({state})")
                     for name, state, seconds in load_run(config, run_id).nodes)


def list_runs(config: Config) -> List[str]:
    """Run ids of the pipeline, oldest first."""
    return [run.name for run in pipeline_runs(open_store(config), config.pipeline_name)]


def load_run(config: Config, run_id: Optional[str] = None, store=None) -> RunInfo:
    """The run ``run_id`` (default: the latest) with its artifacts."""
    # pylint: disable=import-outside-toplevel
    from ml_metadata.proto import metadata_store_pb2
    store = store or open_store(config)
    runs = pipeline_runs(store, config.pipeline_name)
    if not runs:
        raise RegistryError(f"no run of pipeline {config.pipeline_name!r} in ML Metadata")
    if run_id is None:
        run = runs[-1]
    else:
        run = next((r for r in runs if r.name == run_id), None)
        if run is None:
            raise RegistryError(f"no run {run_id!r}; known runs: {[r.name for r in runs][-10:]}")
    info = RunInfo(run.name, run.create_time_since_epoch)
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    for execution in executions:
        node = next((c.name.split(".", 1)[-1] for c in store.get_contexts_by_execution(
            execution.id) if c.type == "node"), str(execution.type))
        info.executions[node] = execution
        info.finished_ms = max(info.finished_ms, execution.last_update_time_since_epoch)
        info.nodes.append((node, metadata_store_pb2.Execution.State.Name(
            execution.last_known_state), (execution.last_update_time_since_epoch
                                          - execution.create_time_since_epoch) / 1000))
        events = store.get_events_by_execution_ids([execution.id])
        artifacts = {a.id: a for a in store.get_artifacts_by_id([e.artifact_id for e in events])}
        for event in events:
            key = (node, event.path.steps[0].key if event.path.steps else "")
            if event.type in (metadata_store_pb2.Event.OUTPUT,
                              metadata_store_pb2.Event.INTERNAL_OUTPUT):
                info.outputs[key] = artifacts[event.artifact_id]
            elif event.type == metadata_store_pb2.Event.INPUT:
                info.inputs[key] = artifacts[event.artifact_id]
    return info


def execution_property(execution, name: str) -> Any:
    """An execution property TFX recorded (exec properties are custom properties there)."""
    if execution is None:
        return None
    for properties in (execution.properties, execution.custom_properties):
        if name in properties:
            value = properties[name]
            return getattr(value, value.WhichOneof("value") or "string_value")
    return None


def custom_property(artifact, name: str) -> Any:
    """An int, float or string custom property of an ML Metadata artifact (None if unset)."""
    if artifact is None or name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("int_value", "double_value", "string_value") else None
