"""Lineage from ML Metadata's events: back from a served version to the data it learned
from, and forward from the data to the versions that learned from it.

Backward: the Pusher's PushedModel, its Model and ModelBlessing, the Evaluator, Trainer,
Transform graph, Examples, schema and the ExampleGen's input folder, files and span; the
statistics and anomalies computed on the same Examples are listed beside them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Dict, List, Optional

from ml_metadata.proto import metadata_store_pb2

from cartola.config import Config
from cartola.data.spans import span_label
from cartola.data.spans import examples_span
from cartola.registry.runs import (RegistryError, custom_property,
                                   execution_property, open_store)
from cartola.published.versions import model_versions

_OUTPUTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.INTERNAL_OUTPUT)
# Walking forward, only these inputs carry training data on; the Evaluator consumes
# examples too but trains nothing.
_TRAINING_INPUTS = {"examples", "transform_graph", "model"}
_CHECKS = {"StatisticsGen", "ExampleValidator"}
# Walking back, the model's own line first, the Evaluator's inputs after it.
_KEY_ORDER = {"model": 0, "examples": 1, "transform_graph": 2, "schema": 3,
              "model_blessing": 4, "baseline_model": 5}


@dataclasses.dataclass
class Step:
    """One artifact on the path, with the execution that produced it."""
    depth: int
    key: str
    type_name: str
    uri: str
    node: str = ""
    run_id: str = ""
    notes: List[str] = dataclasses.field(default_factory=list)

    def line(self) -> str:
        """'  key (Type) <- Node [run]: uri' plus notes."""
        made_by = f" <- {self.node} [{self.run_id}]" if self.node else ""
        text = f"{'  ' * self.depth}{self.key} ({self.type_name}){made_by}: {self.uri}"
        return "\n".join([text] + [f"{'  ' * (self.depth + 1)}{n}" for n in self.notes])


class _Graph:
    """Event lookups on one store, cached."""

    def __init__(self, store):
        self.store = store
        self._types: Dict[int, str] = {}

    def type_name(self, artifact) -> str:
        """The artifact's type name (Model, Examples, ...)."""
        if artifact.type_id not in self._types:
            self._types[artifact.type_id] = self.store.get_artifact_types_by_id(
                [artifact.type_id])[0].name
        return self._types[artifact.type_id]

    def producer(self, artifact_id: int):
        """The first execution that output the artifact (a cached run re-publishes it)."""
        events = [e for e in self.store.get_events_by_artifact_ids([artifact_id])
                  if e.type in _OUTPUTS]
        if not events:
            return None
        return self.store.get_executions_by_id([min(e.execution_id for e in events)])[0]

    def node_and_run(self, execution) -> tuple:
        """(node id, pipeline run id) of an execution."""
        node = run = ""
        for context in self.store.get_contexts_by_execution(execution.id):
            if context.type == "node":
                node = context.name.split(".", 1)[-1]
            elif context.type == "pipeline_run":
                run = context.name
        return node, run

    def events(self, execution_id: int, kinds) -> List[tuple]:
        """(key, artifact) of an execution's events of the given kinds."""
        events = [e for e in self.store.get_events_by_execution_ids([execution_id])
                  if e.type in kinds]
        artifacts = {a.id: a for a in self.store.get_artifacts_by_id(
            [e.artifact_id for e in events])}
        return [(e.path.steps[0].key if e.path.steps else "", artifacts[e.artifact_id])
                for e in events]

    def consumers(self, artifact_id: int) -> List[tuple]:
        """(input key, execution) of every execution that read the artifact."""
        events = [e for e in self.store.get_events_by_artifact_ids([artifact_id])
                  if e.type == metadata_store_pb2.Event.INPUT]
        executions = {x.id: x for x in self.store.get_executions_by_id(
            [e.execution_id for e in events])}
        return [(e.path.steps[0].key if e.path.steps else "", executions[e.execution_id])
                for e in events]


def _input_notes(execution, examples, span_pattern: str) -> List[str]:
    """The ExampleGen's input folder, pattern, span and the files it matches today; or the
    query a database ExampleGen ran and the rows it read."""
    query = custom_property(examples, "query")
    if query:
        return [f"query: {query}",
                f"span {span_label(examples_span(examples), span_pattern)}; "
                f"{custom_property(examples, 'row_count')} rows"]
    base = execution_property(execution, "input_base") or ""
    notes = [f"input folder: {base}"]
    patterns = []
    try:
        config = json.loads(execution_property(execution, "input_config") or "{}")
        patterns = [split.get("pattern", "") for split in config.get("splits", [])]
    except ValueError:
        pass
    span = examples_span(examples)
    notes.append(f"span {span_label(span, span_pattern) if span else 0}; input fingerprint: "
                 f"{custom_property(examples, 'input_fingerprint') or 'not recorded'}")
    for pattern in patterns:
        files = sorted(Path(base).glob(pattern)) if base and pattern else []
        notes += [f"input file: {f}" for f in files] or [f"no file matches {base}/{pattern} now"]
    return notes


