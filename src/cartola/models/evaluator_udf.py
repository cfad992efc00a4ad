"""The Evaluator's ``custom_eval_shared_model``: TFMA's default model loader, preceded by
the import of the ops the SavedModel needs (:func:`cartola.models.model_info.load_ops`).

TFMA loads the candidate and the baseline model in its Beam workers, which may be other
processes (multi-processing DirectRunner), so the ops are registered by the loader itself,
where the model is loaded, not once in the Evaluator's process.
"""
from __future__ import annotations

import functools

import tensorflow_model_analysis as tfma

from cartola.models.model_info import load_ops


def _load_with_ops(model_path: str, construct_fn):
    load_ops(model_path)
    return construct_fn()


def custom_eval_shared_model(eval_saved_model_path, model_name, eval_config, **kwargs):
    """TFX Evaluator hook (``module_path``): one shared model per candidate or baseline."""
    shared = tfma.default_eval_shared_model(
        eval_saved_model_path=eval_saved_model_path, model_name=model_name,
        eval_config=eval_config, **kwargs)
    loader = shared.model_loader
    loader.construct_fn = functools.partial(_load_with_ops, eval_saved_model_path,
                                            loader.construct_fn)
    return shared
