"""The training window over spans, resolved from a real (in-memory) ML Metadata store."""
from __future__ import annotations

import pytest

pytest.importorskip("ml_metadata")

# pylint: disable=wrong-import-position,import-outside-toplevel
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from cartola.data.spans import artifact_span
from cartola.pipeline.baseline import SpanWindowStrategy

TRANSFORM = "tfx.components.transform.component.Transform"


@pytest.fixture(name="store")
def fixture_store():
    """An empty in-memory ML Metadata store."""
    config = metadata_store_pb2.ConnectionConfig()
    config.fake_database.SetInParent()
    return metadata_store.MetadataStore(config)


def _examples(store, span: int, version: int = 0):
    """Register an Examples artifact of ``span`` and return it as a TFX artifact."""
    artifact = standard_artifacts.Examples()
    # As ExampleGen's driver records them: custom properties.
    artifact.set_int_custom_property("span", span)
    artifact.set_int_custom_property("version", version)
    artifact.uri = f"/examples/{span}/{version}"
    mlmd = artifact.mlmd_artifact
    mlmd.type_id = store.put_artifact_type(artifact.artifact_type)
    [artifact_id] = store.put_artifacts([mlmd])
    artifact.id = artifact_id
    return artifact


def _transformed(store, artifacts, state=metadata_store_pb2.Execution.COMPLETE):
    """Record a Transform execution that read ``artifacts``."""
    type_id = store.put_execution_type(metadata_store_pb2.ExecutionType(name=TRANSFORM))
    [execution_id] = store.put_executions([metadata_store_pb2.Execution(
        type_id=type_id, last_known_state=state)])
    store.put_events([metadata_store_pb2.Event(artifact_id=a.id, execution_id=execution_id,
                                               type=metadata_store_pb2.Event.INPUT)
                      for a in artifacts])


def _window(store, artifacts, num_spans, span=-1):
    resolved = SpanWindowStrategy(num_spans, span).resolve_artifacts(
        store, {"examples": artifacts})
    return [(artifact_span(a), a.get_int_custom_property("version"))
            for a in resolved["examples"]]


def test_one_span_is_this_runs(store):
    old, new = _examples(store, 1), _examples(store, 2)
    assert _window(store, [old, new], 1) == [(2, 0)]
    assert _window(store, [old, new], 1, span=1) == [(1, 0)]
    assert _window(store, [], 1) == []


def test_window_takes_trained_spans_up_to_this_one(store):
    spans = {n: _examples(store, n) for n in (1, 2, 3, 4, 5)}
    _transformed(store, [spans[1], spans[2]])
    _transformed(store, [spans[4]])
    # Span 3 was flagged by a gate (no Transform finished on it): left out.
    assert _window(store, list(spans.values()), 3) == [(2, 0), (4, 0), (5, 0)]
    assert _window(store, list(spans.values()), 2, span=4) == [(2, 0), (4, 0)]
    assert _window(store, list(spans.values()), 10) == [(1, 0), (2, 0), (4, 0), (5, 0)]


def test_failed_transform_does_not_count_and_newest_version_wins(store):
    first, again, current = _examples(store, 1), _examples(store, 1, 1), _examples(store, 2)
    _transformed(store, [first])
    _transformed(store, [again], state=metadata_store_pb2.Execution.FAILED)
    assert _window(store, [first, again, current], 2) == [(1, 0), (2, 0)]
    _transformed(store, [again], state=metadata_store_pb2.Execution.CACHED)
    assert _window(store, [first, again, current], 2) == [(1, 1), (2, 0)]
