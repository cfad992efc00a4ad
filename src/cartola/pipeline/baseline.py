"""Baselines resolved from ML Metadata: the model behind the served version (the Evaluator's
champion, not simply the latest blessed one, so a rollback is honoured), the statistics of the
data it learned from (the drift gate's reference), and the window of spans to train on."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Set

from absl import logging
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

from cartola.data.spans import artifact_span
from cartola.published.served import served_version


# Executions of this type finishing means an earlier run passed its data gates and trained.
_TRANSFORM_TYPE = "tfx.components.transform.component.Transform"
_DONE = (metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.CACHED)


def _served_pushers(store, pushed_models: List[types.Artifact], serving_dir: str) -> List[int]:
    """Ids of the Pusher executions that published the served version, newest first."""
    version = served_version(Path(serving_dir))
    if version is None:
        return []
    destination = str(Path(serving_dir) / str(version))
    pushed = [a for a in pushed_models
              if a.get_int_custom_property("pushed") == 1
              and a.get_string_custom_property("pushed_destination") == destination]
    ids = [a.id for a in sorted(pushed, key=lambda a: a.id, reverse=True)]
    return [e.execution_id for e in store.get_events_by_artifact_ids(ids)
            if e.type == metadata_store_pb2.Event.OUTPUT] if ids else []


def served_model_id(store, pushed_models: List[types.Artifact], serving_dir: str) -> Optional[int]:
    """ML Metadata id of the Model artifact the Pusher published as the served version."""
    for event in store.get_events_by_execution_ids(
            _served_pushers(store, pushed_models, serving_dir)):
        if (event.type == metadata_store_pb2.Event.INPUT and event.path.steps
                and event.path.steps[0].key == "model"):
            return event.artifact_id
    return None


def served_run_artifact_ids(store, pushed_models: List[types.Artifact],
                            serving_dir: str) -> Set[int]:
    """Ids of the artifacts of the pipeline run that pushed the served version."""
    for execution_id in _served_pushers(store, pushed_models, serving_dir):
        for context in store.get_contexts_by_execution(execution_id):
            if context.type == "pipeline_run":
                return {a.id for a in store.get_artifacts_by_context(context.id)}
    return set()


class ServedModelStrategy(resolver.ResolverStrategy):
    """Resolves ``model`` to the Model artifact served now under ``serving_dir``.

    Inputs: ``model`` (Model) and ``pushed_model`` (PushedModel). Nothing is resolved when
    no version is served yet, or the served one was not pushed by this pipeline (then the
    Evaluator checks the thresholds alone, as on a first run).
    """

    def __init__(self, serving_dir: str):
        self._serving_dir = serving_dir

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        model_id = served_model_id(store, input_dict.get("pushed_model", []),
                                   self._serving_dir)
        models = [m for m in input_dict.get("model", []) if m.id == model_id]
        logging.info("Baseline model: %s", f"artifact {model_id}" if models else
                     "none (no served version pushed by this pipeline)")
        return {"model": models, "pushed_model": []}


class ServedStatisticsStrategy(resolver.ResolverStrategy):
    """Resolves ``statistics`` and ``examples`` to StatisticsGen's and ExampleGen's outputs in
    the run that pushed the served version: the data the served model learned from, the drift
    gate's reference.

    Inputs: ``statistics`` (ExampleStatistics), ``examples`` (Examples) and ``pushed_model``
    (PushedModel). Nothing is resolved before the first push (the drift gate then has no
    baseline, and says so).
    """

    def __init__(self, serving_dir: str):
        self._serving_dir = serving_dir

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        in_run = served_run_artifact_ids(store, input_dict.get("pushed_model", []),
                                         self._serving_dir)
        found = {key: sorted((a for a in input_dict.get(key, []) if a.id in in_run),
                             key=lambda a: a.id)[-1:] for key in ("statistics", "examples")}
        if not (found["statistics"] and found["examples"]):
            found = {"statistics": [], "examples": []}
        logging.info("Drift baseline: %s", f"span {artifact_span(found['examples'][0])}"
                     if found["examples"] else "none (no served version yet)")
        return {**found, "pushed_model": []}


class SpanWindowStrategy(resolver.ResolverStrategy):
    """Resolves ``examples`` to the spans the Trainer learns from: this run's span
    (``span``; -1: the newest ingested) and up to ``num_spans - 1`` spans before it that an
    earlier run trained on (a Transform execution finished on them, so both data gates
    passed). The newest version of each span is used.
    """

    def __init__(self, num_spans: int, span: int = -1):
        self._num_spans = num_spans
        self._span = span

    def resolve_artifacts(self, store, input_dict: Dict[str, List[types.Artifact]]
                          ) -> Optional[Dict[str, List[types.Artifact]]]:
        examples = sorted(input_dict.get("examples", []), key=lambda a: (artifact_span(a), a.id))
        if not examples:
            return {"examples": []}
        current_span = artifact_span(examples[-1]) if self._span < 0 else self._span
        current = [a for a in examples if artifact_span(a) == current_span][-1:]
        older: Dict[int, types.Artifact] = {}
        if self._num_spans > 1:
            trained = _transformed_ids(store, [a.id for a in examples
                                               if artifact_span(a) < current_span])
            for artifact in examples:
                if artifact_span(artifact) < current_span and artifact.id in trained:
                    older[artifact_span(artifact)] = artifact  # ascending ids: newest wins
        window = [older[span] for span in sorted(older)][-(self._num_spans - 1):] \
            if self._num_spans > 1 else []
        window += current
        logging.info("Training window: spans %s", [artifact_span(a) for a in window])
        return {"examples": window}


def _transformed_ids(store, artifact_ids: List[int]) -> Set[int]:
    """Those of ``artifact_ids`` that a finished Transform execution read."""
    if not artifact_ids:
        return set()
    events = [e for e in store.get_events_by_artifact_ids(artifact_ids)
              if e.type == metadata_store_pb2.Event.INPUT]
    executions = {e.id: e for e in store.get_executions_by_id(
        sorted({event.execution_id for event in events}))}
    transform_type_ids = {t.id for t in store.get_execution_types()
                          if t.name == _TRANSFORM_TYPE}
    return {event.artifact_id for event in events
            if executions[event.execution_id].type_id in transform_type_ids
            and executions[event.execution_id].last_known_state in _DONE}
