"""The Evaluator's baseline: the model behind the served version, not simply the latest
blessed one, so that after a rollback the next challenger is compared with what serves."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from absl import logging
from ml_metadata.proto import metadata_store_pb2
from tfx import types
from tfx.dsl.components.common import resolver

from cartola.registry.served import served_version


def served_model_id(store, pushed_models: List[types.Artifact], serving_dir: str) -> Optional[int]:
    """ML Metadata id of the Model artifact the Pusher published as the served version."""
    version = served_version(Path(serving_dir))
    if version is None:
        return None
    destination = str(Path(serving_dir) / str(version))
    pushed = [a for a in pushed_models
              if a.get_int_custom_property("pushed") == 1
              and a.get_string_custom_property("pushed_destination") == destination]
    for artifact in sorted(pushed, key=lambda a: a.id, reverse=True):
        events = store.get_events_by_artifact_ids([artifact.id])
        pushers = [e.execution_id for e in events
                   if e.type == metadata_store_pb2.Event.OUTPUT]
        for event in store.get_events_by_execution_ids(pushers):
            if (event.type == metadata_store_pb2.Event.INPUT and event.path.steps
                    and event.path.steps[0].key == "model"):
                return event.artifact_id
    return None


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