def _checks_on(graph: _Graph, examples) -> List[tuple]:
    """(depth, key, artifact) of the statistics computed on ``examples`` and the anomalies
    found in those statistics."""
    found, seen = [], set()
    for key, consumer in graph.consumers(examples.id):
        if key != "examples" or graph.node_and_run(consumer)[0] not in _CHECKS:
            continue
        for out_key, statistics in graph.events(consumer.id, _OUTPUTS):
            if statistics.id in seen:  # a cached run consumed the same examples again
                continue
            seen.add(statistics.id)
            found.append((1, out_key, statistics))
            readers = [r for _, r in graph.consumers(statistics.id)
                       if graph.node_and_run(r)[0] in _CHECKS]
            for anomalies_key, anomalies in [o for r in readers for o in graph.events(
                    r.id, _OUTPUTS)]:
                if anomalies.id not in seen:
                    seen.add(anomalies.id)
                    found.append((2, anomalies_key, anomalies))
    return found


def find_pushed(store, serving_dir: Path, version: int):
    """The PushedModel artifact that published ``serving_dir/version``."""
    destination = str(Path(serving_dir) / str(version))
    found = [a for a in store.get_artifacts_by_type("PushedModel")
             if custom_property(a, "pushed") == 1
             and custom_property(a, "pushed_destination") == destination]
    if not found:
        versions = model_versions(serving_dir)
        raise RegistryError(f"version {version} was not pushed by pipeline runs recorded in "
                            f"this ML Metadata store (versions under {serving_dir}: "
                            f"{versions or 'none'})")
    return found[-1]


def backward(config: Config, version: int) -> List[Step]:
    """Every artifact the served ``version`` came from, depth first from the PushedModel."""
    graph = _Graph(open_store(config))
    pushed = find_pushed(graph.store, config.model_serving_dir, version)
    steps: List[Step] = []
    seen = set()

    def visit(key: str, artifact, depth: int, follow: bool = True) -> None:
        producer = graph.producer(artifact.id)
        node, run = graph.node_and_run(producer) if producer is not None else ("", "")
        step = Step(depth, key, graph.type_name(artifact), artifact.uri, node, run)
        steps.append(step)
        if artifact.id in seen:
            step.notes = ["(its lineage is above)"]
            return
        if producer is None or not follow:
            return
        seen.add(artifact.id)
        if node == "ImportSchemaGen":
            step.notes = [f"schema file: {execution_property(producer, 'schema_file')}"]
        if node.endswith("ExampleGen"):
            step.notes = _input_notes(producer, artifact, config.span_pattern)
            for check_depth, check_key, check in _checks_on(graph, artifact):
                visit(check_key, check, depth + check_depth, follow=False)
        inputs = graph.events(producer.id, [metadata_store_pb2.Event.INPUT])
        for in_key, parent in sorted(inputs, key=lambda item: _KEY_ORDER.get(item[0], 9)):
            # The Evaluator's baseline has a lineage of its own: named, not followed.
            visit(in_key, parent, depth + 1, follow=in_key != "baseline_model")

    visit(f"version {version}", pushed, 0)
    return steps


def forward(config: Config, data: Optional[str] = None,
            span: Optional[int] = None) -> Dict[int, List[str]]:
    """{version: [run ids]} of the versions trained on the input folder ``data`` and/or the
    span ``span``."""
    graph = _Graph(open_store(config))
    wanted = str(config.path(Path(data))) if data else None
    starts = []
    for examples in graph.store.get_artifacts_by_type("Examples"):
        producer = graph.producer(examples.id)
        if producer is None or not graph.node_and_run(producer)[0].endswith("ExampleGen"):
            continue
        base = str(execution_property(producer, "input_base") or "")
        example_span = examples_span(examples) or 0
        if (wanted is None or base == wanted) and (span is None or example_span == span):
            starts.append(examples)
    versions: Dict[int, List[str]] = {}
    frontier, seen = list(starts), set()
    while frontier:
        artifact = frontier.pop()
        if artifact.id in seen:
            continue
        seen.add(artifact.id)
        if graph.type_name(artifact) == "PushedModel" and custom_property(artifact, "pushed") == 1:
            version = int(custom_property(artifact, "pushed_version"))
            versions.setdefault(version, []).append(graph.node_and_run(
                graph.producer(artifact.id))[1])
            continue
        for key, execution in graph.consumers(artifact.id):
            node = graph.node_and_run(execution)[0]
            if key in _TRAINING_INPUTS and node != "Evaluator":
                frontier += [a for _, a in graph.events(execution.id, _OUTPUTS)]
    return dict(sorted(versions.items()))
