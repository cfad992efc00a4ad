"""The pipeline's node ids and dependencies as a static table.

The Airflow DAG file builds its tasks from this table so that parsing it never imports TFX
(compiling the pipeline costs ~26 s of imports). ``tests/orchestration/test_dag.py`` compiles
the real pipeline and checks this table against the IR's ``upstream_nodes``, so drift fails a
test.
"""
from __future__ import annotations

from typing import Dict, List, Tuple

# Node id -> ids of its upstream nodes, in the compiled pipeline's node order.
NODES: Dict[str, Tuple[str, ...]] = {
    "CsvExampleGen": (),
    "ImportSchemaGen": (),
    "served_model_resolver": (),
    "served_statistics_resolver": (),
    "StatisticsGen": ("CsvExampleGen",),
    "training_window": ("CsvExampleGen",),
    "DriftGate": ("CsvExampleGen", "ImportSchemaGen", "StatisticsGen",
                  "served_statistics_resolver"),
    "ExampleValidator": ("ImportSchemaGen", "StatisticsGen"),
    "DataValidationGate": ("ExampleValidator", "StatisticsGen"),
    "Transform": ("DataValidationGate", "DriftGate", "ImportSchemaGen", "training_window"),
    "Trainer": ("ImportSchemaGen", "Transform"),
    "Evaluator": ("CsvExampleGen", "Trainer", "served_model_resolver"),
    "Pusher": ("Evaluator", "Trainer"),
}

EXAMPLE_GEN = "CsvExampleGen"
# ExampleGen node id per config ``source``; the other nodes are the same for every source.
EXAMPLE_GENS = {"csv": EXAMPLE_GEN, "postgresql": "PostgresExampleGen"}
TRAINING_WINDOW = "training_window"
DRIFT_GATE = "DriftGate"
PUSHER = "Pusher"
EVALUATOR = "Evaluator"
VALIDATION_GATE = "DataValidationGate"


def example_gen(source: str = "csv") -> str:
    """The ExampleGen node id of a data source."""
    return EXAMPLE_GENS[source]


def nodes(source: str = "csv") -> Dict[str, Tuple[str, ...]]:
    """:data:`NODES` with the ExampleGen of ``source``."""
    name = example_gen(source)
    rename = {EXAMPLE_GEN: name}
    return {rename.get(node, node): tuple(rename.get(up, up) for up in ups)
            for node, ups in NODES.items()}


def edges() -> List[Tuple[str, str]]:
    """(upstream, downstream) pairs, sorted."""
    return sorted((up, node) for node, ups in NODES.items() for up in ups)


def depends_on(node_id: str, ancestor: str, source: str = "csv") -> bool:
    """Whether ``node_id`` runs after ``ancestor`` (directly or through other nodes) in the
    pipeline reading ``source``."""
    table = nodes(source)
    todo, seen = list(table.get(node_id, ())), set()
    while todo:
        node = todo.pop()
        if node == ancestor:
            return True
        if node not in seen:
            seen.add(node)
            todo.extend(table.get(node, ()))
    return False


def node_context_name(pipeline_name: str, node_id: str) -> str:
    """Name of the node's ML Metadata context, as the TFX compiler writes it."""
    return f"{pipeline_name}.{node_id}"
